"""Discrete latents, exactly: variable elimination of our own (a min-fill order,
forward-filter backward-sample, one compiled program), a joint table for a few
latents in plates, NumPyro's funsor contraction beyond; unbounded discrete
latents by a truncation checked against the posterior."""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.handlers import condition, seed, substitute, trace
from numpyro.primitives import Messenger

from probcausal import mechanisms
from probcausal.compilation import compiled, model_state, signature, split_static
from probcausal.errors import (
    AbductionError,
    ImpossibleEvidenceError,
)
from probcausal.handlers.stack import isolated
from probcausal.infer.abduction._base import (
    Engine,
    _Freeze,
    _frozen,
    _inference_model,
)
from probcausal.infer.elimination import Factor, eliminate, elimination_order, sample_eliminated
from probcausal.sites import ModelSites

_MAX_TABLE = 1 << 12  # joint configurations per unit for the table; beyond: elimination


class _Unplated(Exception):
    """The enumerated trace is not a set of scalar latents (plates, event dims)."""


class _Enumerate(Messenger):
    """Parallel enumeration of the scalar discrete sites ``names``: each one's value
    is the column of its states along a dimension of its own, left of ``depth``
    batch dimensions (NumPyro's funsor ``enum`` allocates at most 25 such
    dimensions; a network query may need more)."""

    def __init__(self, fn, names, depth):
        self.names, self.depth = frozenset(names), depth
        super().__init__(fn)

    def __enter__(self):
        self.next = -1 - self.depth
        return super().__enter__()

    def process_message(self, msg):
        if msg["type"] != "sample" or msg["name"] not in self.names or msg["is_observed"]:
            return
        fn, batch = msg["fn"], tuple(msg["fn"].batch_shape)
        # scalar: a batch shape of enumerated dimensions only
        if (
            fn.event_shape
            or len(batch) >= -self.next
            or any(d != 1 for d in batch[max(0, len(batch) - self.depth) :])
        ):
            raise _Unplated(msg["name"])
        states = jnp.reshape(fn.enumerate_support(expand=False), (-1,))
        msg["value"] = jnp.reshape(states, states.shape + (1,) * (-self.next - 1))
        self.next -= 1


def _enumerated_trace(model, ev, frozen, latents, depth, args, kwargs):
    """A trace of ``model`` given ``ev``, the sites in ``frozen`` fixed and the
    scalar discrete ``latents`` enumerated (:class:`_Enumerate`)."""
    enumerated = _Enumerate(_Freeze(condition(model, ev), frozen), latents, depth)
    return trace(seed(enumerated, 0)).get_trace(*args, **kwargs)


def _log_prob(site, enumerated: bool) -> jax.Array:
    """A site's log probability; for a Categorical, the log of its probabilities
    indexed directly (its general ``log_prob`` broadcasts the value against the
    probabilities and gathers, a program several times larger at high rank)."""
    fn, value = site["fn"], site["value"]
    if type(fn) in (dist.CategoricalProbs, dist.CategoricalLogits):
        logits = jnp.log(fn.probs) if isinstance(fn, dist.CategoricalProbs) else fn.logits
        if isinstance(fn, dist.CategoricalLogits):
            logits = logits - jax.nn.logsumexp(logits, axis=-1, keepdims=True)
        if enumerated:  # the class axis becomes the site's own enumeration dim
            rank = jnp.ndim(value)
            logits = jnp.reshape(logits, (1,) * (rank - logits.ndim) + logits.shape)
            return jnp.moveaxis(logits, -1, 0)
        if jnp.ndim(value) == 0:
            return jnp.take(logits, value, axis=-1)
    return fn.log_prob(value)


