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
from probcausal.handlers.stack import isolated
from probcausal.infer.abduction._base import (
    Engine,
    Posterior,
    moving_refusal,
)
from probcausal.infer.abduction.enumeration import _eliminate


def _mcmc(inner, method, latents, key, num_samples, mcmc_options, args, kw):
    """NUTS (or DiscreteHMCGibbs) with several chains run vectorized from dispersed
    starting points (NumPyro's uniform initialisation in [-2, 2] on the unconstrained
    scale, a key per chain); R-hat and ESS per latent site. ``mcmc_options``:
    ``(num_warmup, num_chains, progress_bar)``."""
    from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

    num_warmup, num_chains, progress = mcmc_options
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


def _marginal_nuts(problem, key, num_samples, mcmc_options):
    """NUTS over the continuous latents with the discrete ones summed out of the
    density (NumPyro's parallel enumeration), then the discrete latents drawn
    exactly given each continuous draw (variable elimination). Unlike Gibbs, the
    chains never stick at one discrete configuration. A model whose code does not
    broadcast over enumerated values falls back to DiscreteHMCGibbs."""
    from numpyro.contrib.funsor import config_enumerate

    p, args, kwargs = problem, problem.args, problem.kwargs
    k_mcmc, k_discrete = jax.random.split(key)
    inner = p.inference_model()
    try:
        with isolated():
            enumerated = config_enumerate(inner)
            post = _mcmc(
                enumerated, "nuts", p.continuous, k_mcmc, num_samples, mcmc_options, args, kwargs
            )
        draws = _eliminate(
            p.model,
            p.info,
            p.evidence,
            p.discrete,
            k_discrete,
            num_samples,
            args,
            kwargs,
            given=dict(post),
        )
    except (ValueError, TypeError, IndexError):
        draws = None
    if draws is None:
        with isolated():
            post = _mcmc(inner, "gibbs", p.latents, key, num_samples, mcmc_options, args, kwargs)
        post.method = "gibbs"
        return post
    return Posterior({**post, **draws}, chains=post.chains, diagnostics=post.diagnostics)


_MCMC_OPTIONS = {"num_warmup": 500, "num_chains": 4, "progress_bar": False}


class _Chains(Engine):
    """MCMC chains of NumPyro's ``kernel`` ("nuts" or "gibbs")."""

    options = _MCMC_OPTIONS
    kernel = ""

    def posterior(self, problem, rng_key, num_samples, num_warmup, num_chains, progress_bar):
        options = (num_warmup, num_chains, progress_bar)
        if self.kernel == "nuts" and problem.discrete:
            return _marginal_nuts(problem, rng_key, num_samples, options)
        inner, p = problem.inference_model(), problem
        return _mcmc(inner, self.kernel, p.latents, rng_key, num_samples, options, p.args, p.kwargs)


class GibbsEngine(_Chains):
    """DiscreteHMCGibbs (``"gibbs"``): discrete latents of any support, in plates."""

    kernel = "gibbs"


class NUTSEngine(_Chains):
    """NUTS, several vectorized chains (``"nuts"``); discrete latents summed out."""

    kernel = "nuts"

    def refusal(self, info, latents):
        return moving_refusal("nuts", info, latents)
