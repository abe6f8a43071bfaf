"""Training AVICI on simulated data: edge-wise cross-entropy plus an acyclicity
penalty (the spectral radius of the edge-probability matrix) whose weight grows by
dual ascent; data sets are drawn on the fly by :func:`probcausal.data.simulate`
inside the jitted step, and the shared loop :func:`probcausal.infer.fit` gives the
progress bar, Orbax checkpoints, exact resume and data parallelism."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from probcausal.data.scm import Domain, simulate
from probcausal.infer.training import FitResult, data_mesh, fit, shard_batch
from probcausal.models.avici.model import AVICI, edge_probabilities

__all__ = ["AVICIState", "acyclicity", "avici_loss", "train_avici"]


def acyclicity(probabilities: jax.Array, iterations: int | None = None) -> jax.Array:
    """Spectral radius of a nonnegative ``(d, d)`` matrix by power iteration.

    Zero (exactly) for the adjacency of a DAG, positive when the matrix has a cycle.
    The left and right vectors are held fixed in the gradient, which is then
    ``u v^T / u^T v``, the derivative of the leading eigenvalue. ``iterations``
    defaults to ``d``: enough for a nilpotent matrix to give exactly zero. On a
    cyclic matrix the estimate is positive but approximate (power iteration does
    not converge on periodic matrices); a penalty needs no more.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from probcausal.models.avici import acyclicity
    >>> chain = jnp.array([[0., 1, 0], [0, 0, 1], [0, 0, 0]])
    >>> two_cycle = chain.at[1, 0].set(1.0)  # x0 <-> x1 -> x2
    >>> float(acyclicity(chain)), round(float(acyclicity(two_cycle)), 3)
    (0.0, 1.0)
    """
    d = probabilities.shape[-1]
    iterations = d if iterations is None else iterations
    p = jax.lax.stop_gradient(probabilities)

    def power(_, uv):
        u, v = uv
        v = p @ v
        u = p.T @ u
        return (
            u / (jnp.linalg.norm(u) + 1e-12),
            v / (jnp.linalg.norm(v) + 1e-12),
        )

    ones = jnp.ones(d) / jnp.sqrt(d)
    u, v = jax.lax.fori_loop(0, iterations, power, (ones, ones))
    return (u @ probabilities @ v) / (u @ v + 1e-12)


def avici_loss(logits: jax.Array, graphs: jax.Array, dual: jax.Array):
    """Mean edge-wise binary cross-entropy over the off-diagonal entries, plus
    ``dual`` times the mean spectral radius of the predicted probabilities.
    Returns ``(loss, (cross_entropy, spectral_radius))``."""
    d = logits.shape[-1]
    off = 1.0 - jnp.eye(d)
    bce = optax.sigmoid_binary_cross_entropy(logits, graphs)
    bce = (bce * off).sum((-1, -2)) / (d * (d - 1))
    rho = jax.vmap(acyclicity)(edge_probabilities(logits).reshape(-1, d, d))
    return bce.mean() + dual * rho.mean(), (bce.mean(), rho.mean())


class AVICIState(NamedTuple):
    """Network parameters, optimizer state, the acyclicity multiplier, a running
    average of the spectral radius and the step counter."""

    params: Any
    opt_state: Any
    dual: jax.Array
    rho_average: jax.Array
    step: jax.Array


def train_avici(
    domains: Domain | Sequence[Domain],
    num_steps: int,
    *,
    rng_key: jax.Array,
    net: AVICI | None = None,
    batch_size: int = 16,
    learning_rate: float = 3e-4,
    warmup_steps: int = 500,
    clip_norm: float = 1.0,
    dual_learning_rate: float = 1e-4,
    dual_every: int = 250,
    dual_burnin: int | None = None,
    progress: bool = True,
    checkpoint_dir=None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    mesh: Mesh | str | None = None,
    chunk_size: int = 50,
    **net_kwargs,
) -> tuple[AVICI, FitResult]:
    """Train an :class:`AVICI` network on data sets drawn from ``domains``.

    Each step draws ``batch_size`` fresh data sets from every domain (domains may
    differ in size), so the step never sees the same data twice. Adam with linear
    warm-up and cosine decay, gradients clipped to ``clip_norm``. The acyclicity
    multiplier starts at 0 and, after ``dual_burnin`` steps (default: half of
    ``num_steps``), grows every ``dual_every`` steps by ``dual_learning_rate`` times
    the running average of the spectral radius.

    Returns the trained network and the :class:`~probcausal.infer.FitResult`
    (metrics ``loss``, ``cross_entropy``, ``spectral_radius``, ``dual``).

    Examples
    --------
    >>> import jax
    >>> from probcausal.data import Domain
    >>> from probcausal.models.avici import train_avici
    >>> dom = Domain(num_variables=5, num_observations=30)
    >>> net, result = train_avici(dom, 20, rng_key=jax.random.key(0), batch_size=4,
    ...                           dim=16, layers=1, heads=2, progress=False)
    >>> result.metrics["cross_entropy"].shape
    (20,)
    """
    domains = (domains,) if isinstance(domains, Domain) else tuple(domains)
    if not domains:
        raise ValueError("train_avici needs at least one Domain")
    if net is None:
        init_key = jax.random.fold_in(rng_key, 2**31 - 1)
        net = AVICI(**net_kwargs, rngs=nnx.Rngs(params=init_key))
    elif net_kwargs:
        raise ValueError(f"pass network options {sorted(net_kwargs)} or a `net`, not both")
    mesh = data_mesh(mesh)
    if mesh is not None and batch_size % mesh.size:
        raise ValueError(
            f"batch_size={batch_size} must be divisible by the {mesh.size} devices of the mesh"
        )
    graphdef, params, rest = nnx.split(net, nnx.Param, ...)
    schedule = optax.warmup_cosine_decay_schedule(
        0.0,
        learning_rate,
        min(warmup_steps, max(num_steps - 1, 1)),
        max(num_steps, 2),
        end_value=0.05 * learning_rate,
    )
    tx = optax.chain(optax.clip_by_global_norm(clip_norm), optax.adam(schedule))
    burnin = num_steps // 2 if dual_burnin is None else dual_burnin
    state = AVICIState(params, tx.init(params), jnp.float32(0.0), jnp.float32(0.0), jnp.int32(0))

    def step(state: AVICIState, key, _data):
        keys = jax.random.split(key, len(domains))
        batches = [simulate(k, dom, batch_size) for k, dom in zip(keys, domains, strict=True)]
        # the barrier keeps XLA from fusing (and recomputing) the simulator into the network
        batches = jax.lax.optimization_barrier([(b.inputs, b.graphs) for b in batches])
        batches = [shard_batch(b, mesh) for b in batches]

        def loss_fn(p):
            model = nnx.merge(graphdef, p, rest)
            out = [avici_loss(model(x), g, state.dual) for x, g in batches]
            loss = sum(o[0] for o in out) / len(out)
            bce = sum(o[1][0] for o in out) / len(out)
            rho = sum(o[1][1] for o in out) / len(out)
            return loss, (bce, rho)

        (loss, (bce, rho)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        rho_average = jnp.where(state.step == 0, rho, 0.99 * state.rho_average + 0.01 * rho)
        ascend = (state.step >= burnin) & ((state.step - burnin) % dual_every == 0)
        dual = state.dual + jnp.where(ascend, dual_learning_rate * rho_average, 0.0)
        new = AVICIState(params, opt_state, dual, rho_average, state.step + 1)
        return new, {"loss": loss, "cross_entropy": bce, "spectral_radius": rho, "dual": dual}

    result = fit(
        step,
        state,
        num_steps,
        rng_key=rng_key,
        chunk_size=chunk_size,
        progress=progress,
        description="AVICI",
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        resume=resume,
        mesh=mesh,
        params_fn=lambda s: s.params,
    )
    trained = nnx.merge(graphdef, result.state.params, rest)
    return trained, result
