"""Compiled query programs, validation, and the cache that keeps them.

A query is one XLA program per (model, evidence structure, actions structure,
shapes, static arguments): the first call traces and compiles it, later calls with
the same structure reuse it. Array leaves (evidence, action values, array model
arguments) are program inputs; everything else (Python numbers in model
arguments, callables in actions) is static and part of the cache key.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.handlers import condition, seed, substitute, trace
from numpyro.primitives import Messenger

from probcausal import mechanisms
from probcausal.compilation import is_array
from probcausal.errors import (
    DeterministicEvidenceError,
    EvidenceShapeError,
    ImpossibleEvidenceError,
    OutOfSupportError,
    SeedRequiredError,
    UnknownSiteError,
)
from probcausal.handlers import do
from probcausal.handlers.axis import world_stack
from probcausal.handlers.do import WorldValue, broadcast_action, reads_value
from probcausal.handlers.scan import reach_into_scan, replayed, step_action
from probcausal.handlers.stack import isolated
from probcausal.sites import SiteInfo

__all__ = ["validate", "world_program", "plain_program"]


def action_dicts(actions) -> tuple[list[dict], bool]:
    """``(list of action dicts, single)`` from a dict or a list of dicts."""
    if isinstance(actions, Mapping):
        return [dict(actions)], True
    if isinstance(actions, Sequence) and not isinstance(actions, str) and actions:
        if all(isinstance(a, Mapping) for a in actions):
            return [dict(a) for a in actions], False
    raise TypeError(
        "`actions` must be a dict site -> action, or a non-empty list of such dicts "
        f"(one world each), got {type(actions).__name__}: {actions!r:.80}"
    )


def check_sampling(rng_key, num_samples) -> None:
    """Refuse a ``num_samples`` that is not a positive integer, and an ``rng_key``
    that is not a JAX PRNG key, naming the fix."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int | np.integer):
        raise TypeError(
            f"`num_samples` must be a positive int, got {type(num_samples).__name__} "
            f"{num_samples!r}"
        )
    if num_samples < 1:
        raise ValueError(f"`num_samples` must be a positive int, got {num_samples}")
    ok = isinstance(rng_key, jax.Array | np.ndarray) and (
        jax.dtypes.issubdtype(rng_key.dtype, jax.dtypes.prng_key)
        or (rng_key.shape == (2,) and rng_key.dtype == np.uint32)
    )
    if not ok:
        raise TypeError(
            f"`rng_key` must be a JAX PRNG key, got {type(rng_key).__name__} {rng_key!r:.40}; "
            "pass rng_key=jax.random.PRNGKey(0) (or jax.random.key(0))."
        )


def validate(info: Mapping[str, SiteInfo], evidence: Mapping, actions: Sequence[Mapping]):
    """Eager checks of site names, evidence shapes and discrete values against the
    model's sites; returns the evidence as arrays (integral values of a discrete
    site as integers).

    NaN/inf evidence is checked by the queries themselves: fused into the compiled
    program, which reads the evidence anyway, or eagerly before an inference engine.
    Evidence outside a support that depends on the model's parameters, and evidence
    of zero likelihood, are found by the program too (see :func:`raise_impossible`).
    """
    if not isinstance(evidence, Mapping):
        raise TypeError(
            f"`evidence` must be a dict site -> observed value, got {type(evidence).__name__}"
        )
    deterministic = getattr(info, "deterministic", {})
    for name in evidence:
        if name in deterministic:
            raise DeterministicEvidenceError(name, deterministic[name]["parents"])
    unknown = set(evidence) - set(info)
    if unknown:
        raise UnknownSiteError("evidence", unknown, info)
    for a in actions:  # dicts already (action_dicts)
        bad = set(a) & set(deterministic)
        if bad:
            raise UnknownSiteError(
                "intervention",
                bad,
                info,
                why=f"{sorted(bad)} are numpyro.deterministic sites: intervene on the "
                "sample sites they are computed from, or make them sample sites",
            )
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
        out[name] = discrete_value("evidence", info[name], value)
    return out