def _factors(tr, latents, frozen, depth, skip=()):
    """The log-probability tables of an enumerated trace, with their scopes."""

    dim_var, cards, states = {}, {}, {}
    for n in latents:
        value = jnp.asarray(tr[n]["value"])
        if value.ndim <= depth or value.size != value.shape[0]:
            raise _Unplated(n)
        dim_var[-value.ndim] = n
        cards[n], states[n] = int(value.shape[0]), value.reshape(-1)
    factors = []
    for name, site in tr.items():
        if site["type"] != "sample" or name in frozen or name in skip:
            continue
        lp = _log_prob(site, dim_var.get(-jnp.ndim(site["value"])) == name)
        if site.get("scale") is not None:
            lp = lp * site["scale"]
        lp = jnp.reshape(lp, (1,) * max(0, depth - jnp.ndim(lp)) + jnp.shape(lp))
        if depth:  # batch elements independent given the (scalar) latents
            lp = jnp.sum(lp, axis=tuple(range(-depth, 0)), keepdims=True)
        axes = [i for i, d in enumerate(lp.shape) if d > 1]
        scope = []
        for i in axes:
            var = dim_var.get(i - lp.ndim)
            if var is None:
                raise _Unplated(name)
            scope.append(var)
        factors.append(Factor(tuple(scope), jnp.reshape(lp, [lp.shape[i] for i in axes])))
    return factors, cards, states


def _eliminate(model, info, evidence, latents, key, num_samples, args, kwargs, given=None):
    """Exact posterior draws of scalar discrete latents by variable elimination in a
    min-fill order (:mod:`probcausal.infer.elimination`), one compiled program; or
    ``None`` when the enumerated model is not a set of scalar latents.

    ``given``: draws of other (continuous) latents, ``(num_samples, *shape)`` per
    site: then one draw of ``latents`` per draw of them, given it.
    """

    given = dict(given or {})
    depth = max((len(s.batch_shape) for s in info.values()), default=0)
    others = tuple(
        n
        for n, s in info.items()
        if not s.observed and n not in evidence and n not in latents and n not in given
    )
    arg_dyn, arg_key, arg_rebuild = split_static((tuple(args), dict(kwargs)), False)

    def build():
        def run(key, ev, arg_leaves):
            a, kw = arg_rebuild(arg_leaves)
            k_frozen, k_draw = jax.random.split(key)
            frozen = {}
            if others:  # a prior draw of the latents that do not touch the evidence
                prior = trace(seed(condition(model, ev), k_frozen)).get_trace(*a, **kw)
                frozen = {n: prior[n]["value"] for n in others}
            tr = _enumerated_trace(model, ev, frozen, latents, depth, a, kw)
            factors, cards, states = _factors(tr, latents, frozen, depth)
            order = elimination_order([f.scope for f in factors], cards)
            log_z, kept = eliminate(factors, cards, order)
            draws = sample_eliminated(k_draw, kept, order, 1 if given else num_samples)
            return log_z, {n: jnp.take(states[n], draws[n]).astype(jnp.int32) for n in latents}

        if not given:
            return run

        def per_draw(key, ev, draws, arg_leaves):
            keys = jax.random.split(key, num_samples)
            log_z, out = jax.vmap(lambda k, d: run(k, {**ev, **d}, arg_leaves))(keys, draws)
            return jnp.min(log_z), {n: v[:, 0] for n, v in out.items()}

        return per_draw

    program = compiled(
        (
            "eliminate",
            model_state(model),
            tuple(latents),
            num_samples,
            arg_key,
            signature((dict(evidence), given, arg_dyn)),
        ),
        build,
    )
    try:
        with isolated():
            inputs = (key, dict(evidence)) + ((given,) if given else ()) + (arg_dyn,)
            log_z, samples = program(*inputs)
    except _Unplated:
        return None
    except MemoryError as e:
        raise AbductionError(
            f"exact abduction of the {len(latents)} discrete latent sites {latents}: {e}, "
            "too large for memory. Observe some of them, or use method='gibbs'."
        ) from e
    if not bool(log_z > -jnp.inf):
        raise ImpossibleEvidenceError(
            ", ".join(sorted(evidence)) or "(obs= sites)",
            {n: np.asarray(v).tolist() for n, v in evidence.items()},
            f"has probability zero under every configuration of the latent site(s) {latents}",
        )
    return samples


