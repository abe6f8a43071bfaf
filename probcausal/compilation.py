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

Compiled programs are kept in memory (:func:`compiled`, the least recently used
dropped beyond :data:`CACHE_SIZE`) and, through JAX's persistent compilation
cache, on disk: :func:`use_persistent_cache` runs when probcausal is imported, so
a query's first call in a new process skips XLA's compilation when the same
program was compiled before. The cache lives in ``$XDG_CACHE_HOME/probcausal/jax``
(``~/.cache/probcausal/jax``); ``PROBCAUSAL_CACHE_DIR`` moves it, and
``PROBCAUSAL_CACHE_DIR=off`` (or empty) disables it. A cache JAX was already
given (``JAX_COMPILATION_CACHE_DIR`` or ``jax.config``) is left as it is. Entries
are small (tens of kB) and keyed by the program, the JAX version and the device;
the folder is not pruned: delete it to reclaim the space.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import sys
import types
from collections import OrderedDict
from collections.abc import Callable

import jax
import numpy as np
from jax.experimental.compilation_cache import compilation_cache
from numpyro.primitives import Messenger

__all__ = [
    "CACHE_ENV",
    "MAX_DEPTH",
    "MAX_ITEMS",
    "compiled",
    "model_state",
    "persistent_cache_dir",
    "signature",
    "split_static",
    "use_persistent_cache",
]

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


def identity(obj) -> _Ident:
    """``obj`` as a key by identity (it holds ``obj``, so its id is not reused)."""
    return _Ident(obj)


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


def _function_state(fn, depth, seen, guards):
    code = getattr(fn, "__code__", None)
    if code is None:
        return _Ident(fn)
    guards.append((_ATTR, fn, "__code__", code))
    out = []
    g = fn.__globals__
    for name in _global_names(code):
        x = g.get(name, _MISSING)
        guards.append((_ITEM, g, name, x))
        if x is not _MISSING:
            out.append((name, _state(x, depth + 1, seen, guards)))
    for cell in fn.__closure__ or ():
        try:
            x = cell.cell_contents
        except ValueError:  # an empty cell
            guards.append((_CELL, cell, _MISSING))
            out.append(None)
        else:
            guards.append((_CELL, cell, x))
            out.append(_state(x, depth + 1, seen, guards))
    defaults = fn.__defaults__
    guards.append((_ATTR, fn, "__defaults__", defaults))
    if defaults:
        out.append(_state(defaults, depth + 1, seen, guards))
    return tuple(out)


# exact types answered before the general checks below (which give the same
# answer for them): a model's state is computed on every query
_ATOMS = frozenset({type(None), bool, int, float, complex, str, bytes})
_ARRAYS: set = set()  # the concrete jax.Array types met so far


def _state(v, depth, seen, guards):
    """The state of ``v``; appends to ``guards`` the reads it depends on (see
    :func:`model_state`), or :data:`_UNGUARDED` when it read mutable content."""
    t = type(v)
    if t in _ATOMS:
        return v
    if t is types.ModuleType or t is type:
        return None  # code, not state
    if t in _ARRAYS:
        return _Ident(v)
    if v is None or isinstance(v, bool | int | float | complex | str | bytes):
        return v
    if isinstance(v, types.ModuleType | type) or (
        isinstance(v, types.FunctionType | types.BuiltinFunctionType)
        and _is_library(v)
        and not getattr(v, "__closure__", None)  # a library's closure holds state
    ):
        return None  # code, not state
    if isinstance(v, jax.Array):
        _ARRAYS.add(t)
        return _Ident(v)
    if isinstance(v, np.ndarray | np.generic):
        a = np.asarray(v)
        if a.dtype == object:
            return _Ident(v)
        guards.append(_UNGUARDED)  # mutable content
        return ("ndarray", a.shape, a.dtype.str, a.tobytes())
    if depth > MAX_DEPTH or id(v) in seen:
        return _Ident(v)
    seen = seen | {id(v)}
    if isinstance(v, types.FunctionType):
        return _function_state(v, depth, seen, guards)
    if isinstance(v, types.MethodType):
        return (
            _function_state(v.__func__, depth, seen, guards),
            _state(v.__self__, depth + 1, seen, guards),
        )
    if isinstance(v, functools.partial):
        return (
            _state(v.func, depth + 1, seen, guards),
            _state(v.args, depth + 1, seen, guards),
            _state(v.keywords, depth + 1, seen, guards),
        )
    if isinstance(v, dict):
        if len(v) > MAX_ITEMS:
            return _Ident(v)
        return _items_state(v, v, depth, seen, guards)
    if isinstance(v, list | tuple | set | frozenset):
        if len(v) > MAX_ITEMS:
            return _Ident(v)
        if isinstance(v, set):
            guards.append(_UNGUARDED)
            items = sorted(v, key=repr)
        elif isinstance(v, frozenset):
            items = sorted(v, key=repr)
        else:
            items = v
            if not isinstance(v, tuple):
                guards.append((_LEN, v, len(v)))
                guards.extend((_INDEX, v, i, x) for i, x in enumerate(v))
        return (type(v).__name__,) + tuple(_state(x, depth + 1, seen, guards) for x in items)
    if _is_library(t) and not hasattr(v, "__dict__"):
        return _Ident(v)
    attrs = getattr(v, "__dict__", None)
    if attrs is None:
        try:
            hash(v)
        except TypeError:
            return _Ident(v)
        return v
    guards.append((_ATTR, v, "__class__", t))
    kept = attrs
    if any(k[:2] == "__" for k in attrs):
        # not the names and docs that functools.wraps copies (nor the wrapped
        # function twice)
        kept = {k: x for k, x in attrs.items() if k[:2] != "__"}
    if isinstance(v, Messenger):
        kept = _settings(kept)
    if len(kept) > MAX_ITEMS:
        return _Ident(v)
    call = t.__call__ if callable(v) and not _is_library(t) else None
    call_state = None
    if isinstance(call, types.FunctionType):
        guards.append((_ATTR, t, "__call__", call))
        call_state = _function_state(call, depth, seen, guards)
    return (_Ident(t), _items_state(attrs, kept, depth + 1, seen, guards), call_state)