def validate_actions(info: Mapping[str, SiteInfo], actions: Sequence[Mapping]) -> list[dict]:
    """Actions with values on discrete sites checked against the site's support
    and cast to integers (``1.0`` on a Categorical is class 1)."""
    out = []
    for k, a in enumerate(actions, start=1):
        checked = {}
        for name, action in a.items():
            if isinstance(action, WorldValue):
                if not 0 <= action.world < k:
                    raise ValueError(
                        f"WorldValue({action.world}) on site '{name}' in world {k}: a world "
                        "may only take values from an earlier world (0 is factual)."
                    )
            elif is_array(action) or isinstance(action, int | float):
                action = discrete_value("intervention", info[name], action)
            checked[name] = action
        out.append(checked)
    return out


_INTEGER_CONSTRAINTS = {
    "_Boolean": "{0, 1}",
    "_IntegerNonnegative": "the integers 0, 1, 2, ...",
    "_IntegerPositive": "the integers 1, 2, 3, ...",
    "_IntegerInterval": None,  # described from the finite support
    "_IntegerGreaterThan": "the integers from a lower bound",
}


def _support_text(site: SiteInfo) -> str:
    if site.support is not None:
        values = [int(v) for v in site.support]
        if values == list(range(values[0], values[-1] + 1)) and len(values) > 4:
            return f"the integers {values[0]}, ..., {values[-1]}"
        return "{" + ", ".join(str(v) for v in values) + "}"
    return _INTEGER_CONSTRAINTS.get(site.constraint) or "the integers"


# (id of a JAX array, site facts) -> (weak reference, checked value): JAX arrays are
# immutable, so a discrete value is checked once, not on every query
_CHECKED: dict = {}


def discrete_value(kind: str, site: SiteInfo, value):
    """``value`` for the discrete ``site`` as integers, refused when it is not a
    value the site can take (checked when the value is concrete)."""
    if not site.discrete or site.constraint not in _INTEGER_CONSTRAINTS:
        return value
    if isinstance(value, jax.Array) and not isinstance(value, jax.core.Tracer):
        key = (id(value), kind, site.name, site.support, site.constraint)
        hit = _CHECKED.get(key)
        if hit is not None and hit[0]() is value:
            return value if hit[1] is None else hit[1]
        out = _discrete_value(kind, site, value)
        # the value itself is held weakly only (a strong reference would keep it alive)
        _CHECKED[key] = (
            weakref.ref(value, lambda _, key=key, d=_CHECKED: d.pop(key, None)),
            None if out is value else out,
        )
        return out
    if type(value) is int and _int_ok(site, value):  # the common action: a plain class
        return value
    return _discrete_value(kind, site, value)


def _int_ok(site: SiteInfo, value: int) -> bool:
    if site.support is not None:
        return value in site.support
    if site.constraint in ("_IntegerNonnegative", "_Boolean"):
        return value >= 0 and (site.constraint != "_Boolean" or value <= 1)
    if site.constraint == "_IntegerPositive":
        return value >= 1
    return False


def _discrete_value(kind: str, site: SiteInfo, value):
    if isinstance(value, jax.core.Tracer):
        return value.astype(jnp.int32) if jnp.issubdtype(value.dtype, jnp.floating) else value
    a = np.asarray(value)
    if a.dtype == bool:
        a = a.astype(np.int32)
    bad = None
    if not np.issubdtype(a.dtype, np.number):
        bad = a.ravel()[0] if a.size else a
    else:
        with np.errstate(invalid="ignore"):
            wrong = ~np.isfinite(a) | (a != np.round(a)) if a.dtype.kind == "f" else a != a
        if site.support is not None:
            wrong = wrong | ~np.isin(a, np.asarray(site.support))
        elif site.constraint in ("_IntegerNonnegative", "_Boolean"):
            wrong = wrong | (a < 0)
        elif site.constraint == "_IntegerPositive":
            wrong = wrong | (a < 1)
        if np.any(wrong):
            bad = a.ravel()[int(np.argmax(np.ravel(wrong)))]
    if bad is not None:
        if kind == "evidence" and isinstance(bad, float) and not np.isfinite(bad):
            return value  # NaN / inf: InvalidEvidenceError names it
        raise OutOfSupportError(kind, site.name, _py(bad), _support_text(site))
    if a.dtype.kind in "fb" or isinstance(value, bool):
        return jnp.asarray(a.astype(np.int32))
    return value