def _variable_elimination(model, info, evidence, latents, key, num_samples, args, kwargs):
    """Exact posterior draws of discrete latents by variable elimination: NumPyro's
    parallel enumeration (funsor contraction) and forward-filter backward-sample
    (``infer_discrete``), so the cost grows with the treewidth, not with the number
    of joint configurations."""
    from numpyro.contrib.funsor import config_enumerate, infer_discrete

    depth = max((-d for s in info.values() for d in s.plate_dims), default=0)
    frozen = _frozen(model, info, evidence, latents, args, kwargs)
    arg_dyn, arg_key, arg_rebuild = split_static((tuple(args), dict(kwargs)), False)

    def build():
        def run(key, ev, frozen, arg_leaves):
            a, kw = arg_rebuild(arg_leaves)
            enum = config_enumerate(_Freeze(condition(model, ev), frozen))

            def one(k):
                tr = trace(
                    infer_discrete(enum, first_available_dim=-1 - depth, temperature=1, rng_key=k)
                ).get_trace(*a, **kw)
                return {n: jnp.asarray(tr[n]["value"], jnp.int32) for n in latents}

            return jax.vmap(one)(jax.random.split(key, num_samples))

        return run

    program = compiled(
        (
            "variable_elimination",
            model_state(model),
            tuple(latents),
            num_samples,
            arg_key,
            signature((dict(evidence), frozen, arg_dyn)),
        ),
        build,
    )
    try:
        with isolated():
            return jax.block_until_ready(program(key, dict(evidence), frozen, arg_dyn))
    except jax.errors.JaxRuntimeError as e:
        if "memory" not in str(e).lower():
            raise
        raise AbductionError(
            f"variable elimination over the {len(latents)} discrete latent sites {latents} "
            "ran out of memory (the contraction order found needs a table too large); "
            "observe some of them, or use method='gibbs'."
        ) from e


class _Truncate(Messenger):
    """Replace unbounded discrete sites by Categoricals over ``0..bound`` with the
    same probabilities (renormalized: the mass above the bound is negligible)."""

    def __init__(self, fn, bounds):
        self.bounds = bounds
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] != "sample" or msg["name"] not in self.bounds:
            return
        fn = msg["fn"]
        k = jnp.arange(self.bounds[msg["name"]] + 1)
        batch = tuple(fn.batch_shape)
        logp = fn.log_prob(k.reshape(k.shape + (1,) * len(batch)))
        msg["fn"] = dist.Categorical(logits=jnp.moveaxis(logp, 0, -1))


def _unbounded_bounds(model, info, evidence, latents, args, kwargs) -> dict[str, int]:
    """A truncation bound per unbounded discrete latent (Poisson, negative binomial,
    geometric, ...): the largest value its mechanism reaches from a float32 uniform,
    at 64 prior draws of its parents, doubled."""

    unbounded = [n for n in latents if info[n].support is None]
    if not unbounded:
        return {}
    inner = condition(model, evidence)

    def upper(k):
        tr = trace(seed(inner, k)).get_trace(*args, **kwargs)
        out = {}
        for n in unbounded:
            leaf = mechanisms.unwrapped(tr[n]["fn"])
            mech = mechanisms.mechanism_for(leaf, n)
            if not isinstance(mech, mechanisms.InverseCDF):
                raise AbductionError(
                    f"latent site '{n}' ({info[n].family.__name__}) has no finite support "
                    "to enumerate and no ordinal mechanism to truncate. Observe it, or "
                    "use method='gibbs'."
                )
            out[n] = jnp.max(mech.upper(leaf))
        return out

    with isolated():
        draws = jax.vmap(upper)(jax.random.split(jax.random.PRNGKey(0), 64))
    return {n: int(2 * float(jnp.max(v))) for n, v in draws.items()}


