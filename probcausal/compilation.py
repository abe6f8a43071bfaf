"""Compilation: what a model reads besides its arguments, the state behind a
compiled program.

A compiled query bakes every value the model reads from a global variable or a
closure into the program as a constant. So that no query answers with a stale
program after such a value changed, the cache key of every program holds
:func:`model_state`: the values the model function (and every user function it
calls by name, and every object it reads) reads from its globals and closure
cells, followed a few levels deep:

- numbers, strings, ``None``: by value;
- NumPy arrays (mutable): by content;
- JAX arrays (immutable): by identity, the array itself held by the key so that
  its identity cannot be reused;
- dicts, lists, tuples, sets and the attributes of plain objects: item by item;
- modules, classes and library functions (JAX, NumPyro, NumPy, ...): not read.

What lies deeper than :data:`MAX_DEPTH` levels, or in containers of more than
:data:`MAX_ITEMS` items, is keyed by identity only: pass such values to the model
as arguments (``model_args`` / ``model_kwargs``) instead.
"""

from __future__ import annotations

import functools
import sys
import types

import jax
import numpy as np
from numpyro.primitives import Messenger

__all__ = ["MAX_DEPTH", "MAX_ITEMS", "model_state"]

MAX_DEPTH = 4
MAX_ITEMS = 256
_LIBRARIES = (
    "jax",
    "jaxlib",
    "numpy",
    "numpyro",
    "flax",
    "optax",
    "probcausal",
    "scipy",
    "builtins",
    "functools",
    "math",
    "networkx",
    "pandas",
)


class _Ident:
    """Hashable by identity; holds the object so that its id stays unique."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __hash__(self):
        return id(self.obj)

    def __eq__(self, other):
        return isinstance(other, _Ident) and other.obj is self.obj


_NAMES: dict = {}  # code object -> global names it (and its nested code) reads


def _global_names(code: types.CodeType) -> tuple[str, ...]:
    try:
        return _NAMES[code]
    except KeyError:
        pass
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.extend(_global_names(const))
    out = tuple(dict.fromkeys(names))
    _NAMES[code] = out
    return out


def _is_library(obj) -> bool:
    module = getattr(obj, "__module__", None) or ""
    if module.split(".")[0] not in _LIBRARIES:
        return False
    # a function defined in a library module's own namespace (not, say, in a
    # doctest's copy of it)
    g = getattr(obj, "__globals__", None)
    return g is None or g is getattr(sys.modules.get(module), "__dict__", None)


def _function_state(fn, depth, seen):
    code = getattr(fn, "__code__", None)
    if code is None:
        return _Ident(fn)
    out = []
    g = fn.__globals__
    for name in _global_names(code):
        if name in g:
            out.append((name, _state(g[name], depth + 1, seen)))
    for cell in fn.__closure__ or ():
        try:
            out.append(_state(cell.cell_contents, depth + 1, seen))
        except ValueError:  # an empty cell
            out.append(None)
    if fn.__defaults__:
        out.append(_state(fn.__defaults__, depth + 1, seen))
    return tuple(out)


def _state(v, depth, seen):
    if v is None or isinstance(v, bool | int | float | complex | str | bytes):
        return v
    if isinstance(v, types.ModuleType | type) or (
        isinstance(v, types.FunctionType | types.BuiltinFunctionType)
        and _is_library(v)
        and not getattr(v, "__closure__", None)  # a library's closure holds state
    ):
        return None  # code, not state
    if isinstance(v, jax.Array):
        return _Ident(v)
    if isinstance(v, np.ndarray | np.generic):
        a = np.asarray(v)
        if a.dtype == object:
            return _Ident(v)
        return ("ndarray", a.shape, a.dtype.str, a.tobytes())
    if depth > MAX_DEPTH or id(v) in seen:
        return _Ident(v)
    seen = seen | {id(v)}
    if isinstance(v, types.FunctionType):
        return _function_state(v, depth, seen)
    if isinstance(v, types.MethodType):
        return (_function_state(v.__func__, depth, seen), _state(v.__self__, depth + 1, seen))
    if isinstance(v, functools.partial):
        return (
            _state(v.func, depth + 1, seen),
            _state(v.args, depth + 1, seen),
            _state(v.keywords, depth + 1, seen),
        )
    if isinstance(v, dict):
        if len(v) > MAX_ITEMS:
            return _Ident(v)
        return tuple((_state(k, depth + 1, seen), _state(x, depth + 1, seen)) for k, x in v.items())
    if isinstance(v, list | tuple | set | frozenset):
        if len(v) > MAX_ITEMS:
            return _Ident(v)
        items = sorted(v, key=repr) if isinstance(v, set | frozenset) else v
        return (type(v).__name__,) + tuple(_state(x, depth + 1, seen) for x in items)
    if _is_library(type(v)) and not hasattr(v, "__dict__"):
        return _Ident(v)
    attrs = getattr(v, "__dict__", None)
    if attrs is not None and any(k[:2] == "__" for k in attrs):
        # not the names and docs that functools.wraps copies (nor the wrapped
        # function twice)
        attrs = {k: x for k, x in attrs.items() if k[:2] != "__"}
    if attrs is not None and isinstance(v, Messenger):
        attrs = _settings(attrs)
    if attrs is not None and len(attrs) <= MAX_ITEMS:
        call = type(v).__call__ if callable(v) and not _is_library(type(v)) else None
        return (
            _Ident(type(v)),
            _state(attrs, depth + 1, seen),
            _function_state(call, depth, seen) if isinstance(call, types.FunctionType) else None,
        )
    try:
        hash(v)
    except TypeError:
        return _Ident(v)
    return v


def model_state(model) -> tuple:
    """A hashable summary of what ``model`` reads from globals and closures.

    Examples
    --------
    >>> SCALE = {"v": 2.0}
    >>> def model(x):
    ...     return SCALE["v"] * x
    >>> before = model_state(model)
    >>> SCALE["v"] = 3.0
    >>> model_state(model) == before
    False

    Models built alike (``do(model, {"x": 1.0})`` twice) have equal states, so a
    query on the second reuses the first one's compiled program.
    """
    return (_root(model), _state(model, 0, frozenset()))


def _settings(attrs: dict) -> dict:
    """A handler's model and public settings (``do``'s actions, ``condition``'s
    data), not its per-call bookkeeping."""
    return {k: x for k, x in attrs.items() if not k.startswith("_") and k != "trace"}


def _root(model):
    """The model by identity; a handler around it (``do``, ``condition``) by its type,
    its settings and the identity of what it wraps, so that handlers built alike
    around one model share their programs."""
    if not isinstance(model, Messenger):
        return _Ident(model)
    attrs = _settings(vars(model))
    return (
        _Ident(type(model)),
        tuple(
            (k, _root(x) if k == "fn" else _state(x, 1, frozenset()))
            for k, x in sorted(attrs.items())
        ),
    )