def _py(x):
    x = np.asarray(x)
    return x.item() if x.size == 1 else x


def describe_support(c) -> str:
    """A readable description of a NumPyro support constraint.

    >>> from numpyro.distributions import constraints
    >>> describe_support(constraints.interval(0.0, 1.0))
    'the interval [0, 1]'
    >>> describe_support(constraints.nonnegative_integer)
    'the integers 0, 1, 2, ...'
    """
    name = type(c).__name__
    if name in ("_IntegerInterval",):
        return f"the integers {_num(c.lower_bound)}, ..., {_num(c.upper_bound)}"
    if name in _INTEGER_CONSTRAINTS and _INTEGER_CONSTRAINTS[name]:
        return _INTEGER_CONSTRAINTS[name]
    if name in ("_Interval", "_OpenInterval", "_UnitInterval"):
        return f"the interval [{_num(c.lower_bound)}, {_num(c.upper_bound)}]"
    if name in ("_Positive", "_GreaterThan", "_GreaterThanEq"):
        return f"the values above {_num(c.lower_bound)}"
    if name in ("_LessThan",):
        return f"the values below {_num(c.upper_bound)}"
    if name == "_Real":
        return "the real numbers"
    if name == "_Simplex":
        return "the probability simplex (non-negative, summing to 1)"
    return name.strip("_")


def _num(x) -> str:
    a = np.asarray(x)
    if a.size == 1:
        return f"{a.item():g}"
    return "per-element bounds"


