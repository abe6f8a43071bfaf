"""Stochastic variational inference with an autoguide or a given (amortized) guide."""

from __future__ import annotations

import jax
import numpy as np
import optax
from numpyro.infer import SVI, Predictive, Trace_ELBO
from numpyro.infer.autoguide import AutoMultivariateNormal, AutoNormal

from probcausal.errors import (
    AbductionError,
)
from probcausal.infer.abduction._base import Engine, discrete_refusal

_MVN_MAX_DIM = 256


class SVIEngine(Engine):
    """SVI (``"svi"``): an autoguide fitted per query, or a given guide; an
    amortized guide with ``guide_params`` is not fitted at all."""

    options = {
        "svi_steps": 2000,
        "svi_learning_rate": 0.05,
        "guide": None,
        "guide_params": None,
        "progress_bar": False,
    }

    def refusal(self, info, latents):
        discrete = [n for n in latents if info[n].discrete]
        return discrete_refusal("svi", discrete) if discrete else None

    def posterior(
        self,
        problem,
        rng_key,
        num_samples,
        svi_steps,
        svi_learning_rate,
        guide,
        guide_params,
        progress_bar,
    ):
        p, latents, args, kwargs = problem, problem.latents, problem.args, problem.kwargs
        if hasattr(guide, "bind"):  # amortized guides read the evidence
            guide = guide.bind(p.evidence)
        if guide_params is not None:  # amortized and trained: no fitting per query
            if guide is None:
                raise AbductionError("guide_params needs a guide")
            samples = Predictive(guide, params=dict(guide_params), num_samples=num_samples)(
                rng_key, *args, **kwargs
            )
            return {n: samples[n] for n in latents}
        inner = p.inference_model()
        if guide is None:
            dim = sum(int(np.prod(p.info[n].shape)) for n in latents)
            guide = (AutoMultivariateNormal if dim <= _MVN_MAX_DIM else AutoNormal)(inner)
        # decay the step size to zero so the variational parameters settle
        schedule = optax.cosine_decay_schedule(svi_learning_rate, svi_steps)
        svi = SVI(inner, guide, optax.adam(schedule), Trace_ELBO(num_particles=4))
        k_fit, k_draw = jax.random.split(rng_key)
        result = svi.run(k_fit, svi_steps, *args, progress_bar=progress_bar, **kwargs)
        if not np.isfinite(np.asarray(result.losses[-1])):
            raise AbductionError(
                "SVI abduction diverged (non-finite ELBO); lower `svi_learning_rate` or "
                "use method='nuts'."
            )
        if hasattr(guide, "sample_posterior"):
            samples = guide.sample_posterior(
                k_draw, result.params, *args, sample_shape=(num_samples,), **kwargs
            )
        else:
            samples = Predictive(guide, params=result.params, num_samples=num_samples)(
                k_draw, *args, **kwargs
            )
        return {n: samples[n] for n in latents}
