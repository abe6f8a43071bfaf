"""Reading NumPyro's handler stack, shared by the causal handlers."""

from __future__ import annotations

import contextlib

from numpyro.handlers import seed, trace
from numpyro.primitives import _PYRO_STACK, Messenger

__all__ = [
    "WorldHandler",
    "active_world",
    "isolated",
    "max_plate_depth",
    "plain",
    "plain_trace",
    "stack",
]


class WorldHandler(Messenger):
    """Marker base class of the world handlers (`TwinWorld`, `MultiWorld`)."""


def stack() -> list:
    """The live handler stack, outermost first."""
    return _PYRO_STACK


def active_world() -> WorldHandler | None:
    """The innermost active world handler, or None."""
    for handler in reversed(_PYRO_STACK):
        if isinstance(handler, WorldHandler):
            return handler
    return None


@contextlib.contextmanager
def isolated():
    """Run a block with an empty handler stack (for side traces)."""
    saved = list(_PYRO_STACK)
    _PYRO_STACK.clear()
    try:
        yield
    finally:
        _PYRO_STACK[:] = saved


_PLAIN: list[bool] = [False]


def plain() -> bool:
    """Whether a plain shape trace is running: ``do`` handlers stand aside."""
    return _PLAIN[0]


def plain_trace(fn, args=(), kwargs=None):
    """A trace of ``fn(*args, **kwargs)`` with an empty handler stack and every
    ``do`` inside it standing aside: the model's own sites and shapes."""
    _PLAIN[0] = True
    try:
        with isolated():
            return trace(seed(fn, 0)).get_trace(*args, **(kwargs or {}))
    finally:
        _PLAIN[0] = False


def max_plate_depth(fn, args=(), kwargs=None, tr=None) -> int:
    """How many batch dims the plates of ``fn(*args, **kwargs)`` use, at most."""
    tr = plain_trace(fn, args, kwargs) if tr is None else tr
    return max(
        (-frame.dim for site in tr.values() for frame in site.get("cond_indep_stack", ())),
        default=0,
    )
