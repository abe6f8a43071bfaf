"""Twin and multi worlds: counterfactual semantics by shared exogenous noise.

A world handler rewrites every sample site ``x ~ D(theta(pa))`` as
``x = f(theta(pa), u)`` (see :mod:`probcausal.mechanisms`) and evaluates it in all
worlds at once along a ``world`` batch dimension placed left of every plate.
World 0 is the factual world; each other world carries interventions. The noise
``u`` is drawn once, without the world dimension, so all worlds share it:

- a site whose factual value is known (evidence from ``obs=``, ``condition``,
  :class:`~probcausal.observe`, or a value from ``substitute``) gets its noise by
  abduction, ``u ~ p(u | x, theta)``, from its factual parents;
- any other site draws ``u`` from the base distribution;
- given ``noise={site: u}`` overrides both (this is how queries inject the noise
  they abducted).

Evidence applies to the factual world only. Evidence given by a ``condition`` or
``substitute`` placed *outside* the world handler is honoured too (and kept from
overwriting the world values). Each site's distribution is masked to the factual
world, so the log density of a world model equals that of the observational
model at the factual values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.handlers import condition, seed, substitute

from probcausal import mechanisms
from probcausal.errors import (
    ProbcausalError,
    SeedRequiredError,
    UnsupportedQueryError,
    WorldDimError,
    WorldInferenceError,
    WorldShapeError,
)
from probcausal.handlers.axis import WorldAxis
from probcausal.handlers.do import WorldValue, action_label, broadcast_action, do, reads_value
from probcausal.handlers.stack import (
    WorldHandler,
    isolated,
    max_plate_depth,
    plain_trace,
    stack,
)

__all__ = ["MultiWorld", "TwinWorld"]

_BATCH_HINT = (
    "Under a world handler an action must fit the site's shape; for several "
    "interventions pass a list of action dicts (one world each)."
)


def _outer_value(handlers, msg) -> tuple[Any, bool] | None:
    """The value an outer ``condition``/``substitute`` would give, outermost first."""
    for h in handlers:
        value = None
        if isinstance(h, condition):
            value = h.data.get(msg["name"]) if h.data is not None else h.condition_fn(msg)
            if value is not None:
                return value, True
        elif isinstance(h, substitute):
            if h.data is not None:
                value = h.data.get(msg["name"])
            elif h.substitute_fn is not None:
                if getattr(h.substitute_fn, "func", h.substitute_fn).__module__ == (
                    "numpyro.infer.initialization"
                ):
                    raise WorldInferenceError(msg["name"])
                value = h.substitute_fn(msg)
            if value is not None:
                return value, False
    return None


class _Worlds(WorldHandler):
    def __init__(
        self,
        fn: Callable | None = None,
        world_dim: int | None = None,
        noise: Mapping[str, Any] | None = None,
    ):
        if world_dim is not None and world_dim >= 0:
            raise ValueError(
                f"`world_dim` must be negative (counted from the right), got {world_dim}"
            )
        self.world_dim = world_dim
        self.noise = dict(noise or {})
        self._call_dim: int | None = None
        self._dim: int | None = None
        self._dos: list[do] | None = None
        self._plain: dict | None = None  # site -> (batch, event) shapes without worlds
        self._probe: int | None = None  # a world count for the shape probe
        self._last_site: str | None = None
        super().__init__(fn)

    # -- world bookkeeping -------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        self._call_dim = self.world_dim
        probing = self._probe is not None
        if not probing:
            tr = plain_trace(self.fn, args, kwargs)
            self._plain = {
                n: (tuple(site["fn"].batch_shape), tuple(site["fn"].event_shape))
                for n, site in tr.items()
                if site["type"] == "sample" and not site["infer"].get("is_auxiliary")
            }
            if self._call_dim is None:
                self._call_dim = -1 - max_plate_depth(self.fn, args, kwargs, tr)
        try:
            if not probing:
                self._probe_shapes(args, kwargs)
            return super().__call__(*args, **kwargs)
        finally:
            self._call_dim = None
            if not probing:
                self._plain = None

    def _probe_shapes(self, args, kwargs) -> None:
        """Run the model shape-only with a world count that no dimension of the model
        has: a site whose shapes then differ from the model's own (plus the world
        dimension) has absorbed the world dimension into its event or plate dims."""
        sizes = {d for batch, event in self._plain.values() for d in (*batch, *event)}
        count = next(p for p in (7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47) if p not in sizes)
        probe = type(self)(self.fn, world_dim=self._call_dim, noise=self.noise)
        probe._probe, probe._plain = count, self._plain
        try:
            with isolated():
                jax.eval_shape(lambda: seed(probe, 0)(*args, **kwargs))
        except ProbcausalError:
            raise
        except (ValueError, TypeError) as e:  # broadcasting in the model's code
            raise WorldShapeError(
                probe._last_site or "?", world_dim=self._call_dim, cause=str(e).split("\n")[0]
            ) from e

    def _check_shape(self, name, fn, dim) -> None:
        if self._plain is None or name not in self._plain:
            return
        batch, event = tuple(fn.batch_shape), tuple(fn.event_shape)
        plain_batch, plain_event = self._plain[name]
        width = -dim - 1  # batch dims right of the world dim
        pad = lambda shape: (1,) * (width - len(shape)) + tuple(shape)[-width:] if width else ()  # noqa: E731
        world = batch[len(batch) + dim] if len(batch) >= -dim else 1
        ok = (
            event == plain_event
            and len(batch) <= -dim
            and pad(batch[len(batch) - min(len(batch), width) :]) == pad(plain_batch)
            and world in (1, self.num_worlds)
        )
        if not ok:
            raise WorldShapeError(name, (batch, event), (plain_batch, plain_event), dim)

    def __enter__(self):
        self._dim = self._call_dim if self._call_dim is not None else self.world_dim
        self._dos = None
        return super().__enter__()

    def _resolve_dim(self, msg) -> int:
        plate_dims = [f.dim for f in msg.get("cond_indep_stack", ())]
        if self._dim is None:
            self._dim = -1 - max((-d for d in plate_dims), default=0)
        if any(d <= self._dim for d in plate_dims):
            raise WorldDimError(msg["name"], self._dim, plate_dims)
        return self._dim

    def _collect_dos(self) -> list[do]:
        """The ``do`` handlers that apply at the current site."""
        self._dos = [h for h in stack() if isinstance(h, do)]
        return self._dos

    @property
    def num_worlds(self) -> int:
        raise NotImplementedError

    def _worlds(self, count: int) -> int:
        return self._probe if self._probe is not None else count

    def world_actions(self, name: str) -> list[list[Any]]:
        """For each world k >= 1, the actions on ``name`` in application order."""
        raise NotImplementedError

    # -- the rewrite -------------------------------------------------------------------
    def process_message(self, msg) -> None:
        if msg["type"] == "control_flow":
            raise UnsupportedQueryError(
                f"{type(self).__name__} used directly does not reach into the body of a "
                "numpyro.contrib.control_flow.scan (its sites would keep one world). Ask "
                "pc.counterfactual(model, evidence, actions), whose worlds do."
            )
        if msg["type"] != "sample":
            return
        name, fn = msg["name"], msg["fn"]
        self._last_site = name
        dim = self._resolve_dim(msg)
        self._collect_dos()
        worlds = WorldAxis(self.num_worlds, dim - fn.event_dim)
        if msg["infer"].get("is_auxiliary"):  # numpyro.factor: count the factual world only
            if len(fn.batch_shape) >= -dim:
                msg["fn"] = fn.mask(worlds.factual_mask(dim))
            return
        x_fact, observed = self._factual(msg)
        keys = _Keys(name)
        batch = list(fn.batch_shape)
        if len(batch) >= -dim:
            batch[dim] = 1
        base_shape = tuple(batch)  # site batch shape without the world dim
        u = self._exogenous(name, fn, x_fact, keys, dim, base_shape)
        natural = mechanisms.apply(fn, u, name)
        actions = self.world_actions(name)
        value = _factual_and_natural(worlds, natural, x_fact, actions)
        for k, world_actions in enumerate(actions, start=1):
            if world_actions:
                v = worlds.take(natural, k)
                v = _act(msg, worlds, k, world_actions, v, value, keys, base_shape)
                value = worlds.put(value, k, v)
        msg["value"] = value
        msg["is_observed"] = observed
        if worlds.has_world(value):
            full_batch = jnp.shape(value)[: jnp.ndim(value) - fn.event_dim]
            if tuple(fn.batch_shape) != full_batch:
                fn = fn.expand(full_batch)
            fn = fn.mask(worlds.factual_mask(dim))
        self._check_shape(name, fn, dim)
        msg["fn"] = fn
        msg["infer"] = {**msg["infer"], "noise": u, "intervened": any(actions)}

    def _factual(self, msg):
        """The factual value and whether it is observed: from the message (inner
        handlers, ``obs=``) or from an outer ``condition`` / ``substitute``."""
        x_fact, observed = msg["value"], msg["is_observed"]
        if x_fact is None:
            below = stack()[: stack().index(self)]
            outer = _outer_value(below, msg)
            if outer is not None:
                x_fact, observed = outer
                msg["_control_flow_done"] = True  # keep outer handlers from overwriting
        return x_fact, observed

    def _exogenous(self, name, fn, x_fact, keys, dim, base_shape):
        """The site's exogenous noise, shared by every world: given, abducted from
        the factual value, or drawn from its prior."""
        if name in self.noise:
            return jnp.asarray(self.noise[name])
        if x_fact is not None:
            u = mechanisms.abduct(keys(), fn, x_fact, name)
            n_trail = len(mechanisms.noise_shape(fn, name)) - len(fn.batch_shape)
            u_axis = dim - n_trail
            if jnp.ndim(u) >= -u_axis and jnp.shape(u)[u_axis] != 1:
                u = jax.lax.index_in_dim(u, 0, u_axis, keepdims=True)
            return u
        shape = base_shape + mechanisms.noise_shape(fn, name)[len(fn.batch_shape) :]
        return mechanisms.sample_noise(keys(), fn, shape, name)


def _factual_and_natural(worlds: WorldAxis, natural, x_fact, actions):
    """The factual value in world 0 and the natural value elsewhere. The natural
    value is read only by a world without an action on this site, or whose first
    action transforms it (a callable); otherwise it is left out of the program, and
    with it the abduction of this site's noise."""
    intervened = any(actions)
    reads_natural = any(not acts or reads_value(acts[0]) for acts in actions)
    if x_fact is None:
        return natural
    if intervened and not reads_natural:
        full = jnp.shape(worlds.expand(natural))  # shape only: traced, then dropped
        x_fact = jnp.asarray(x_fact, natural.dtype)
        return jnp.broadcast_to(x_fact, jnp.broadcast_shapes(x_fact.shape, full))
    if worlds.has_world(natural) or intervened:
        return worlds.put(natural, 0, x_fact)
    return jnp.broadcast_to(
        jnp.asarray(x_fact, natural.dtype), jnp.broadcast_shapes(jnp.shape(x_fact), natural.shape)
    )


