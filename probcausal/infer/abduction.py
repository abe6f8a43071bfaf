"""Abduction engines: the posterior over the unobserved factual sites.

Only latent sites that are *ancestors* of the evidence need a posterior: any other
latent site is independent of the evidence given its parents, so ancestral
sampling with the evidence plugged in is already exact for it. The engines below
infer the ancestors; their noise then follows site by site from
:func:`probcausal.mechanisms.abduct` inside the world handlers.

=================  ==========================================================
method             used when (``method="auto"``)
=================  ==========================================================
``"exact"``        no latent ancestor of the evidence: no inference at all
``"enumeration"``  all latent ancestors discrete with finite support
``"gaussian"``     linear-Gaussian: the log density is quadratic in the latent
                   ancestors (checked); the exact conjugate posterior, no MCMC
``"nuts"``         all latent ancestors continuous (otherwise)
``"svi"``          on request, for many units (optax, an autoguide)
``"nuts"``         with discrete latents too: summed out of NUTS (NumPyro's
                   enumeration), then drawn exactly given each continuous draw
``"gibbs"``        discrete latents of infinite support or in plates, with
                   continuous ones (DiscreteHMCGibbs)
``"rejection"``    on request: prior draws whose evidence sites match exactly
                   (deterministic sites such as neural Gumbel-max ones)
=================  ==========================================================
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
from numpyro.handlers import condition, seed, substitute, trace
from numpyro.infer import MCMC, NUTS, SVI, DiscreteHMCGibbs, Predictive, Trace_ELBO
from numpyro.infer.autoguide import AutoMultivariateNormal, AutoNormal
from numpyro.primitives import Messenger

from probcausal import mechanisms
from probcausal.compilation import model_state
from probcausal.errors import (
    AbductionError,
    ConvergenceWarning,
    ImpossibleEvidenceError,
    MissingMechanismError,
)
from probcausal.handlers._stack import isolated

__all__ = [
    "METHODS",
    "ModelSites",
    "Posterior",
    "SiteInfo",
    "choose_method",
    "model_info",
    "posterior_latents",
]

METHODS = (
    "auto",
    "exact",
    "enumeration",
    "gaussian",
    "nuts",
    "smc",
    "svi",
    "gibbs",
    "rejection",
)
_MAX_TABLE = 1 << 12  # joint configurations per unit for the table; beyond: elimination
_MVN_MAX_DIM = 256
_GAUSSIAN_MAX_UNIT_DIM = 2048  # latent values per unit (per plate index) for "gaussian"


@dataclass(frozen=True)
class SiteInfo:
    """Static facts about one sample site, read from an abstract trace."""

    name: str
    shape: tuple[int, ...]
    batch_shape: tuple[int, ...]
    event_dim: int
    family: type
    observed: bool
    discrete: bool
    support: tuple | None  # finite support values, when enumerable
    plate_dims: tuple[int, ...]
    plates: tuple[tuple[str, int], ...]  # (plate name, dim)
    exact: bool  # abduction is a deterministic inversion
    parents: frozenset = field(default_factory=frozenset)
    constraint: str = ""  # class name of the support constraint, e.g. "_Boolean"
    intervened: bool = False  # set by a `do` inside the model


class ModelSites(dict):
    """Site name -> :class:`SiteInfo` for the sample sites of a model, with the
    ``numpyro.deterministic`` sites in ``deterministic`` (name -> shape, parents)."""

    deterministic: dict


def model_info(model: Callable, args=(), kwargs=None) -> dict[str, SiteInfo]:
    """Site name -> :class:`SiteInfo`, from one abstract (shape-only) run of ``model``."""
    from probcausal.graph import abstract_sites, graph_of_sites

    kwargs = kwargs or {}

    def describe(site) -> dict:
        fn = site["fn"]
        support = None
        if getattr(fn, "has_enumerate_support", False):
            try:
                with jax.ensure_compile_time_eval():
                    values = np.unique(np.asarray(fn.enumerate_support(expand=False)))
                support = tuple(values.tolist())
            except (jax.errors.ConcretizationTypeError, TypeError):
                support = None  # parameter-dependent support: not enumerable
        return dict(
            batch_shape=tuple(fn.batch_shape),
            event_dim=fn.event_dim,
            discrete=bool(fn.is_discrete),
            support=support,
            plate_dims=tuple(f.dim for f in site["cond_indep_stack"]),
            plate_name_dims=tuple((f.name, f.dim) for f in site["cond_indep_stack"]),
            exact=_exact(fn),
            constraint=type(fn.support).__name__ if fn.support is not None else "",
        )

    deterministic: dict = {}
    sites = abstract_sites(model, args, kwargs, describe, deterministic)
    g = graph_of_sites(sites)
    out = ModelSites(
        {
            name: SiteInfo(
                name=name,
                shape=s["shape"],
                batch_shape=s["batch_shape"],
                event_dim=s["event_dim"],
                family=s["fn_type"],
                observed=s["observed"],
                discrete=s["discrete"],
                support=s["support"],
                plate_dims=s["plate_dims"],
                plates=s["plate_name_dims"],
                exact=s["exact"],
                parents=frozenset(g.predecessors(name)) if name in g else frozenset(),
                constraint=s["constraint"],
            )
            for name, s in sites.items()
        }
    )
    out.deterministic = {
        n: {"shape": d["shape"], "parents": frozenset(d["parents"]) & sites.keys()}
        for n, d in deterministic.items()
    }
    return out


def _exact(fn) -> bool:
    try:
        return mechanisms.is_exact(fn)
    except MissingMechanismError:  # reported with the site name when the worlds run
        return False


def latent_ancestors(info: Mapping[str, SiteInfo], evidence) -> list[str]:
    """Latent sites (not observed, not in evidence) that are ancestors of evidence."""
    observed = {n for n, s in info.items() if s.observed} | set(evidence)
    ancestors: set[str] = set()
    todo = list(observed)
    while todo:
        for p in info[todo.pop()].parents:
            if p not in ancestors:
                ancestors.add(p)
                todo.append(p)
    return [n for n in info if n in ancestors and n not in observed]


def choose_method(info, latents: list[str], method: str, evidence=()) -> str:
    """Resolve ``method="auto"`` and check an explicit method fits the latents
    (``evidence``: the names of the evidence sites)."""
    if method not in METHODS:
        raise ValueError(f"unknown abduction method {method!r}; choose one of {METHODS}")
    discrete = [n for n in latents if info[n].discrete]
    if method == "auto":
        if not latents:
            return "exact"
        if len(discrete) == len(latents):
            return "enumeration"
        if _gaussian_candidate(info, latents, evidence):
            return "gaussian"  # falls back to "nuts" if the density is not quadratic
        if not discrete or _marginal_candidate(info, discrete):
            return "nuts"  # discrete latents summed out of NUTS, then drawn exactly
        return "gibbs"
    if method == "exact" and latents:
        raise AbductionError(
            f"method='exact' needs every ancestor of the evidence observed, but {latents} "
            "are latent. Observe them, or use method='auto'."
        )
    if method in ("nuts", "smc") and discrete and len(discrete) == len(latents):
        raise AbductionError(
            f"method={method!r} cannot infer the discrete latent site(s) {discrete}: it "
            "moves continuous latents (discrete ones it sums out beside them), and there "
            "are none. Use method='enumeration' or 'auto'."
        )
    if method in ("nuts", "smc") and discrete and not _marginal_candidate(info, discrete):
        raise AbductionError(
            f"method={method!r} sums discrete latent sites out of the density only when "
            f"they are scalars of finite support; {discrete} are not. Use method='gibbs'."
        )
    if method in ("svi", "gaussian") and discrete:
        raise AbductionError(
            f"method={method!r} cannot infer the discrete latent site(s) {discrete} "
            "(a gradient-based posterior over discrete values is wrong). Use "
            "method='enumeration' or 'gibbs', or method='auto'."
        )
    if method == "enumeration" and len(discrete) != len(latents):
        cont = [n for n in latents if n not in discrete]
        raise AbductionError(
            f"method='enumeration' needs discrete latents, but {cont} are continuous. "
            "Use method='gibbs' or 'auto'."
        )
    return method


def _marginal_candidate(info, discrete) -> bool:
    """Discrete latents NUTS can sum out (NumPyro's enumeration) and elimination can
    draw back: scalar, of finite support."""
    return all(info[n].support is not None and info[n].batch_shape == () for n in discrete)


def _marginal_nuts(model, info, evidence, latents, key, num_samples, mcmc_args, args, kwargs):
    """NUTS over the continuous latents with the discrete ones summed out of the
    density (NumPyro's parallel enumeration), then the discrete latents drawn
    exactly given each continuous draw (variable elimination). Unlike Gibbs, the
    chains never stick at one discrete configuration. A model whose code does not
    broadcast over enumerated values falls back to DiscreteHMCGibbs."""
    from numpyro.contrib.funsor import config_enumerate

    discrete = [n for n in latents if info[n].discrete]
    continuous = [n for n in latents if n not in discrete]
    k_mcmc, k_discrete = jax.random.split(key)
    inner = _inference_model(model, info, evidence, latents, args, kwargs)
    try:
        with isolated():
            post = _mcmc(
                config_enumerate(inner),
                "nuts",
                continuous,
                k_mcmc,
                num_samples,
                *mcmc_args,
                args,
                kwargs,
            )
        draws = _eliminate(
            model, info, evidence, discrete, k_discrete, num_samples, args, kwargs, given=dict(post)
        )
    except (ValueError, TypeError, IndexError):
        draws = None
    if draws is None:
        with isolated():
            post = _mcmc(inner, "gibbs", latents, key, num_samples, *mcmc_args, args, kwargs)
        post.method = "gibbs"
        return post
    return Posterior({**post, **draws}, chains=post.chains, diagnostics=post.diagnostics)


def _marginal_smc(model, info, evidence, latents, key, num_samples, num_particles, args, kwargs):
    """Tempered SMC over the continuous latents with the discrete ones summed out by
    variable elimination: the prior ``p(z)`` and likelihood ``p(e | z)`` are both
    sums over the discrete latents (a mixture has several modes that chains cannot
    weigh), then the discrete latents drawn exactly given each continuous draw."""
    from probcausal.infer.elimination import eliminate, elimination_order
    from probcausal.infer.smc import tempered_smc

    discrete = [n for n in latents if info[n].discrete]
    continuous = [n for n in latents if n not in discrete]
    depth = max((len(s.batch_shape) for s in info.values()), default=0)
    frozen = _frozen(model, info, evidence, latents, args, kwargs)
    seen = {n for n, s in info.items() if s.observed} | set(evidence)

    def densities(z):
        tr = _enumerated_trace(model, {**evidence, **z}, frozen, discrete, depth, args, kwargs)
        out = []
        for skip in (seen, ()):  # log p(z), then log p(z, e)
            factors, cards, _ = _factors(tr, discrete, frozen, depth, skip)
            log_z, _ = eliminate(
                factors, cards, elimination_order([f.scope for f in factors], cards)
            )
            out.append(log_z)
        return out[0], out[1] - out[0]

    k_smc, k_discrete = jax.random.split(key)
    inner = _inference_model(model, info, evidence, latents, args, kwargs)
    with isolated():
        post = tempered_smc(
            inner, continuous, k_smc, num_samples, args, kwargs, num_particles, densities=densities
        )
    draws = _eliminate(
        model, info, evidence, discrete, k_discrete, num_samples, args, kwargs, given=dict(post)
    )
    if draws is None:
        raise AbductionError(
            f"method='smc' sums the discrete latent sites {discrete} out by elimination, "
            "which needs scalar sites whose code broadcasts over enumerated values. "
            "Use method='gibbs'."
        )
    return Posterior({**post, **draws})


class _Freeze(Messenger):
    """Fix sites to given values and drop them from the log density."""

    def __init__(self, fn, values):
        self.values = values
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "sample" and msg["name"] in self.values:
            msg["value"] = self.values[msg["name"]]
            msg["is_observed"] = True
            msg["fn"] = msg["fn"].mask(False)


def _inference_model(model, info, evidence, latents, args, kwargs):
    """The conditioned model whose only free sites are ``latents``.

    Latent sites that are not ancestors of the evidence are frozen at a prior draw
    and masked: they do not touch the evidence, so the posterior of ``latents`` is
    unchanged, and discrete ones no longer block gradient-based engines.
    """
    return _Freeze(
        condition(model, evidence), _frozen(model, info, evidence, latents, args, kwargs)
    )


def _frozen(model, info, evidence, latents, args, kwargs) -> dict:
    """A prior draw of the latent sites that are not ancestors of the evidence."""
    others = [
        n for n, s in info.items() if not s.observed and n not in evidence and n not in latents
    ]
    if not others:
        return {}
    with isolated():
        tr = trace(seed(condition(model, evidence), 0)).get_trace(*args, **kwargs)
    return {n: tr[n]["value"] for n in others}


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
    from probcausal.infer.elimination import Factor

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
    from probcausal.infer.elimination import eliminate, elimination_order, sample_eliminated
    from probcausal.queries._program import compiled, signature, split_static

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

    from probcausal.queries._program import compiled, signature, split_static

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
    from probcausal.mechanisms import InverseCDF, mechanism_for

    unbounded = [n for n in latents if info[n].support is None]
    if not unbounded:
        return {}
    inner = condition(model, evidence)

    def upper(k):
        tr = trace(seed(inner, k)).get_trace(*args, **kwargs)
        out = {}
        for n in unbounded:
            leaf = mechanisms.base._leaf(tr[n]["fn"])
            mech = mechanism_for(leaf, n)
            if not isinstance(mech, InverseCDF):
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


def _rejection(model, info, evidence, latents, key, num_samples, args, kwargs, max_draws, atol):
    """Exact posterior draws by rejection: run the model forward from the prior and
    keep the runs whose evidence sites equal the evidence (within ``atol``)."""
    from numpyro.distributions import Delta

    noisy = [n for n in evidence if not issubclass(info[n].family, Delta)]
    if noisy:
        raise AbductionError(
            f"method='rejection' matches the evidence exactly, so the evidence sites must "
            f"be deterministic (Delta) sites; {noisy} have a density. Use method='auto'."
        )
    from probcausal.queries._program import compiled, signature, split_static

    chunk = min(max_draws, max(4 * num_samples, 10_000))
    sites = sorted(set(latents) | set(evidence))
    arg_dyn, arg_key, arg_rebuild = split_static((tuple(args), dict(kwargs)), False)

    def build():
        def run(key, arg_leaves):
            a, kw = arg_rebuild(arg_leaves)
            return Predictive(model, num_samples=chunk, return_sites=sites)(key, *a, **kw)

        return run

    # cached per model and shapes, as the query programs are: repeated queries
    # on one model compile once
    program = compiled(
        ("rejection", model_state(model), chunk, tuple(sites), arg_key, signature(arg_dyn)), build
    )
    draw = lambda k: program(k, arg_dyn)
    kept = {n: [] for n in latents}
    accepted = drawn = 0
    while accepted < num_samples and drawn < max_draws:
        s = draw(jax.random.fold_in(key, drawn))
        ok = np.ones(chunk, dtype=bool)
        for n, v in evidence.items():
            diff = jnp.abs(s[n] - jnp.asarray(v, s[n].dtype)).reshape(chunk, -1)
            ok &= np.asarray(jnp.all(diff <= atol, axis=1))
        for n in latents:
            kept[n].append(np.asarray(s[n])[ok])
        accepted += int(ok.sum())
        drawn += chunk
    if accepted < num_samples:
        raise AbductionError(
            f"method='rejection': {accepted} of {drawn} prior draws matched the evidence "
            f"{sorted(evidence)}, fewer than num_samples={num_samples}. Raise "
            "`max_draws`, ask for fewer samples, or give less specific evidence."
        )
    return {n: jnp.asarray(np.concatenate(kept[n])[:num_samples]) for n in latents}


class NotGaussian(AbductionError):
    """The log density is not quadratic in the latent sites."""


@dataclass(frozen=True)
class _UnitLayout:
    """How latent sites map to a ``(units, per_unit)`` matrix: the plates every latent
    site lies in index the units, which the evidence cannot couple unless a site
    outside the plates reads them (the quadratic check catches that)."""

    names: tuple[str, ...]
    plate_axes: tuple[tuple[int, ...], ...]  # per site: its axes for the shared plates
    moved_shapes: tuple[tuple[int, ...], ...]  # per site: shape with plate axes first
    units: int
    widths: tuple[int, ...]  # per site: values per unit

    def from_units(self, z: jax.Array) -> dict[str, jax.Array]:
        lead = z.ndim - 2
        out, start = {}, 0
        for n, axes, shape, w in zip(
            self.names, self.plate_axes, self.moved_shapes, self.widths, strict=True
        ):
            v = z[..., start : start + w].reshape(z.shape[:lead] + shape)
            out[n] = jnp.moveaxis(v, list(range(lead, lead + len(axes))), [lead + a for a in axes])
            start += w
        return out


def _unit_layout(
    info: Mapping[str, SiteInfo], latents: list[str], by_plates: bool = True
) -> _UnitLayout:
    shared: dict[str, int] | None = None if by_plates else {}
    for n in latents if by_plates else ():
        s = info[n]
        sizes = {}
        for name, dim in s.plates:
            axis = len(s.batch_shape) + dim
            if 0 <= axis < len(s.shape):
                sizes[name] = s.shape[axis]
        if shared is None:
            shared = sizes
        else:
            shared = {k: v for k, v in shared.items() if sizes.get(k) == v}
    plates = sorted(shared or {})
    axes_all, shapes = [], []
    for n in latents:
        s = info[n]
        dims = dict(s.plates)
        axes = tuple(len(s.batch_shape) + dims[p] for p in plates)
        rest = [d for i, d in enumerate(s.shape) if i not in axes]
        axes_all.append(axes)
        shapes.append(tuple(s.shape[a] for a in axes) + tuple(rest))
    units = int(np.prod([shared[p] for p in plates])) if plates else 1
    widths = tuple(int(np.prod(info[n].shape)) // units for n in latents)
    return _UnitLayout(tuple(latents), tuple(axes_all), tuple(shapes), units, widths)


def _gaussian_candidate(info: Mapping[str, SiteInfo], latents: list[str], evidence=()) -> bool:
    """Cheap static screen for ``method="auto"``: Normal latents and Normal children
    of the latents among the observed sites, few enough values per unit."""
    from numpyro.distributions import Normal

    lat, seen = set(latents), set(evidence)
    children = [n for n, s in info.items() if s.parents & lat and (s.observed or n in seen)]
    if not all(issubclass(info[n].family, Normal) for n in [*latents, *children]):
        return False
    return sum(_unit_layout(info, latents).widths) <= _GAUSSIAN_MAX_UNIT_DIM


def _gaussian(model, info, evidence, latents, key, num_samples, args, kwargs):
    """The exact posterior of linear-Gaussian latents, by the conjugate update.

    The log joint f(z) of the latents with the evidence plugged in is quadratic,
    f(z) = c + g'z - z'Pz/2, so the posterior is N(P^{-1} g, P^{-1}). g is the
    gradient at 0, P minus the Hessian, block-diagonal over the units of the shared
    plates: one Hessian-vector product per value within a unit gives every block.
    Quadraticity is checked, not assumed: the gradient at two random points (around
    0 and around the posterior) must equal g - Pz; otherwise ``NotGaussian``.
    """
    from numpyro.infer.util import log_density

    from probcausal.queries._program import compiled, signature, split_static

    layouts = [_unit_layout(info, latents)]
    dense = _unit_layout(info, latents, by_plates=False)
    if layouts[0].units > 1 and sum(dense.widths) <= _GAUSSIAN_MAX_UNIT_DIM:
        layouts.append(dense)  # when a site outside the plates couples the units
    width = sum(layouts[0].widths)
    if width > _GAUSSIAN_MAX_UNIT_DIM:
        raise NotGaussian(
            f"method='gaussian' builds a dense {width}x{width} precision per unit for the "
            f"latent sites {latents} (limit {_GAUSSIAN_MAX_UNIT_DIM}); put the units in a "
            "numpyro.plate, or use method='nuts' or 'svi'."
        )
    frozen = _frozen(model, info, evidence, latents, args, kwargs)
    arg_dyn, arg_key, arg_rebuild = split_static((tuple(args), dict(kwargs)), False)

    def build(layout: _UnitLayout):
        width = sum(layout.widths)

        def run(key, ev, frozen, arg_leaves):
            a, kw = arg_rebuild(arg_leaves)
            inner = _Freeze(condition(model, ev), frozen)

            def grad(z):  # (units, width) -> (units, width)
                f = lambda z: log_density(inner, a, kw, layout.from_units(z))[0]  # noqa: E731
                return jax.grad(f)(z)

            zero = jnp.zeros((layout.units, width))
            g = grad(zero)
            probes = jnp.broadcast_to(jnp.eye(width)[:, None, :], (width, layout.units, width))
            cols = jax.vmap(lambda v: jax.jvp(grad, (zero,), (v,))[1])(probes)
            hess = jnp.moveaxis(cols, 0, -1)  # (units, row, col)
            prec = -0.5 * (hess + jnp.swapaxes(hess, -1, -2))
            if width == 1:  # scalars: no factorization to compile
                chol = jnp.sqrt(prec)
                mean, chol_inv = g / prec[..., 0], 1.0 / chol
            else:
                chol = jnp.linalg.cholesky(prec)
                mean = jax.scipy.linalg.cho_solve((chol, True), g[..., None])[..., 0]
                eye = jnp.broadcast_to(jnp.eye(width), prec.shape)
                chol_inv = jax.scipy.linalg.solve_triangular(chol, eye, lower=True)
            # z = mean + L^{-T} eps has covariance L^{-T} L^{-1} = P^{-1}; one draw
            # for the samples and the check's probe (one random program to compile)
            eps = jax.random.normal(key, (num_samples + 1, layout.units, width))
            probe, eps = eps[-1], eps[:-1]
            z = mean + jnp.einsum("uji,suj->sui", chol_inv, eps)
            sd = jnp.sqrt(jnp.sum(chol_inv**2, axis=-2))

            def residual(point):  # relative misfit of grad f = g - P z
                want = g - jnp.einsum("uij,uj->ui", prec, point)
                got = grad(point)
                scale = jnp.abs(g) + jnp.abs(want - g)
                return jnp.max(jnp.abs(got - want) - 1e-4 * scale - 1e-5 * jnp.max(scale))

            misfit = jnp.maximum(residual(probe), residual(mean + probe * sd))
            ok = jnp.all(jnp.isfinite(chol)) & (misfit <= 0) & jnp.all(jnp.isfinite(mean))
            return layout.from_units(z), ok

        return run

    for layout in layouts:
        program = compiled(
            (
                "gaussian",
                model_state(model),
                layout,
                num_samples,
                arg_key,
                signature((dict(evidence), frozen, arg_dyn)),
            ),
            lambda: build(layout),  # noqa: B023 (called at once)
        )
        with isolated():
            samples, ok = program(key, dict(evidence), frozen, arg_dyn)
        if bool(ok):
            return samples
    raise NotGaussian(
        f"method='gaussian': the log density is not quadratic in the latent sites "
        f"{latents} given the evidence {sorted(evidence)} (a mechanism is nonlinear in "
        "them, a scale depends on them, or the posterior is improper). Use "
        "method='nuts' or 'svi'."
    )


class Posterior(dict):
    """Posterior draws of the latent sites, site -> ``(num_samples, *shape)``.

    ``chains`` is the number of MCMC chains the draws come from, in order (chain
    after chain), and ``diagnostics`` site -> ``{"r_hat": ..., "ess": ...}``
    (split R-hat and effective sample size per element; empty for exact engines).
    """

    chains: int = 1
    diagnostics: dict
    method: str | None = None  # the engine that ran, where it differs from the one asked

    def __init__(self, samples=(), chains: int = 1, diagnostics=None):
        super().__init__(samples)
        self.chains = chains
        self.diagnostics = dict(diagnostics or {})


R_HAT_WARN = 1.01  # split R-hat above this: warn that the chains disagree
R_HAT_SWITCH = 1.1  # above this, method="auto" runs tempered SMC instead


def _largest_r_hat(site_diagnostics) -> float | None:
    """A site's largest split R-hat over its elements (NaN counts as infinite);
    None when it has no elements."""
    r_hat = np.nan_to_num(np.asarray(site_diagnostics["r_hat"], float), nan=np.inf)
    return float(r_hat.max()) if r_hat.size else None


def max_r_hat(diagnostics) -> float:
    """The largest split R-hat over every site and element (NaN counts as large)."""
    values = [_largest_r_hat(d) for d in diagnostics.values()]
    return max((v for v in values if v is not None), default=1.0)


def warn_unconverged(diagnostics, method: str) -> None:
    """Warn, naming the sites, when the chains of an MCMC engine disagree."""
    largest = {n: _largest_r_hat(d) for n, d in diagnostics.items()}
    bad = {n: v for n, v in largest.items() if v is not None and v > R_HAT_WARN}
    if bad:
        import warnings

        txt = ", ".join(f"'{n}' (r_hat {v:.3g})" for n, v in bad.items())
        warnings.warn(
            f"the {method} chains disagree on the latent site(s) {txt}: the posterior draws "
            "may miss a mode or be unconverged. Raise num_warmup / num_samples, or use "
            "method='smc' for a multimodal posterior.",
            ConvergenceWarning,
            stacklevel=3,
        )


def _mcmc(inner, method, latents, key, num_samples, num_warmup, num_chains, progress, args, kw):
    """NUTS (or DiscreteHMCGibbs) with several chains run vectorized from dispersed
    starting points (NumPyro's uniform initialisation in [-2, 2] on the unconstrained
    scale, a key per chain); R-hat and ESS per latent site."""
    from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

    if isinstance(num_chains, bool) or not isinstance(num_chains, int) or num_chains < 1:
        raise ValueError(f"`num_chains` must be a positive int, got {num_chains!r}")
    kernel = NUTS(inner)
    if method == "gibbs":
        kernel = DiscreteHMCGibbs(kernel, modified=True)
    per_chain = -(-num_samples // num_chains)
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=per_chain,
        num_chains=num_chains,
        # DiscreteHMCGibbs takes one key: its chains run one after another
        chain_method="vectorized" if method == "nuts" else "sequential",
        progress_bar=progress,
    )
    try:
        mcmc.run(key, *args, **kw)
    except RuntimeError as e:
        raise AbductionError(
            f"{method.upper()} found no starting point of finite density for the latent "
            f"sites {latents} ({e}); the evidence may be impossible under the model, or "
            "its density underflows: check the evidence, or use method='svi'."
        ) from e
    grouped = mcmc.get_samples(group_by_chain=True)
    diagnostics = {}
    for n in latents:
        g = np.asarray(grouped[n], np.float64)
        if num_chains > 1 and per_chain >= 4:
            diagnostics[n] = {"r_hat": split_gelman_rubin(g), "ess": effective_sample_size(g)}
    samples = {
        n: jnp.reshape(grouped[n], (num_chains * per_chain,) + grouped[n].shape[2:])[:num_samples]
        for n in latents
    }
    return Posterior(
        samples,
        chains=num_chains if num_chains * per_chain == num_samples else 1,
        diagnostics=diagnostics,
    )


def check_engine_kwargs(engine_kwargs: Mapping[str, Any]) -> None:
    """Refuse keyword arguments that no abduction engine takes (a misspelt
    ``num_warmup``), naming the ones that exist."""
    if not engine_kwargs:
        return
    import inspect

    known = [
        p.name
        for p in inspect.signature(posterior_latents).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
        and p.name not in ("rng_key", "num_samples", "model_args", "model_kwargs")
    ]
    unknown = sorted(set(engine_kwargs) - set(known))
    if unknown:
        import difflib

        hints = [
            f"{u!r} (did you mean {m[0]!r}?)"
            if (m := difflib.get_close_matches(u, known, 1))
            else repr(u)
            for u in unknown
        ]
        raise TypeError(
            f"unknown keyword argument(s) {', '.join(hints)}; the abduction engines take "
            f"{known}, and the query takes rng_key, num_samples, method, model_args and "
            "model_kwargs."
        )


def posterior_latents(
    model: Callable,
    info: Mapping[str, SiteInfo],
    evidence: Mapping[str, Any],
    latents: list[str],
    method: str,
    *,
    rng_key: jax.Array,
    num_samples: int,
    model_args=(),
    model_kwargs=None,
    num_warmup: int = 500,
    svi_steps: int = 2000,
    svi_learning_rate: float = 0.05,
    guide: Callable | None = None,
    guide_params: Mapping[str, Any] | None = None,
    progress_bar: bool = False,
    max_draws: int = 1_000_000,
    atol: float = 1e-5,
    num_chains: int = 4,
    num_particles: int | None = None,
) -> dict[str, jax.Array]:
    """Posterior samples, ``(num_samples, *shape)`` per site, of ``latents`` given
    ``evidence`` under ``model``, by ``method`` (already resolved)."""
    kwargs = model_kwargs or {}
    if method == "exact" or not latents:
        return {}
    if method == "gaussian":
        return _gaussian(model, info, evidence, latents, rng_key, num_samples, model_args, kwargs)
    if method == "enumeration":
        return _enumerate(model, info, evidence, latents, rng_key, num_samples, model_args, kwargs)
    if method == "rejection":
        with isolated():
            return _rejection(
                model,
                info,
                evidence,
                latents,
                rng_key,
                num_samples,
                model_args,
                kwargs,
                max_draws,
                atol,
            )
    inner = _inference_model(model, info, evidence, latents, model_args, kwargs)
    with isolated():
        if method == "smc" and any(info[n].discrete for n in latents):
            return _marginal_smc(
                model,
                info,
                evidence,
                latents,
                rng_key,
                num_samples,
                num_particles,
                model_args,
                kwargs,
            )
        if method == "smc":
            from probcausal.infer.smc import tempered_smc

            return tempered_smc(
                inner, latents, rng_key, num_samples, model_args, kwargs, num_particles
            )
        if method == "nuts" and any(info[n].discrete for n in latents):
            return _marginal_nuts(
                model,
                info,
                evidence,
                latents,
                rng_key,
                num_samples,
                (num_warmup, num_chains, progress_bar),
                model_args,
                kwargs,
            )
        if method in ("nuts", "gibbs"):
            return _mcmc(
                inner,
                method,
                latents,
                rng_key,
                num_samples,
                num_warmup,
                num_chains,
                progress_bar,
                model_args,
                kwargs,
            )
        else:  # svi
            if hasattr(guide, "bind"):  # amortized guides read the evidence
                guide = guide.bind(evidence)
            if guide_params is not None:  # amortized and trained: no fitting per query
                if guide is None:
                    raise AbductionError("guide_params needs a guide")
                samples = Predictive(guide, params=dict(guide_params), num_samples=num_samples)(
                    rng_key, *model_args, **kwargs
                )
                return {n: samples[n] for n in latents}
            if guide is None:
                dim = sum(int(np.prod(info[n].shape)) for n in latents)
                guide = (AutoMultivariateNormal if dim <= _MVN_MAX_DIM else AutoNormal)(inner)
            # decay the step size to zero so the variational parameters settle
            schedule = optax.cosine_decay_schedule(svi_learning_rate, svi_steps)
            svi = SVI(inner, guide, optax.adam(schedule), Trace_ELBO(num_particles=4))
            k_fit, k_draw = jax.random.split(rng_key)
            result = svi.run(k_fit, svi_steps, *model_args, progress_bar=progress_bar, **kwargs)
            if not np.isfinite(np.asarray(result.losses[-1])):
                raise AbductionError(
                    "SVI abduction diverged (non-finite ELBO); lower `svi_learning_rate` or "
                    "use method='nuts'."
                )
            if hasattr(guide, "sample_posterior"):
                samples = guide.sample_posterior(
                    k_draw, result.params, *model_args, sample_shape=(num_samples,), **kwargs
                )
            else:
                samples = Predictive(guide, params=result.params, num_samples=num_samples)(
                    k_draw, *model_args, **kwargs
                )
    return {n: samples[n] for n in latents}
