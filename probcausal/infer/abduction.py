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
``"nuts"``         all latent ancestors continuous (default)
``"svi"``          on request, for many units (optax, an autoguide)
``"gibbs"``        discrete and continuous latent ancestors (DiscreteHMCGibbs)
``"rejection"``    on request: prior draws whose evidence sites match exactly
                   (deterministic sites such as neural Gumbel-max ones)
=================  ==========================================================
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.handlers import condition, seed, substitute, trace
from numpyro.infer import MCMC, NUTS, SVI, DiscreteHMCGibbs, Predictive, Trace_ELBO
from numpyro.infer.autoguide import AutoMultivariateNormal, AutoNormal
from numpyro.primitives import Messenger

from probcausal import mechanisms
from probcausal.errors import AbductionError, MissingMechanismError
from probcausal.handlers._stack import isolated

__all__ = ["METHODS", "SiteInfo", "choose_method", "model_info", "posterior_latents"]

METHODS = ("auto", "exact", "enumeration", "nuts", "svi", "gibbs", "rejection")
_MAX_ENUMERATION = 1 << 14
_MVN_MAX_DIM = 256


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
        )

    sites = abstract_sites(model, args, kwargs, describe)
    g = graph_of_sites(model, args, kwargs, sites)
    return {
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
        )
        for name, s in sites.items()
    }


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


def choose_method(info, latents: list[str], method: str) -> str:
    """Resolve ``method="auto"`` and check an explicit method fits the latents."""
    if method not in METHODS:
        raise ValueError(f"unknown abduction method {method!r}; choose one of {METHODS}")
    discrete = [n for n in latents if info[n].discrete]
    if method == "auto":
        if not latents:
            return "exact"
        if len(discrete) == len(latents):
            return "enumeration"
        return "nuts" if not discrete else "gibbs"
    if method == "exact" and latents:
        raise AbductionError(
            f"method='exact' needs every ancestor of the evidence observed, but {latents} "
            "are latent. Observe them, or use method='auto'."
        )
    if method in ("nuts", "svi") and discrete:
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
    others = [
        n for n, s in info.items() if not s.observed and n not in evidence and n not in latents
    ]
    frozen = {}
    if others:
        with isolated():
            tr = trace(seed(condition(model, evidence), 0)).get_trace(*args, **kwargs)
        frozen = {n: tr[n]["value"] for n in others}
    return _Freeze(condition(model, evidence), frozen)


def _enumerate(model, info, evidence, latents, key, num_samples, args, kwargs):
    shapes = {info[n].batch_shape for n in latents}
    if len(shapes) != 1:
        raise AbductionError(
            f"enumeration needs the discrete latent sites {latents} to share one batch "
            f"shape (one set of plates), got {sorted(shapes)}. Use method='gibbs'."
        )
    (batch,) = shapes
    supports = []
    for n in latents:
        if info[n].support is None:
            raise AbductionError(
                f"latent site '{n}' ({info[n].family.__name__}) has no finite support to "
                "enumerate. Use method='gibbs'."
            )
        supports.append(info[n].support)
    n_configs = int(np.prod([len(s) for s in supports]))
    if n_configs > _MAX_ENUMERATION:
        raise AbductionError(
            f"enumerating {latents} needs {n_configs} joint configurations per unit "
            f"(limit {_MAX_ENUMERATION}). Use method='gibbs'."
        )
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
        ("rejection", model, chunk, tuple(sites), arg_key, signature(arg_dyn)), build
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
) -> dict[str, jax.Array]:
    """Posterior samples, ``(num_samples, *shape)`` per site, of ``latents`` given
    ``evidence`` under ``model``, by ``method`` (already resolved)."""
    kwargs = model_kwargs or {}
    if method == "exact" or not latents:
        return {}
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
        if method in ("nuts", "gibbs"):
            kernel = NUTS(inner)
            if method == "gibbs":
                kernel = DiscreteHMCGibbs(kernel, modified=True)
            mcmc = MCMC(
                kernel,
                num_warmup=num_warmup,
                num_samples=num_samples,
                progress_bar=progress_bar,
            )
            mcmc.run(rng_key, *model_args, **kwargs)
            samples = mcmc.get_samples()
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
