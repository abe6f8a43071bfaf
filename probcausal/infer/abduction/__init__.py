"""Abduction engines: the posterior over the unobserved factual sites.

Only latent sites that are *ancestors* of the evidence need a posterior: any other
latent site is independent of the evidence given its parents, so ancestral
sampling with the evidence plugged in is already exact for it. The engines below
infer the ancestors; their noise then follows site by site from
:func:`probcausal.mechanisms.abduct` inside the world handlers.

Engines live in a registry, as mechanisms do: :func:`register_engine` adds one
(a subclass of :class:`Engine`), and ``method=name`` in any query selects it.
``method="auto"`` chooses among the built-in engines by the rule of
:func:`choose_method`, in this order:

=================  ==========================================================
method             used when (``method="auto"``)
=================  ==========================================================
``"exact"``        no latent ancestor of the evidence: no inference at all
``"enumeration"``  all latent ancestors discrete with finite support
``"gaussian"``     linear-Gaussian: the log density is quadratic in the latent
                   ancestors (checked; when the check fails, ``"nuts"``)
``"nuts"``         otherwise, when every discrete latent is a scalar of finite
                   support: they are summed out of NUTS (NumPyro's enumeration)
                   and drawn exactly given each continuous draw. When the chains
                   disagree (split R-hat > 1.1), the query reruns with ``"smc"``
``"gibbs"``        discrete latents of infinite support or in plates, with
                   continuous ones (DiscreteHMCGibbs)
``"smc"``          on request, or when the NUTS chains disagree: tempered SMC
``"svi"``          on request, for many units (optax, an autoguide)
``"rejection"``    on request: prior draws whose evidence sites match exactly
                   (deterministic sites such as neural Gumbel-max ones)
=================  ==========================================================
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

import jax

from probcausal.errors import AbductionError
from probcausal.handlers.stack import isolated
from probcausal.infer.abduction._base import (
    R_HAT_SWITCH,
    R_HAT_WARN,
    Engine,
    Posterior,
    Problem,
    _marginal_candidate,
    max_r_hat,
    warn_unconverged,
)
from probcausal.infer.abduction.enumeration import Enumeration
from probcausal.infer.abduction.exact import Exact
from probcausal.infer.abduction.gaussian import Gaussian, _gaussian_candidate
from probcausal.infer.abduction.mcmc import GibbsEngine, NUTSEngine
from probcausal.infer.abduction.rejection import Rejection
from probcausal.infer.abduction.svi import SVIEngine
from probcausal.infer.abduction.tempered import TemperedSMC
from probcausal.sites import SiteInfo

__all__ = [
    "METHODS",
    "R_HAT_SWITCH",
    "R_HAT_WARN",
    "Engine",
    "Posterior",
    "Problem",
    "check_engine_kwargs",
    "choose_method",
    "engines",
    "max_r_hat",
    "posterior_latents",
    "register_engine",
    "warn_unconverged",
]

_ENGINES: dict[str, Engine] = {}
_QUERY_KEYWORDS = ("rng_key", "num_samples", "method", "model_args", "model_kwargs")


def register_engine(name: str, engine: Engine) -> Engine:
    """Register ``engine`` under ``name``, so that ``method=name`` selects it in
    every query (replacing an engine of that name). Its ``options`` become keyword
    arguments the queries accept and pass through. Returns the engine.

    Examples
    --------
    >>> import probcausal as pc
    >>> class Prior(pc.infer.Engine):  # prior draws: right only without evidence
    ...     def posterior(self, problem, rng_key, num_samples):
    ...         return {}
    >>> _ = pc.infer.register_engine("prior-example", Prior())
    >>> "prior-example" in pc.infer.engines()
    True
    """
    if not isinstance(name, str) or not name or name == "auto":
        raise ValueError(
            f"an engine's name must be a non-empty string other than 'auto', got {name!r}"
        )
    if not isinstance(engine, Engine):
        raise TypeError(
            f"register_engine needs an instance of probcausal.infer.Engine, got {engine!r}; "
            "subclass Engine and write its posterior(problem, rng_key, num_samples, ...)"
        )
    clash = set(engine.options) & set(_QUERY_KEYWORDS)
    if clash:
        raise ValueError(f"engine options {sorted(clash)} clash with the query's own keywords")
    _ENGINES[name] = engine
    return engine


def engines() -> tuple[str, ...]:
    """The names ``method=`` takes: ``"auto"`` and every registered engine."""
    return ("auto", *_ENGINES)


for _name, _engine in (
    ("exact", Exact()),
    ("enumeration", Enumeration()),
    ("gaussian", Gaussian()),
    ("nuts", NUTSEngine()),
    ("smc", TemperedSMC()),
    ("svi", SVIEngine()),
    ("gibbs", GibbsEngine()),
    ("rejection", Rejection()),
):
    register_engine(_name, _engine)
METHODS = engines()  # the built-in names; engines() also lists registered ones


def _auto(info: Mapping[str, SiteInfo], latents: list[str], evidence) -> str:
    """The rule of ``method="auto"`` (the table in this module's docstring)."""
    discrete = [n for n in latents if info[n].discrete]
    if not latents:
        return "exact"
    if len(discrete) == len(latents):
        return "enumeration"
    if _gaussian_candidate(info, latents, evidence):
        return "gaussian"  # the query falls back to "nuts" if the density is not quadratic
    if not discrete or _marginal_candidate(info, discrete):
        return "nuts"  # discrete latents summed out of NUTS, then drawn exactly
    return "gibbs"


def choose_method(info, latents: list[str], method: str, evidence=()) -> str:
    """Resolve ``method="auto"``, and check that an engine asked for by name can
    serve the latents (``evidence``: the names of the evidence sites)."""
    auto = method == "auto"
    if auto:
        method = _auto(info, latents, evidence)
    elif method not in _ENGINES:
        raise ValueError(f"unknown abduction method {method!r}; choose one of {engines()}")
    reason = _event_refusal(info, latents, method)
    if not auto:  # the rule of "auto" chooses an engine that serves the latents
        reason = reason or _ENGINES[method].refusal(info, latents)
    if reason:
        raise AbductionError(reason)
    return method


def _event_refusal(info, latents: list[str], method: str) -> str | None:
    """Discrete latents whose values form an event (``.to_event``): the built-in
    engines that enumerate or Gibbs-update discrete sites do it element by element
    along batch dimensions, which an event has not."""
    events = [n for n in latents if info[n].discrete and info[n].event_dim > 0]
    if not events or method not in ("enumeration", "gibbs", "nuts", "smc"):
        return None
    return (
        f"the discrete latent site(s) {events} hold an event of several values "
        f"(`.to_event`): method={method!r} enumerates or updates discrete sites element "
        "by element along batch dimensions. Declare those dimensions with "
        "`numpyro.plate` instead of `.to_event`, or observe the site(s)."
    )


def _options() -> list[str]:
    """Every option of a registered engine, in registration order."""
    return list(dict.fromkeys(k for e in _ENGINES.values() for k in e.options))


def check_engine_kwargs(engine_kwargs: Mapping[str, Any]) -> None:
    """Refuse keyword arguments that no abduction engine takes (a misspelt
    ``num_warmup``), naming the ones that exist."""
    if not engine_kwargs:
        return
    known = _options()
    unknown = sorted(set(engine_kwargs) - set(known))
    if not unknown:
        return
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
    **options,
) -> Mapping[str, jax.Array]:
    """Posterior samples, ``(num_samples, *shape)`` per site, of ``latents`` given
    ``evidence`` under ``model``, by the engine ``method`` (already resolved by
    :func:`choose_method`). ``options`` go to the engine: those it does not take
    are ignored (another engine's), those no engine takes refused."""
    check_engine_kwargs(options)
    if not latents:
        return {}
    engine = _ENGINES[method]
    chosen = {k: options.get(k, default) for k, default in engine.options.items()}
    problem = Problem(
        model, info, evidence, list(latents), tuple(model_args), dict(model_kwargs or {})
    )
    with isolated():
        return engine.posterior(problem, rng_key, num_samples, **chosen)