def _items_state(mapping, kept, depth, seen, guards):
    """The state of the items ``kept`` of ``mapping`` (all of them, or those a
    handler's settings or an object's attributes keep)."""
    guards.append((_LEN, mapping, len(mapping)))
    out = []
    for k, x in kept.items():
        guards.append((_ITEM, mapping, k, x))
        out.append((_state(k, depth + 1, seen, guards), _state(x, depth + 1, seen, guards)))
    return tuple(out)


# The reads a state depends on, checked before a remembered state is reused:
# (_ITEM, mapping, key, value): mapping.get(key) is value; (_LEN, container, n);
# (_ATTR, obj, name, value): getattr(obj, name) is value; (_CELL, cell, value);
# (_INDEX, list, i, value): list[i] is value. A state that read mutable content
# (a NumPy array, a set) is not remembered.
_ITEM, _LEN, _ATTR, _CELL, _INDEX = range(5)
_MISSING = object()
_UNGUARDED = (-1,)
_MEMO: OrderedDict = OrderedDict()  # id(model) -> (model, guards, state)
MEMO_SIZE = 256


def _holds(guards) -> bool:
    for g in guards:
        kind = g[0]
        if kind == _ITEM:
            if g[1].get(g[2], _MISSING) is not g[3]:
                return False
        elif kind == _ATTR:
            if getattr(g[1], g[2], _MISSING) is not g[3]:
                return False
        elif kind == _LEN:
            if len(g[1]) != g[2]:
                return False
        elif kind == _CELL:
            try:
                x = g[1].cell_contents
            except ValueError:
                x = _MISSING
            if x is not g[2]:
                return False
        elif len(g[1]) <= g[2] or g[1][g[2]] is not g[3]:
            return False
    return True


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

    The walk is remembered per model with the reads it made (which object each
    global name, closure cell, attribute, dict key and list index held): while
    every one of them still holds the same object, the remembered state is
    returned without walking again. A walk that met a NumPy array or a set
    (mutable content) is never remembered.
    """
    memo = _MEMO.get(id(model))
    if memo is not None and memo[0] is model and _holds(memo[1]):
        return memo[2]
    guards: list = []
    state = (_root(model, guards), _state(model, 0, frozenset(), guards))
    if _UNGUARDED not in guards:
        _MEMO[id(model)] = (model, tuple(guards), state)
        _MEMO.move_to_end(id(model))
        if len(_MEMO) > MEMO_SIZE:
            _MEMO.popitem(last=False)
    else:
        _MEMO.pop(id(model), None)
    return state


def _settings(attrs: dict) -> dict:
    """A handler's model and public settings (``do``'s actions, ``condition``'s
    data), not its per-call bookkeeping."""
    return {k: x for k, x in attrs.items() if not k.startswith("_") and k != "trace"}


def _root(model, guards):
    """The model by identity; a handler around it (``do``, ``condition``) by its type,
    its settings and the identity of what it wraps, so that handlers built alike
    around one model share their programs."""
    if not isinstance(model, Messenger):
        return _Ident(model)
    attrs = vars(model)
    guards.append((_ATTR, model, "__class__", type(model)))
    guards.append((_LEN, attrs, len(attrs)))
    out = []
    for k, x in sorted(_settings(attrs).items()):
        guards.append((_ITEM, attrs, k, x))
        out.append((k, _root(x, guards) if k == "fn" else _state(x, 1, frozenset(), guards)))
    return (_Ident(type(model)), tuple(out))


_CACHE: OrderedDict = OrderedDict()
CACHE_SIZE = 256  # programs kept (least recently used dropped)


_CONCRETE: set = set()  # the concrete (not traced) jax.Array types met so far


def concrete_array(x) -> bool:
    """Whether ``x`` is a JAX array holding values (not a tracer)."""
    t = type(x)
    if t in _CONCRETE:
        return True
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
        _CONCRETE.add(t)
        return True
    return False


def is_array(x) -> bool:
    return isinstance(x, jax.Array | np.ndarray | np.generic)


def split_static(tree, numbers_dynamic: bool):
    """Split a pytree into (dynamic leaves, static key, rebuild function).

    Arrays are dynamic; Python numbers are dynamic only when ``numbers_dynamic``
    (action values and evidence), static otherwise (model arguments such as plate
    sizes); other leaves (callables, strings, ``WorldValue``) are static.
    """
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    dynamic, static = [], []
    for leaf in leaves:
        if is_array(leaf) or (
            numbers_dynamic and isinstance(leaf, int | float) and not isinstance(leaf, bool)
        ):
            # Arrays and numbers go to the jitted call as they are (numbers stay
            # weakly typed); its C++ fast path moves host values, cheaper than a
            # dispatch per leaf here.
            if isinstance(leaf, int | float):
                dynamic.append(leaf)
                static.append(("<dyn>", (), type(leaf).__name__))
                continue
            arr = leaf if isinstance(leaf, jax.Array) else np.asarray(leaf)
            dynamic.append(arr)
            static.append(("<dyn>", arr.shape, arr.dtype))  # dtypes hash; str() is slow
        else:
            dynamic.append(None)
            static.append(leaf)
    dyn = [d for d in dynamic if d is not None]
    slots = [i for i, d in enumerate(dynamic) if d is not None]

    def rebuild(values):
        out = list(static)
        for i, v in zip(slots, values, strict=True):
            out[i] = v
        return jax.tree_util.tree_unflatten(treedef, out)

    return dyn, (treedef, tuple(static)), rebuild


def signature(tree) -> tuple:
    """A hashable description of a pytree of arrays: structure, shapes and dtypes."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple(
        (x.shape, x.dtype) if isinstance(x, jax.Array | np.ndarray) else (np.shape(x), type(x))
        for x in leaves
    )


