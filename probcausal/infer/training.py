"""The training loop every trainer shares: jitted ``lax.scan`` chunks of steps,
a progress bar, Orbax checkpoints, exact resume, NaN/inf detection and
data-parallel sharding over a device mesh.

A trainer provides ``step(state, rng_key, data) -> (state, metrics)`` over an
explicit state (a pytree of arrays) and :func:`fit` runs it. The key of step ``i`` is
``fold_in(rng_key, i)``, so an interrupted run resumed from a checkpoint gives
the same result as an uninterrupted one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from probcausal.errors import TrainingDivergedError

__all__ = ["FitResult", "fit", "data_mesh", "shard_batch", "replicate"]

DATA_AXIS = "data"


@dataclass
class FitResult:
    """The outcome of :func:`fit`: the final ``state``, the trained ``params``
    (what the trainer exposes of the state) and ``metrics``, one array of length
    ``num_steps`` per metric, over the whole run (resumed runs included)."""

    state: Any
    params: Any
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    #: wall-clock seconds of the first chunk of each length (jit compilation
    #: included), and steps per second over the chunks that reused a compiled
    #: program (``None`` when every chunk compiled)
    compile_seconds: float = 0.0
    steps_per_second: float | None = None

    @property
    def losses(self) -> np.ndarray:
        """The ``"loss"`` metric per step."""
        return self.metrics["loss"]


def data_mesh(mesh: Mesh | str | None) -> Mesh | None:
    """``None`` (no sharding), ``"auto"`` (all local devices, when more than one)
    or a :class:`jax.sharding.Mesh` with a ``"data"`` axis."""
    if mesh is None:
        return None
    if isinstance(mesh, str):
        if mesh != "auto":
            raise ValueError(f"mesh must be None, 'auto' or a jax.sharding.Mesh, got {mesh!r}")
        devices = jax.local_devices()
        return Mesh(np.array(devices), (DATA_AXIS,)) if len(devices) > 1 else None
    if DATA_AXIS not in mesh.axis_names:
        raise ValueError(f"the mesh needs an axis named '{DATA_AXIS}', got {mesh.axis_names}")
    return mesh


def replicate(tree, mesh: Mesh | None):
    """Place every array of ``tree`` on every device of ``mesh``."""
    if mesh is None:
        return tree
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_batch(tree, mesh: Mesh | None):
    """Split the leading (batch) axis of every array over the mesh's data axis.

    Inside ``jit`` this is a sharding constraint, outside a ``device_put``. The
    batch size must be divisible by the number of devices.
    """
    if mesh is None:
        return tree
    n = mesh.shape[DATA_AXIS]

    def put(a):
        if a.shape[0] % n:
            raise ValueError(
                f"a batch of {a.shape[0]} cannot be split over {n} devices; use a batch "
                f"size divisible by {n}"
            )
        sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
        if isinstance(a, jax.core.Tracer):
            return jax.lax.with_sharding_constraint(a, sharding)
        return jax.device_put(a, sharding)

    return jax.tree.map(put, tree)


def _raw_key(key: jax.Array) -> jax.Array:
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key


def _strong(leaf):
    if isinstance(leaf, jax.Array) and getattr(leaf, "weak_type", False):  # keys have none
        return jax.lax.convert_element_type(leaf, leaf.dtype)
    return leaf


def _all_finite(tree) -> bool:
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)
    ]
    return bool(jnp.all(jnp.stack(leaves))) if leaves else True


class _Checkpoints:
    """Orbax checkpoints of the training state and the metric history."""

    def __init__(self, directory: str, max_to_keep: int):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.directory = directory
        self.manager = ocp.CheckpointManager(
            os.path.abspath(directory),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
            ),
        )

    def latest(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, history: Mapping[str, np.ndarray]):
        ocp = self._ocp
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave({"state": state}),
                history=ocp.args.StandardSave({k: np.asarray(v) for k, v in history.items()}),
            ),
        )
        self.manager.wait_until_finished()  # written to a temporary dir, then renamed

    def restore(self, step: int, like):
        ocp = self._ocp
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, {"state": like})
        out = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract),
                history=ocp.args.StandardRestore(),
            ),
        )
        history = {k: np.asarray(v) for k, v in out["history"].items()}
        return out["state"]["state"], history

    def close(self):
        self.manager.close()


def fit(
    step: Callable,
    state,
    num_steps: int,
    *,
    rng_key: jax.Array,
    data=None,
    chunk_size: int = 100,
    progress: bool = True,
    description: str = "training",
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    max_to_keep: int = 3,
    resume: bool = False,
    mesh: Mesh | None = None,
    params_fn: Callable = lambda state: state,
) -> FitResult:
    """Run ``num_steps`` of ``step(state, key, data) -> (state, metrics)``.

    Steps run in jitted ``lax.scan`` chunks of ``chunk_size``; after each chunk the
    progress bar shows the last ``loss``, the metrics are checked for NaN/inf and,
    every ``checkpoint_every`` steps, the state is checkpointed with Orbax.

    Parameters
    ----------
    step : callable
        ``(state, rng_key, data) -> (state, metrics)``, metrics a dict of scalars.
    state : pytree
        The initial state (ignored when resuming from a checkpoint).
    num_steps : int
        Total number of steps of the run (a resumed run counts the steps done).
    rng_key : jax.Array
        Base key; step ``i`` uses ``fold_in(rng_key, i)``.
    data : pytree, optional
        Passed to every step as an argument of the jitted chunk (not baked in as a
        constant); shard it with :func:`shard_batch` for data parallelism.
    chunk_size : int
        Steps per jitted chunk.
    progress : bool
        Show a tqdm progress bar with the loss.
    checkpoint_dir, checkpoint_every, max_to_keep
        Orbax checkpoints every ``checkpoint_every`` steps (default: every chunk)
        and at the end; checkpoints are written atomically.
    resume : bool
        Continue from the latest checkpoint in ``checkpoint_dir`` if there is one.
    mesh : jax.sharding.Mesh, optional
        The state is replicated over the mesh (the step shards its batches).
    params_fn : callable
        Maps the final state to ``FitResult.params``.

    Raises
    ------
    TrainingDivergedError
        When a metric or the state becomes NaN or infinite; nothing is saved after
        the last good checkpoint.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from probcausal.infer import fit
    >>> def step(x, key, data):  # gradient descent on (x - 3)^2
    ...     x = x - 0.1 * 2 * (x - 3.0)
    ...     return x, {"loss": (x - 3.0) ** 2}
    >>> result = fit(step, jnp.float32(0.0), 100, rng_key=jax.random.key(0), progress=False)
    >>> round(float(result.state), 4), result.losses.shape
    (3.0, (100,))
    """
    _check_fit_args(num_steps, chunk_size, resume, checkpoint_dir)
    every = checkpoint_every or chunk_size
    key = _raw_key(rng_key)
    # a weakly typed leaf comes back strongly typed from the first chunk, which would
    # compile the chunk a second time
    state = jax.tree.map(_strong, state)
    ckpt = _Checkpoints(checkpoint_dir, max_to_keep) if checkpoint_dir is not None else None
    start, state, history = _resume(ckpt, state, num_steps, resume)
    state = replicate(state, mesh)
    last_saved = start if ckpt is not None and start else None
    run_chunk = _chunk_runner(step)
    chunks = {k: [np.asarray(v)] for k, v in history.items()}
    bar = tqdm(total=num_steps, initial=start, desc=description, disable=not progress)
    timing = _Timing()
    try:
        done = start
        while done < num_steps:
            boundary = min(num_steps, (done // chunk_size + 1) * chunk_size)
            if ckpt is not None:
                boundary = min(boundary, (done // every + 1) * every)
            t0 = time.perf_counter()
            new_state, metrics = run_chunk(state, key, data, jnp.int32(done), boundary - done)
            metrics = {k: np.asarray(v) for k, v in metrics.items()}
            jax.block_until_ready(new_state)
            timing.record(boundary - done, time.perf_counter() - t0)
            _check_finite(metrics, new_state, done, description, last_saved)
            state = new_state
            for k, v in metrics.items():
                chunks.setdefault(k, []).append(v)
            bar.update(boundary - done)
            if "loss" in metrics:
                bar.set_postfix(loss=f"{metrics['loss'][-1]:.4g}")
            done = boundary
            if ckpt is not None and (done % every == 0 or done == num_steps):
                ckpt.save(done, state, {k: np.concatenate(v) for k, v in chunks.items()})
                last_saved = done
    finally:
        bar.close()
        if ckpt is not None:
            ckpt.close()
    return FitResult(
        state=state,
        params=params_fn(state),
        metrics={k: np.concatenate(v) for k, v in chunks.items()},
        compile_seconds=timing.compile_seconds,
        steps_per_second=timing.steps_per_second,
    )


def _check_fit_args(num_steps, chunk_size, resume, checkpoint_dir) -> None:
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir")


def _resume(ckpt, state, num_steps: int, resume: bool):
    """``(first step, state, metric history)``: from the latest checkpoint when
    resuming and there is one, else from the start."""
    if not resume or ckpt.latest() is None:
        return 0, state, {}
    start = ckpt.latest()
    if start > num_steps:
        raise ValueError(
            f"the latest checkpoint in {ckpt.directory} is at step {start}, beyond "
            f"num_steps={num_steps}; pass a larger num_steps or another directory"
        )
    restored, history = ckpt.restore(start, state)
    return start, jax.tree.map(_placed_like, restored, state), history


def _placed_like(restored, fresh):
    """A restored leaf placed as the fresh one was: Orbax commits its arrays to a
    device, and a committed input changes the compiled program (its parameters'
    sharding is fixed), so a resumed run would compile every chunk a second time
    instead of reusing the first run's program from the persistent cache."""
    if not isinstance(restored, jax.Array) or not isinstance(fresh, jax.Array):
        return restored
    if fresh.committed or not restored.committed:
        return restored
    if jnp.issubdtype(restored.dtype, jax.dtypes.prng_key):
        data = np.asarray(jax.random.key_data(restored))
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(restored))
    return jnp.asarray(np.asarray(restored))