def _enumerate(model, info, evidence, latents, key, num_samples, args, kwargs):
    bounds = _unbounded_bounds(model, info, evidence, latents, args, kwargs)
    if bounds:
        from numpyro.distributions.discrete import CategoricalLogits

        truncated = {
            n: dataclasses.replace(info[n], support=tuple(range(b + 1)), family=CategoricalLogits)
            for n, b in bounds.items()
        }
        samples = _enumerate(
            _Truncate(model, bounds),
            ModelSites({**info, **truncated}),
            evidence,
            latents,
            key,
            num_samples,
            args,
            kwargs,
        )
        for n, b in bounds.items():
            if bool(jnp.any(samples[n] >= b)):
                raise AbductionError(
                    f"the posterior of the unbounded latent site '{n}' reaches the "
                    f"truncation bound {b} of its enumeration: the evidence pulls it far "
                    "beyond its prior. Observe it, or use method='gibbs'."
                )
        return samples
    supports = []
    for n in latents:
        if info[n].support is None:
            raise AbductionError(
                f"latent site '{n}' ({info[n].family.__name__}) has no finite support to "
                "enumerate (its values are unbounded, or its support depends on its "
                "parameters). Observe it, or use method='gibbs'."
            )
        supports.append(info[n].support)
    shapes = {info[n].batch_shape for n in latents}
    if shapes == {()}:  # scalar latents: elimination in a min-fill order
        samples = _eliminate(model, info, evidence, latents, key, num_samples, args, kwargs)
        if samples is not None:
            return samples
    n_configs = int(np.prod([len(s) for s in supports]))
    if len(shapes) != 1 or n_configs > _MAX_TABLE:
        # a joint table per unit is cheap only for a few latents in one set of plates
        return _variable_elimination(model, info, evidence, latents, key, num_samples, args, kwargs)
    (batch,) = shapes
    configs = np.array(list(itertools.product(*supports)))  # (C, k)
    inner = _inference_model(model, info, evidence, latents, args, kwargs)

    def log_joint(config):
        values = {
            n: jnp.broadcast_to(config[i], batch).astype(jnp.int32) for i, n in enumerate(latents)
        }
        tr = trace(seed(substitute(inner, values), 0)).get_trace(*args, **kwargs)
        total = jnp.zeros(batch)
        for site in tr.values():
            if site["type"] != "sample":
                continue
            lp = site["fn"].log_prob(site["value"])
            extra = jnp.ndim(lp) - len(batch)
            if extra > 0:
                lp = lp.sum(axis=tuple(range(extra)))
            total = total + lp
        return total

    with isolated():
        logp = jax.vmap(log_joint)(jnp.asarray(configs))  # (C, *batch)
    best = np.asarray(jnp.max(logp, axis=0))
    if not np.all(best > -np.inf):
        unit = np.unravel_index(int(np.argmin(best)), best.shape) if best.ndim else ()
        raise ImpossibleEvidenceError(
            ", ".join(sorted(evidence)) or "(obs= sites)",
            {n: np.asarray(v).tolist() for n, v in evidence.items()},
            f"has probability zero under every configuration of the latent site(s) {latents}",
            tuple(int(i) for i in unit) or None,
        )
    idx = jax.random.categorical(key, jnp.moveaxis(logp, 0, -1), shape=(num_samples,) + batch)
    return {n: jnp.asarray(configs[:, i])[idx].astype(jnp.int32) for i, n in enumerate(latents)}


class Enumeration(Engine):
    """Discrete latents, exactly (``method="enumeration"``)."""

    def refusal(self, info, latents):
        cont = [n for n in latents if not info[n].discrete]
        if cont:
            return (
                f"method='enumeration' needs discrete latents, but {cont} are continuous. "
                "Use method='gibbs' or 'auto'."
            )
        return None

    def posterior(self, problem, rng_key, num_samples):
        p = problem
        return _enumerate(
            p.model, p.info, p.evidence, p.latents, rng_key, num_samples, p.args, p.kwargs
        )