def _act(msg, worlds: WorldAxis, k: int, world_actions, v, value, keys, base_shape):
    """The value of the site in world ``k`` after its actions, applied in order
    (``v``: its natural value there; ``value``: every world's value so far;
    ``base_shape``: the site's batch shape without the world dim)."""
    fn, name = msg["fn"], msg["name"]
    for a in world_actions:
        if isinstance(a, WorldValue):
            if not 0 <= a.world < k:
                raise ValueError(
                    f"WorldValue({a.world}) on site '{name}' in world {k}: a world "
                    "may only take values from an earlier world (0 is factual)."
                )
            v = worlds.take(value, a.world)
        elif isinstance(a, dist.Distribution):
            v = a.expand(jnp.broadcast_shapes(a.batch_shape, base_shape)).sample(keys())
        elif callable(a):
            v = a(v)
        else:
            v = broadcast_action(msg, a, base_shape + tuple(fn.event_shape), _BATCH_HINT)
    return v


class _Keys:
    """Lazily draws PRNG keys from the enclosing ``seed`` handler."""

    def __init__(self, site: str):
        self.site = site

    def __call__(self):
        key = numpyro.prng_key()
        if key is None:
            raise SeedRequiredError(self.site, "draw or abduct its exogenous noise")
        return key


class TwinWorld(_Worlds):
    """Two worlds: factual (0) and counterfactual (1).

    Every ``do`` handler active around or inside the model applies its actions to
    world 1 (nested ``do`` handlers compose, the outer one last). Sites get a world
    dimension of size 2 at ``world_dim`` once they differ between worlds.

    Parameters
    ----------
    fn : callable, optional
        The model. Called as ``TwinWorld(model)(*args)`` the world dimension is
        allocated automatically left of every plate.
    world_dim : int, optional
        Batch dim of the worlds. Used as ``with TwinWorld():`` without it, the dim is
        fixed at the first sample site, left of that site's plates.
    noise : dict, optional
        Exogenous noise per site, instead of drawing or abducting it.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> from numpyro.handlers import condition, seed, trace
    >>> import probcausal as pc
    >>> def model():
    ...     x = numpyro.sample("x", dist.Normal(0, 1))
    ...     return numpyro.sample("y", dist.Normal(x, 1))
    >>> twin = pc.TwinWorld(pc.do(condition(model, {"x": 0.5, "y": 1.5}), {"x": 2.0}))
    >>> tr = trace(seed(twin, 0)).get_trace()
    >>> tr["y"]["value"].tolist()  # factual 1.5; counterfactual 2 + (1.5 - 0.5)
    [1.5, 3.0]
    """

    @property
    def num_worlds(self) -> int:
        return self._worlds(2)

    def world_actions(self, name):
        # outer handlers come first in the stack; apply inner actions first
        return [[d.actions[name] for d in reversed(self._dos or []) if name in d.actions]]

    @property
    def labels(self) -> list[str]:
        """World labels of the last call: ``factual`` and the merged ``do(...)``."""
        merged = {}
        for d in self._dos or []:
            merged.update(d.actions)
        return ["factual", action_label(merged)]