@contextlib.contextmanager
def gc_paused():
    """Python's cyclic garbage collector paused while a program is traced and
    compiled: tracing allocates many short-lived objects, and each full collection
    it triggers walks the hundreds of thousands that importing JAX and NumPyro left
    (a third of a small query's first call). Reference counting still frees what
    it can; the cycles are collected once the collector runs again."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def compiled(key, build: Callable[[], Callable], jit: bool = True) -> Callable:
    """The cached program for ``key``, built and jitted on a miss (``jit=False``:
    ``build`` returns a function that calls jitted programs itself)."""
    wrap = jax.jit if jit else (lambda fn: fn)
    try:
        fn = _CACHE[key]
        _CACHE.move_to_end(key)
        return fn
    except KeyError:
        pass
    except TypeError:  # an unhashable static leaf: compile without caching
        return wrap(build())
    fn = wrap(build())
    _CACHE[key] = fn
    if len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return fn


CACHE_ENV = "PROBCAUSAL_CACHE_DIR"
_CACHE_OFF = ("", "0", "off", "false", "no", "none")


def persistent_cache_dir() -> str | None:
    """Where :func:`use_persistent_cache` puts the compiled programs: the
    ``PROBCAUSAL_CACHE_DIR`` environment variable, else
    ``$XDG_CACHE_HOME/probcausal/jax``; ``None`` when the variable disables it."""
    if CACHE_ENV in os.environ:
        path = os.environ[CACHE_ENV].strip()
        return None if path.lower() in _CACHE_OFF else os.path.expanduser(path)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "probcausal", "jax")


def use_persistent_cache(path: str | None = None) -> str | None:
    """Turn on JAX's persistent compilation cache in ``path`` (default
    :func:`persistent_cache_dir`) for every program, small ones included; returns
    the folder in use, or ``None`` when the cache is off, JAX was already given a
    cache folder (left as it is), or the folder cannot be written."""
    if jax.config.jax_compilation_cache_dir is not None:
        return None  # the user's own cache, with their own thresholds
    path = path if path is not None else persistent_cache_dir()
    if path is None:
        return None
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:  # a read-only home: run without the cache
        return None
    if not os.access(path, os.W_OK):
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    # a program compiled before this (JAX used before probcausal was imported)
    # initialised the cache as absent; start it again with the folder
    compilation_cache.reset_cache()
    return path
