"""Tempered SMC for multimodal posteriors, with discrete latents summed out by
variable elimination."""

from __future__ import annotations

import jax

from probcausal.errors import (
    AbductionError,
)
from probcausal.handlers.stack import isolated
from probcausal.infer.abduction._base import (
    Engine,
    Posterior,
    _frozen,
    moving_refusal,
)
from probcausal.infer.abduction.enumeration import _eliminate, _enumerated_trace, _factors
from probcausal.infer.elimination import eliminate, elimination_order
from probcausal.infer.smc import tempered_smc


def _marginal_smc(problem, key, num_samples, num_particles):
    """Tempered SMC over the continuous latents with the discrete ones summed out by
    variable elimination: the prior ``p(z)`` and likelihood ``p(e | z)`` are both
    sums over the discrete latents (a mixture has several modes that chains cannot
    weigh), then the discrete latents drawn exactly given each continuous draw."""
    model, info, evidence, latents = problem.model, problem.info, problem.evidence, problem.latents
    args, kwargs, discrete = problem.args, problem.kwargs, problem.discrete
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
    inner = problem.inference_model()
    with isolated():
        post = tempered_smc(
            inner,
            problem.continuous,
            k_smc,
            num_samples,
            args,
            kwargs,
            num_particles,
            densities=densities,
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


class TemperedSMC(Engine):
    """Tempered SMC (``"smc"``): weighs the modes of a multimodal posterior."""

    options = {"num_particles": None}

    def refusal(self, info, latents):
        return moving_refusal("smc", info, latents)

    def posterior(self, problem, rng_key, num_samples, num_particles):
        if problem.discrete:
            return _marginal_smc(problem, rng_key, num_samples, num_particles)
        inner = problem.inference_model()
        return tempered_smc(
            inner,
            problem.latents,
            rng_key,
            num_samples,
            problem.args,
            problem.kwargs,
            num_particles,
        )
