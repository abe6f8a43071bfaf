"""The causal handlers inside ``numpyro.contrib.control_flow.scan`` bodies.

NumPyro runs a scan body under ``block`` and replays its sites, stacked along the
time axis, to the handlers outside once the loop has run: a handler that sets
values (``do``, the world handlers) would set them too late, after the later steps
and the sites downstream of the loop have read the old ones. NumPyro carries only
its own ``seed``, ``condition`` and ``substitute`` into the body. A causal handler
calls :func:`reach_into_scan` on the ``control_flow`` message: the body then runs
under a per-step copy of the handler (``handler.step(i, length)``), which sees
each step's sites with their per-step shapes and collects what it must hand
back in a ``record`` dict, if it has one (returned from the loop, stacked); the
handler gets the stacked records from ``handler.scanned(record)``, if it has that
method, before the stacked sites are replayed to it (with
``msg["_control_flow_done"]`` set, which it leaves alone).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

import jax
import jax.numpy as jnp
from numpyro.contrib.control_flow.scan import _subs_wrapper
from numpyro.handlers import condition, substitute

__all__ = ["reach_into_scan", "replayed", "step_action"]


def replayed(msg) -> bool:
    """Whether ``msg`` is a scanned site replayed after its loop ran."""
    return bool(msg.get("_control_flow_done"))


def reach_into_scan(handler, msg) -> None:
    """Run the body of the scan ``msg`` (a ``control_flow`` message) under
    ``handler.step(i, length)`` at each step ``i``.

    The ``condition`` / ``substitute`` handlers inside ``handler`` have already
    added themselves to the message: they are applied inside the per-step handler,
    as they are inside ``handler`` outside the loop (a value they set is seen by
    it), and removed from the message so that NumPyro does not apply them again
    outside it.
    """
    if msg["type"] != "control_flow":
        return
    stack = msg["kwargs"].setdefault("substitute_stack", [])
    inner = [s for s in stack if s[0] in ("condition", "substitute")]
    stack[:] = [s for s in stack if s[0] not in ("condition", "substitute")]
    run = msg["fn"]

    def wrapped(f, init, xs, length, reverse, **kwargs):
        if length is None:
            length = jnp.shape(jax.tree_util.tree_leaves(xs)[0])[0]

        def body(carry, indexed):
            i, x = indexed
            fn = f
            for kind, subs in inner:
                subs_fn = partial(_subs_wrapper, subs, i, length)
                if kind == "condition":
                    fn = condition(fn, condition_fn=subs_fn)
                else:
                    fn = substitute(fn, substitute_fn=subs_fn)
            step = handler.step(i, length)
            with step:
                carry, y = fn(carry, x)
            return carry, (y, getattr(step, "record", {}))

        last, (pytree_trace, (ys, record)) = run(
            body, init, (jnp.arange(length), xs), length, reverse, **kwargs
        )
        if hasattr(handler, "scanned"):
            handler.scanned(record)
        return last, (pytree_trace, ys)

    msg["fn"] = wrapped


def step_action(action, i, length: int, step_shape: tuple, natural):
    """The value of a value action at step ``i`` of a scan of ``length`` steps:
    ``{t: v, ...}`` sets step ``t`` only (the natural value, ``natural()``,
    elsewhere), an array of shape ``(length, *step_shape)`` gives step ``i`` its
    row, any other value applies at every step."""
    if isinstance(action, Mapping):
        steps = sorted(action)
        bad = [t for t in steps if not isinstance(t, int) or not -length <= t < length]
        if bad:
            raise ValueError(
                f"a step action {{step: value}} needs integer steps of the scan's "
                f"{length} steps, got {bad}"
            )
        nat = jnp.asarray(natural())
        hit = jnp.asarray([t % length for t in steps]) == i
        values = jnp.stack(
            [jnp.broadcast_to(jnp.asarray(action[t], nat.dtype), nat.shape) for t in steps]
        )
        return jnp.where(jnp.any(hit), values[jnp.argmax(hit)], nat)
    value = jnp.asarray(action)
    if value.ndim == len(step_shape) + 1 and value.shape[0] == length:
        return value[i]
    return value
