"""``do``: Pearl's intervention operator as a NumPyro effect handler."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.primitives import Messenger

from probcausal.errors import (
    InterventionShapeError,
    SeedRequiredError,
    UnknownSiteError,
    UnsupportedQueryError,
)
from probcausal.handlers.scan import reach_into_scan, replayed, step_action
from probcausal.handlers.stack import active_world, plain

__all__ = ["WorldValue", "action_label", "broadcast_action", "do", "reads_value", "unique_labels"]


@dataclass(frozen=True)
class WorldValue:
    """An action meaning "the value this site takes in world ``world``".

    Only meaningful under :class:`~probcausal.MultiWorld`, where it expresses nested
    counterfactuals such as ``Y_{x1, M_{x0}}``: intervene on ``M`` with its value in
    the world where ``X = x0``. ``world`` must index an earlier world.
    """

    world: int


def action_label(actions: Mapping[str, Any]) -> str:
    """A readable label for a dict of actions, e.g. ``do(h=2.0)``.

    >>> action_label({"h": 2.0, "x": lambda v: v + 1})
    'do(h=2.0, x=<lambda>)'
    >>> action_label({"h": np.array([1.0, 2.5])})
    'do(h=[1, 2.5])'
    """
    parts = []
    for name, a in actions.items():
        if isinstance(a, WorldValue):
            txt = f"world[{a.world}]"
        elif isinstance(a, dist.Distribution):
            txt = type(a).__name__
        elif callable(a):
            txt = getattr(a, "__name__", type(a).__name__)
        elif isinstance(a, jax.core.Tracer):  # a query traced by jit or vmap
            txt = f"traced{tuple(a.shape)}" if a.shape else "traced"
        else:
            arr = np.asarray(a)
            if arr.size == 1:
                txt = f"{arr.item():g}"
            elif arr.size <= 6:  # small arrays by value, readable and distinct
                txt = "[" + ", ".join(f"{v:g}" for v in arr.ravel().tolist()) + "]"
            else:
                txt = f"array{tuple(arr.shape)}"
            if arr.size == 1 and np.issubdtype(arr.dtype, np.floating) and "." not in txt:
                txt = txt + ".0" if "e" not in txt and "n" not in txt else txt
        parts.append(f"{name}={txt}")
    return "do(" + ", ".join(parts) + ")"


def unique_labels(labels) -> list[str]:
    """Labels made unique by numbering repeats: ``["a", "a"] -> ["a", "a#2"]``."""
    out, seen = [], {}
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label}#{seen[label]}")
    return out


def _plates(msg) -> list[tuple[str, int, int]]:
    return [(f.name, f.size, f.dim) for f in msg.get("cond_indep_stack", ())]


def broadcast_action(msg, value, target_shape, hint: str = "") -> jnp.ndarray:
    """Broadcast an intervention value to ``target_shape`` or raise naming the site."""
    value = jnp.asarray(value)
    try:
        shape = jnp.broadcast_shapes(value.shape, tuple(target_shape))
    except ValueError:
        raise InterventionShapeError(
            msg["name"], value.shape, target_shape, _plates(msg), hint
        ) from None
    return jnp.broadcast_to(value, shape)


def _natural_value(msg):
    if msg["value"] is not None:
        return msg["value"]
    key = numpyro.prng_key()
    if key is None:
        raise SeedRequiredError(msg["name"], "draw its natural value for a callable action")
    return msg["fn"].sample(key)


def _intervene(msg, action) -> None:
    """Apply one action to a site outside any world handler."""
    fn = msg["fn"]
    if isinstance(action, WorldValue):
        raise TypeError(
            f"action WorldValue({action.world}) on site '{msg['name']}' refers to another "
            "world: use it under `probcausal.MultiWorld`."
        )
    if isinstance(action, Mapping):
        raise UnsupportedQueryError(
            f"action {dict(action)!r} on site '{msg['name']}': a {{step: value}} action "
            "sets steps of a site inside numpyro.contrib.control_flow.scan, and this site "
            "is not in a scan. Give a value."
        )
    if isinstance(action, dist.Distribution):
        batch = broadcast_action(msg, jnp.zeros(action.batch_shape), fn.batch_shape).shape
        msg["fn"] = action.expand(batch) if tuple(action.batch_shape) != batch else action
        msg["value"] = None
        msg["is_observed"] = False
    else:
        value = action(_natural_value(msg)) if callable(action) else action
        value = broadcast_action(msg, value, fn.shape())
        msg["value"] = value
        msg["fn"] = dist.Delta(value, event_dim=fn.event_dim)
        msg["is_observed"] = True
    msg["infer"] = {**msg["infer"], "intervened": True}


class do(Messenger):
    """Intervene on sample sites: ``do(model, actions)`` or ``with do(actions=...)``.

    Parameters
    ----------
    fn : callable, optional
        The model to intervene on.
    actions : dict
        Site name -> action. An action is a value (an array broadcasts like any batch
        dimension), a callable of the site's natural value (a shift or soft
        intervention, ``lambda x: x + 1``), or a ``Distribution`` (a stochastic
        intervention). Under :class:`~probcausal.MultiWorld` it may also be a
        :class:`WorldValue`.

    Unlike ``numpyro.handlers.do`` the intervened site keeps its name; its value is
    the action and it contributes nothing to the log density (it is marked
    observed, with a ``Delta`` distribution). Under a world handler the action
    applies only to the handler's counterfactual world(s). Naming a site the model
    does not have raises :class:`~probcausal.errors.UnknownSiteError` once the model
    has run.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> from numpyro.handlers import seed, trace
    >>> import probcausal as pc
    >>> def model():
    ...     x = numpyro.sample("x", dist.Normal(0, 1))
    ...     return numpyro.sample("y", dist.Normal(2 * x, 0.01))
    >>> tr = trace(seed(pc.do(model, {"x": 1.0}), 0)).get_trace()
    >>> float(tr["x"]["value"]), round(float(tr["y"]["value"]))
    (1.0, 2)
    """

    def __init__(self, fn: Callable | None = None, actions: Mapping[str, Any] | None = None):
        if not isinstance(actions, Mapping):
            raise TypeError(
                "`actions` must be a dict mapping site names to actions, got "
                f"{type(actions).__name__}; write do(model, {{'x': 1.0}})."
            )
        self.actions = dict(actions)
        self._seen: set[str] = set()
        super().__init__(fn)

    def __enter__(self):
        self._seen = set()
        return super().__enter__()

    def __exit__(self, exc_type, exc_value, traceback):
        super().__exit__(exc_type, exc_value, traceback)
        if exc_type is None:
            unknown = set(self.actions) - self._seen
            if unknown:
                raise UnknownSiteError("intervention", unknown, self._seen)

    def process_message(self, msg) -> None:
        if msg["type"] == "control_flow":  # a scan: intervene inside its body
            if self.actions and active_world() is None and not plain():
                reach_into_scan(self, msg)
            return
        if msg["type"] != "sample":
            return
        self._seen.add(msg["name"])
        if replayed(msg):  # a scanned site: intervened on inside the loop
            return
        if msg["name"] in self.actions and active_world() is None and not plain():
            _intervene(msg, self.actions[msg["name"]])

    def step(self, i, length):
        return _DoStep(self.actions, i, length)


class _DoStep(Messenger):
    """``do`` at step ``i`` of a scan (see :func:`step_action`)."""

    def __init__(self, actions, i, length):
        self.actions, self.i, self.length = actions, i, length
        super().__init__(None)

    def process_message(self, msg) -> None:
        if msg["type"] != "sample" or msg["name"] not in self.actions:
            return
        action = self.actions[msg["name"]]
        if not (callable(action) or isinstance(action, WorldValue)):
            action = step_action(
                action, self.i, self.length, msg["fn"].shape(), lambda: _natural_value(msg)
            )
        _intervene(msg, action)


def reads_value(action) -> bool:
    """Whether an action transforms the site's own value in its world."""
    return callable(action) and not isinstance(action, WorldValue | dist.Distribution)
