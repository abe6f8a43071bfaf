"""Compiled query programs, validation, and the cache that keeps them.

A query is one XLA program per (model, evidence structure, actions structure,
shapes, static arguments): the first call traces and compiles it, later calls with
the same structure reuse it. Array leaves (evidence, action values, array model
arguments) are program inputs; everything else (Python numbers in model
arguments, callables in actions) is static and part of the cache key.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.handlers import condition, seed, substitute, trace
from numpyro.primitives import Messenger

from probcausal.errors import EvidenceShapeError, UnknownSiteError
from probcausal.handlers import MultiWorld, do
from probcausal.infer.abduction import SiteInfo, model_info

__all__ = ["compiled", "info_for", "signature", "split_static", "validate"]

_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 256


def _is_array(x) -> bool:
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
        if _is_array(leaf) or (
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
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return fn


_INFO: OrderedDict = OrderedDict()


def info_for(model, args, kwargs, split=None) -> dict[str, SiteInfo]:
    """Cached :func:`~probcausal.infer.model_info` of ``model(*args, **kwargs)``
    (``split``: the caller's ``split_static`` of ``(args, kwargs)``, if it has one)."""
    if split is None:
        split = split_static((tuple(args), dict(kwargs)), numbers_dynamic=False)
    dyn, static_key, _ = split
    key = (model, static_key, tuple((d.shape, d.dtype) for d in dyn))
    try:
        if key in _INFO:
            return _INFO[key]
    except TypeError:
        return model_info(model, args, kwargs)
    info = model_info(model, args, kwargs)
    _INFO[key] = info
    if len(_INFO) > _CACHE_SIZE:
        _INFO.popitem(last=False)
    return info


def validate(info: Mapping[str, SiteInfo], evidence: Mapping, actions: Sequence[Mapping]):
    """Eager checks of site names and evidence shapes against the model's sites.

    NaN/inf evidence is checked by the queries themselves: fused into the compiled
    program, which reads the evidence anyway, or eagerly before an inference engine.
    """
    unknown = set(evidence) - set(info)
    if unknown:
        raise UnknownSiteError("evidence", unknown, info)
    for a in actions:
        unknown = set(a) - set(info)
        if unknown:
            raise UnknownSiteError("intervention", unknown, info)
    out = {}
    for name, value in evidence.items():
        value = value if isinstance(value, jax.Array) else jnp.asarray(value)
        shape = info[name].shape
        try:
            ok = value.shape == shape or np.broadcast_shapes(value.shape, shape) == shape
        except ValueError:
            ok = False
        if not ok:
            raise EvidenceShapeError(name, value.shape, shape)
        out[name] = value
    return out


def world_stack(value, info: SiteInfo, world_dim: int, num_worlds: int):
    """A site's value as ``(num_worlds, *site_shape)``."""
    axis = world_dim - info.event_dim
    value = jnp.asarray(value)
    shape = info.shape
    has_world = value.ndim >= -axis and value.shape[axis] != 1
    out = []
    for w in range(num_worlds):
        v = jnp.take(value, w, axis=axis) if has_world else value
        v = jnp.broadcast_to(v, jnp.broadcast_shapes(v.shape, shape))
        out.append(v.reshape(shape))
    return jnp.stack(out)


class _CountKeys(Messenger):
    """Count the PRNG keys the model asks of the enclosing ``seed``."""

    def __init__(self, fn, counter: list):
        self.counter = counter
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "prng_key":
            self.counter.append(1)


def world_program(
    model, info, world_dim, args_rebuild, actions_rebuild, num_actions, key_counter=None
):
    """``(key, evidence, latents, action_leaves, arg_leaves, noise) -> (values, noise)``.

    ``values[name]`` is ``(num_actions + 1, *shape)``: world 0 factual. ``noise``
    (site -> exogenous noise, or None) replaces the noise those sites would draw.
    With ``key_counter`` (a list), every PRNG key the run consumes is counted in it.
    """

    def one(key, evidence, latents, action_leaves, arg_leaves, noise=None):
        args, kwargs = args_rebuild(arg_leaves)
        action_list = actions_rebuild(action_leaves)

        def run():
            with contextlib.ExitStack() as stack:
                stack.enter_context(MultiWorld(world_dim=world_dim, noise=noise))
                for actions in action_list:
                    stack.enter_context(do(actions=actions))
                inner = condition(substitute(model, latents), evidence)
                if key_counter is not None:
                    inner = _CountKeys(inner, key_counter)
                return inner(*args, **kwargs)

        tr = trace(seed(run, key)).get_trace()
        values = {n: world_stack(tr[n]["value"], info[n], world_dim, num_actions + 1) for n in info}
        noise = {n: tr[n]["infer"]["noise"] for n in info}
        return values, noise

    return one


def plain_program(model, args_rebuild, actions_rebuild):
    """``(key, action_leaves, arg_leaves) -> values`` of ``do(model, actions)``."""

    def one(key, action_leaves, arg_leaves):
        args, kwargs = args_rebuild(arg_leaves)
        actions = actions_rebuild(action_leaves)
        tr = trace(seed(do(model, actions), key)).get_trace(*args, **kwargs)
        return {
            n: s["value"]
            for n, s in tr.items()
            if s["type"] in ("sample", "deterministic") and not s["infer"].get("is_auxiliary")
        }

    return one