def _chunk_runner(step):
    """``(state, key, data, first, length) -> (state, metrics)``: ``length`` steps
    in one jitted ``lax.scan``, step ``i`` keyed by ``fold_in(key, i)``."""

    def run_chunk(state, key, data, first, length):
        def body(state, i):
            return step(state, jax.random.fold_in(key, i), data)

        return jax.lax.scan(body, state, first + jnp.arange(length))

    return jax.jit(run_chunk, static_argnums=4)


class _Timing:
    """Compile time (the first chunk of each length) apart from steady state."""

    def __init__(self):
        self.lengths: set = set()
        self.compile_seconds, self.steps, self.seconds = 0.0, 0, 0.0

    def record(self, length: int, seconds: float) -> None:
        if length in self.lengths:
            self.steps += length
            self.seconds += seconds
        else:
            self.lengths.add(length)
            self.compile_seconds += seconds

    @property
    def steps_per_second(self) -> float | None:
        return self.steps / self.seconds if self.steps else None


def _check_finite(metrics, state, first, description, last_saved):
    for name, values in metrics.items():
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            at = first + int(bad[0])
            raise TrainingDivergedError(
                f"{description}: metric '{name}' became {values[bad[0]]} at step {at}. "
                + _advice(last_saved),
                step=at,
                last_checkpoint=last_saved,
            )
    if not _all_finite(state):
        raise TrainingDivergedError(
            f"{description}: the state holds NaN or infinite values after the steps "
            f"{first}..{first + len(next(iter(metrics.values()), [])) - 1}. " + _advice(last_saved),
            step=first,
            last_checkpoint=last_saved,
        )


def _advice(last_saved) -> str:
    where = (
        f"The last good checkpoint is step {last_saved}; fit(..., resume=True) continues from it. "
        if last_saved is not None
        else "No checkpoint was written (pass checkpoint_dir to keep one). "
    )
    return where + "Lower the learning rate or clip gradients (optax.clip_by_global_norm)."