def raise_impossible(model, info, evidence, latents, possible, args, kwargs):
    """Raise :class:`~probcausal.errors.ImpossibleEvidenceError` for the first
    evidence site flagged impossible, naming the value and why (from one eager run
    of the factual world with the first posterior draw)."""

    site = next(n for n in info if possible.get(n) is False)
    first = {n: jnp.asarray(v)[0] for n, v in (latents or {}).items()}
    with isolated():
        tr = trace(seed(substitute(condition(model, evidence), first), 0)).get_trace(
            *args, **kwargs
        )
    fn, x = tr[site]["fn"], jnp.asarray(tr[site]["value"])
    shape = jnp.broadcast_shapes(x.shape, tuple(fn.shape()))
    xs = jnp.broadcast_to(x, shape)
    inside = np.asarray(fn.support(xs)) if fn.support is not None else np.ones((), bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        lp = np.asarray(fn.log_prob(xs))
    leaf = mechanisms.unwrapped(fn)
    family = type(leaf).__name__
    extra = None
    if not isinstance(leaf, dist.TransformedDistribution):
        extra = mechanisms.mechanism_for(leaf, site).possible(leaf, xs)
    if extra is not None:
        lp = np.where(np.broadcast_to(np.asarray(extra), lp.shape), lp, -np.inf)
    if not inside.all():
        bad = ~inside
        reason = f"lies outside the support of {family}, {describe_support(fn.support)}"
    else:
        bad = ~(lp > -np.inf)
        reason = (
            f"has probability zero under the site's {family} distribution "
            "(its log density is -inf there)"
        )
    idx = np.unravel_index(int(np.argmax(bad.ravel())), bad.shape) if bad.ndim else ()
    value = np.asarray(xs)[idx]
    index = tuple(int(i) for i in idx) if np.size(xs) > 1 else None
    raise ImpossibleEvidenceError(site, _py(value), reason, index)


class _CountKeys(Messenger):
    """Count the PRNG keys the model asks of the enclosing ``seed``."""

    def __init__(self, fn, counter: list):
        self.counter = counter
        super().__init__(fn)

    def process_message(self, msg):
        # a scan seeds its body with a key of its own, which it may or may not use
        if msg["type"] in ("prng_key", "control_flow"):
            self.counter.append(1)


def _key(site: str):
    key = numpyro.prng_key()
    if key is None:  # pragma: no cover - the query programs always seed
        raise SeedRequiredError(site, "draw or abduct its exogenous noise")
    return key


def _is_value_site(msg) -> bool:
    return msg["type"] == "sample" and not msg["infer"].get("is_auxiliary")


class _Factual(Messenger):
    """World 0: each sample site's noise, abducted from its known value (evidence,
    ``obs=``, a posterior draw) or drawn from the base distribution (``noise``
    overrides both); the value is the known one or ``apply(theta, u)``.

    ``checks`` collects, per site whose value is evidence, whether the value lies
    in the site's support with a finite log density there.
    """

    def __init__(self, fn, noise, checks: dict, step=None, unread=frozenset()):
        self.noise = noise or {}
        self.checks = checks
        self.unread = unread  # sites whose noise no world reads: not abducted
        self.at = step  # (i, length) at step i of a scan body
        self.record: dict = {"noise": {}, "checks": checks}
        self._scanned: dict = {}
        super().__init__(fn)

    def step(self, i, length):
        return _Factual(None, self.noise, {}, (i, length), self.unread)

    def scanned(self, record):
        self._scanned.update(record["noise"])
        self.checks.update(record["checks"])

    def process_message(self, msg):
        reach_into_scan(self, msg)
        if not _is_value_site(msg):
            return
        name, fn, x = msg["name"], msg["fn"], msg["value"]
        if replayed(msg):  # its noise came out of the loop
            msg["infer"] = {**msg["infer"], "noise": self._scanned[name]}
            return
        if name in self.noise:
            u = jnp.asarray(self.noise[name])
            if self.at is not None:
                u = u[self.at[0]]
        elif x is not None and name in self.unread:
            mechanisms.is_exact(fn, name)  # a family without a mechanism is still named
            u = None
        elif x is not None:
            key = None if mechanisms.is_exact(fn, name) else _key(name)
            u = mechanisms.abduct(key, fn, x, name)
        else:
            u = mechanisms.sample_noise(_key(name), fn, None, name)
        if x is None:
            x = mechanisms.apply(fn, u, name)
        elif (
            msg["is_observed"]
            and not msg["infer"].get("intervened")
            and not _full_support(fn, name)
        ):
            self.checks[name] = mechanisms.possible(fn, x, name)
        msg["value"] = x
        if self.at is None:
            msg["infer"] = {**msg["infer"], "noise": u}
        else:  # a scan body's site infos are static: the noise leaves through the loop
            self.record["noise"][name] = u


def _full_support(fn, name) -> bool:
    """A continuous family whose density is positive on every real value (Normal,
    Laplace, MultivariateNormal, ...): finite evidence is always possible, so there
    is nothing to check (the NaN/inf check covers the rest)."""
    c = fn.support
    while type(c).__name__ == "_IndependentConstraint":
        c = c.base_constraint
    return type(c).__name__ in ("_Real", "_RealVector") and not fn.is_discrete


class _Counterfactual(Messenger):
    """World ``k >= 1``: every sample site recomputed from the factual world's noise
    under this world's actions. A site neither acted on nor downstream of an action
    keeps its factual value exactly; deterministic sites are the model's own code."""

    def __init__(self, fn, worlds: list, actions: Mapping, downstream: frozenset, step=None):
        self.worlds = worlds  # traces of the earlier worlds, 0 factual
        self.actions = actions
        self.downstream = downstream
        self.at = step  # (i, length) at step i of a scan body
        super().__init__(fn)

    def step(self, i, length):
        return _Counterfactual(None, self.worlds, self.actions, self.downstream, (i, length))

    def process_message(self, msg):
        reach_into_scan(self, msg)
        if not _is_value_site(msg) or replayed(msg):
            return
        name, fn = msg["name"], msg["fn"]
        at = (lambda v: v) if self.at is None else (lambda v: jnp.asarray(v)[self.at[0]])
        factual = at(self.worlds[0][name]["value"])

        def natural():
            # a scanned site acted on at some steps depends on itself at the others
            if name not in self.downstream and not (self.at and name in self.actions):
                return factual
            return mechanisms.apply(fn, at(self.worlds[0][name]["infer"]["noise"]), name)

        if name in self.actions:
            a = self.actions[name]
            site_shape = tuple(jnp.shape(factual))
            if isinstance(a, WorldValue):
                value = at(self.worlds[a.world][name]["value"])
            elif isinstance(a, dist.Distribution):
                batch = jnp.broadcast_shapes(a.batch_shape, tuple(fn.batch_shape))
                value = a.expand(batch).sample(_key(name))
            elif callable(a):
                value = a(natural())
            else:
                if self.at is not None:
                    a = step_action(a, self.at[0], self.at[1], site_shape, natural)
                value = broadcast_action(msg, a, site_shape, _ACTION_HINT)
        else:
            value = natural()
        msg["value"] = value
        msg["is_observed"] = True  # a value is set: no key is drawn for it


_ACTION_HINT = (
    "In a query an action must fit the site's shape; for several interventions pass "
    "a list of action dicts (one world each)."
)


def downstream_of(info: Mapping[str, SiteInfo], acted) -> frozenset:
    """Sample sites with an ancestor among ``acted`` (the sites whose value can
    change when those are intervened on)."""
    children: dict[str, set] = {n: set() for n in info}
    for n, s in info.items():
        for p in s.parents:
            if p in children:
                children[p].add(n)
    out: set[str] = set()
    todo = [c for a in acted if a in children for c in children[a]]
    while todo:
        n = todo.pop()
        if n not in out:
            out.add(n)
            todo.extend(children[n])
    return frozenset(out)


def noise_unread(info: Mapping[str, SiteInfo], action_list) -> frozenset:
    """Sample sites whose noise no counterfactual world reads: in each world the
    site is set by a value (not a function of its own value, nor a per-step action
    that keeps the natural value at other steps) or is not downstream of that
    world's actions. Their known values need no abduction."""
    read: set = set()
    for actions in action_list:
        down = downstream_of(info, actions)
        for n in info:
            if n in actions:
                if reads_value(actions[n]) or isinstance(actions[n], Mapping):
                    read.add(n)
            elif n in down:
                read.add(n)
    return frozenset(info) - read


def world_program(
    model, info, args_rebuild, actions_rebuild, num_actions, key_counter=None, unread=frozenset()
):
    """``(key, evidence, latents, action_leaves, arg_leaves, noise) -> (values, noise,
    checks)``.

    World 0 is the model under the evidence and the latent draw, each site's noise
    abducted or drawn; world k >= 1 re-runs the model on that noise under the k-th
    action dict. Each world is a plain run of the model, so model code sees
    exactly the shapes it would see without worlds (no broadcasting discipline).
    ``values[name]`` is ``(num_actions + 1, *shape)`` for every sample and
    deterministic site; ``noise`` (site -> exogenous noise, or None) replaces the
    noise those sites would draw; ``checks[name]`` says whether the evidence for
    ``name`` is possible. With ``key_counter`` (a list), every PRNG key the run
    consumes is counted in it. The noise of the ``unread`` sites (see
    :func:`noise_unread`) with known values is not abducted (``None``).
    """
    deterministic = getattr(info, "deterministic", {})

    def one(key, evidence, latents, action_leaves, arg_leaves, noise=None):
        args, kwargs = args_rebuild(arg_leaves)
        action_list = actions_rebuild(action_leaves)
        checks: dict = {}

        def run():
            worlds = []
            inner = condition(substitute(model, latents), evidence)
            if key_counter is not None:
                inner = _CountKeys(inner, key_counter)
            worlds.append(
                trace(_Factual(inner, noise, checks, unread=unread)).get_trace(*args, **kwargs)
            )
            for actions in action_list:
                down = downstream_of(info, actions)
                fn = _Counterfactual(model, worlds, actions, down)
                if key_counter is not None:
                    fn = _CountKeys(fn, key_counter)
                worlds.append(trace(fn).get_trace(*args, **kwargs))
            return worlds

        worlds = seed(run, key)()
        values = {n: world_stack([w[n]["value"] for w in worlds], info[n].shape) for n in info}
        for n in deterministic:
            values[n] = world_stack([w[n]["value"] for w in worlds])
        noise_out = {n: worlds[0][n]["infer"]["noise"] for n in info}
        return values, noise_out, checks

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
            if s["type"] == "deterministic"
            or (s["type"] == "sample" and not s["infer"].get("is_auxiliary"))
        }

    return one
