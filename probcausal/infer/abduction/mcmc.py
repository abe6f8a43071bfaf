"""NUTS with several vectorized chains from dispersed starts (discrete latents
summed out, then drawn exactly given each draw), and DiscreteHMCGibbs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import MCMC, NUTS, DiscreteHMCGibbs

from probcausal.errors import (
    AbductionError,
)
from probcausal.handlers._stack import isolated
from probcausal.infer.abduction._base import (
    Engine,
    Posterior,
    _inference_model,
    moving_refusal,
)
from probcausal.infer.abduction.enumeration import _eliminate


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


_MCMC_OPTIONS = {"num_warmup": 500, "num_chains": 4, "progress_bar": False}


class NUTSEngine(Engine):
    """NUTS, several vectorized chains (``"nuts"``); discrete latents summed out."""

    options = _MCMC_OPTIONS

    def refusal(self, info, latents):
        return moving_refusal("nuts", info, latents)

    def posterior(self, problem, rng_key, num_samples, num_warmup, num_chains, progress_bar):
        p = problem
        if p.discrete:
            return _marginal_nuts(
                p.model,
                p.info,
                p.evidence,
                p.latents,
                rng_key,
                num_samples,
                (num_warmup, num_chains, progress_bar),
                p.args,
                p.kwargs,
            )
        inner = p.inference_model()
        return _mcmc(
            inner,
            "nuts",
            p.latents,
            rng_key,
            num_samples,
            num_warmup,
            num_chains,
            progress_bar,
            p.args,
            p.kwargs,
        )


class GibbsEngine(Engine):
    """DiscreteHMCGibbs (``"gibbs"``): discrete latents of any support, in plates."""

    options = _MCMC_OPTIONS

    def posterior(self, problem, rng_key, num_samples, num_warmup, num_chains, progress_bar):
        p = problem
        inner = p.inference_model()
        return _mcmc(
            inner,
            "gibbs",
            p.latents,
            rng_key,
            num_samples,
            num_warmup,
            num_chains,
            progress_bar,
            p.args,
            p.kwargs,
        )
