"""Prepared queries, remembered: a query asked again on the same JAX arrays skips
its validation, checks and planning.

Validating a query (site names, shapes, supports, NaN), choosing its engine and
planning its program are pure functions of the model's state
(:func:`~probcausal.compilation.model_state`), the evidence, the actions, the
model's arguments and the query's settings. JAX arrays are immutable, so when
every evidence value and array argument is the same JAX array as before, every
action a Python number and every other argument a Python atom, the prepared query
of the first call is the prepared query of this one. Only queries whose evidence
fixes every latent (no posterior to draw) are remembered. An entry holds its
arrays, so that their identity cannot be reused: the most recent entries are
kept, at most :data:`SIZE` of them and :data:`MAX_BYTES` of arrays together (a
query on more is not remembered).
Anything else (NumPy or Python evidence, which may change in place; traced
values; arrays or functions as actions; engine options) is prepared afresh on
every call.
"""

from __future__ import annotations

from collections import OrderedDict

from probcausal.compilation import concrete_array, identity, model_state

SIZE = 128
MAX_BYTES = 1 << 25  # 32 MiB
_ENTRIES: OrderedDict = OrderedDict()  # key -> (prepared query, bytes held)
_HELD = [0]  # bytes held by the entries
_ATOMS = (int, float, bool, str, type(None))


def key_of(model, evidence, actions, query, extra=()) -> tuple | None:
    """The key under which this query's preparation is remembered; ``None`` when
    it cannot be remembered."""
    if query.engine_kwargs or type(evidence) is not dict:
        return None
    ev = tuple(identity(v) if concrete_array(v) else None for v in evidence.values())
    if None in ev:
        return None
    acts = _actions_key(actions)
    args = _arguments_key(query.model_args, query.model_kwargs)
    if acts is None or args is None:
        return None
    ev = tuple(zip(evidence, ev, strict=True))
    state = model_state(model)
    return (state, ev, acts, args, query.num_samples, query.method, extra)


def _actions_key(actions):
    dicts = [actions] if type(actions) is dict else actions
    if type(dicts) is not list or not dicts:
        return None
    out = []
    for a in dicts:
        if type(a) is not dict:
            return None
        for name, v in a.items():
            if type(v) not in (int, float, bool):
                return None
            out.append((name, type(v), v))
        out.append(None)  # the end of one world's actions
    return (type(actions) is dict, tuple(out))


def _arguments_key(args, kwargs):
    out = []
    for name, v in (*enumerate(args), *(kwargs or {}).items()):
        if type(v) in _ATOMS:
            out.append((name, type(v), v))
        elif concrete_array(v):
            out.append((name, identity(v)))
        else:
            return None
    return tuple(out)


def _held(key) -> int:
    """Bytes of the arrays a key holds (its evidence and array arguments)."""
    evidence, arguments = key[1], key[3]
    arrays = [a for _, a in evidence] + [x[1] for x in arguments if len(x) == 2]
    return sum(a.obj.nbytes for a in arrays)


def recall(key):
    """The prepared query remembered under ``key``, or ``None``."""
    if key is None:
        return None
    try:
        entry = _ENTRIES.get(key)
    except TypeError:  # an unhashable summary
        return None
    if entry is None:
        return None
    _ENTRIES.move_to_end(key)
    return entry[0]


def remember(key, prepared) -> None:
    """Remember ``prepared`` under ``key`` (from :func:`key_of`)."""
    if key is None:
        return
    try:
        old = _ENTRIES.pop(key, None)
    except TypeError:  # an unhashable summary
        return
    if old is not None:
        _HELD[0] -= old[1]
    held = _held(key)
    if held > MAX_BYTES:
        return
    _ENTRIES[key] = (prepared, held)
    _HELD[0] += held
    while len(_ENTRIES) > SIZE or _HELD[0] > MAX_BYTES:
        _HELD[0] -= _ENTRIES.popitem(last=False)[1][1]