class MultiWorld(_Worlds):
    """One world per ``do`` handler, plus the factual world 0.

    ``do`` handlers get world indices in stack order (outermost first), so a query
    with k interventions costs k + 1 worlds, never 2**k. Actions may take values
    from an earlier world with :class:`~probcausal.WorldValue`, which expresses
    nested counterfactuals such as the natural direct effect's ``Y_{x1, M_{x0}}``.
    All ``do`` handlers must be active when the model's first sample site runs.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> from numpyro.handlers import seed, trace
    >>> import probcausal as pc
    >>> def model():
    ...     x = numpyro.sample("x", dist.Normal(0, 1))
    ...     m = numpyro.sample("m", dist.Normal(2 * x, 1))
    ...     return numpyro.sample("y", dist.Normal(x + 3 * m, 1))
    >>> def nested():
    ...     with pc.MultiWorld(), pc.do(actions={"x": 0.0}), pc.do(
    ...         actions={"x": 1.0, "m": pc.WorldValue(1)}
    ...     ):
    ...         return model()
    >>> y = seed(nested, 0)()
    >>> round(float(y[2] - y[1]), 4)  # Y_{1, M_0} - Y_0 = direct effect 1
    1.0
    """

    @property
    def num_worlds(self) -> int:
        return self._worlds(1 + len(self._dos or []))

    def world_actions(self, name):
        return [[d.actions[name]] if name in d.actions else [] for d in self._dos or []]

    def _collect_dos(self):
        dos = [h for h in stack() if isinstance(h, do)]
        if self._dos is None:
            self._dos = dos
        elif any(d not in self._dos for d in dos):
            raise ValueError(
                "a `do` handler was opened after the model's first sample site under "
                "MultiWorld; open every `do` around the whole model."
            )
        return self._dos

    @property
    def labels(self) -> list[str]:
        """World labels of the last call: ``factual``, then ``do(...)`` per world."""
        return ["factual"] + [action_label(d.actions) for d in self._dos or []]
