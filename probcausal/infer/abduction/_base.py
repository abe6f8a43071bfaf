"""The pieces every abduction engine shares: the problem it is given, the engine
base class, the posterior it returns, the conditioned model it infers, and the
convergence diagnostics of MCMC engines."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np
from numpyro.handlers import condition, seed, trace
from numpyro.primitives import Messenger

from probcausal.errors import (
    ConvergenceWarning,
)
from probcausal.handlers.stack import isolated
from probcausal.sites import SiteInfo


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


@dataclass(frozen=True)
class Problem:
    """What an engine is asked: the posterior of ``latents`` (the latent ancestors
    of the evidence) given ``evidence`` under ``model(*args, **kwargs)``; ``info``
    holds the facts about every site (:func:`probcausal.sites.model_info`)."""

    model: Callable
    info: Mapping[str, SiteInfo]
    evidence: Mapping[str, Any]
    latents: list[str]
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def discrete(self) -> list[str]:
        return [n for n in self.latents if self.info[n].discrete]

    @property
    def continuous(self) -> list[str]:
        return [n for n in self.latents if not self.info[n].discrete]

    def inference_model(self):
        """The conditioned model whose only free sites are the latents."""
        return _inference_model(
            self.model, self.info, self.evidence, self.latents, self.args, self.kwargs
        )


class Engine:
    """An abduction engine: posterior draws of the latent ancestors of the evidence.

    Subclass, set ``options`` (the keyword options a query passes through, with
    their defaults), write :meth:`posterior`, and :func:`register_engine` it under a
    name; ``pc.counterfactual(..., method=name)`` then uses it. :meth:`refusal` says
    why the engine cannot serve a problem (the query raises ``AbductionError`` with
    it when the engine was asked for by name).
    """

    options: Mapping[str, Any] = {}

    def refusal(self, info: Mapping[str, SiteInfo], latents: list[str]) -> str | None:
        """Why this engine cannot infer ``latents`` (``info``: every site's facts);
        ``None`` when it can."""
        return None

    def posterior(
        self, problem: Problem, rng_key: jax.Array, num_samples: int, **options
    ) -> Mapping[str, jax.Array]:
        """Draws ``(num_samples, *shape)`` per latent site: a dict, or a
        :class:`Posterior` to report chains, diagnostics or the engine that ran."""
        raise NotImplementedError


def _marginal_candidate(info, discrete) -> bool:
    """Discrete latents NUTS can sum out (NumPyro's enumeration) and elimination can
    draw back: scalar, of finite support."""
    return all(info[n].support is not None and info[n].batch_shape == () for n in discrete)


def discrete_refusal(method: str, discrete: list[str]) -> str:
    return (
        f"method={method!r} cannot infer the discrete latent site(s) {discrete} "
        "(a gradient-based posterior over discrete values is wrong). Use "
        "method='enumeration' or 'gibbs', or method='auto'."
    )


def moving_refusal(method: str, info, latents: list[str]) -> str | None:
    """Why NUTS or SMC, which move continuous latents and sum discrete ones out
    beside them, cannot serve ``latents``; ``None`` when they can."""
    discrete = [n for n in latents if info[n].discrete]
    if discrete and len(discrete) == len(latents):
        return (
            f"method={method!r} cannot infer the discrete latent site(s) {discrete}: it "
            "moves continuous latents (discrete ones it sums out beside them), and there "
            "are none. Use method='enumeration' or 'auto'."
        )
    if discrete and not _marginal_candidate(info, discrete):
        return (
            f"method={method!r} sums discrete latent sites out of the density only when "
            f"they are scalars of finite support; {discrete} are not. Use method='gibbs'."
        )
    return None
