"""Rejection: prior draws whose (deterministic) evidence sites match exactly."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import Predictive

from probcausal.compilation import compiled, model_state, signature, split_static
from probcausal.errors import (
    AbductionError,
)
from probcausal.infer.abduction._base import (
    Engine,
)


def _rejection(problem, key, num_samples, max_draws, atol):
    """Exact posterior draws by rejection: run the model forward from the prior and
    keep the runs whose evidence sites equal the evidence (within ``atol``)."""
    model, info, evidence, latents = problem.model, problem.info, problem.evidence, problem.latents
    args, kwargs = problem.args, problem.kwargs
    from numpyro.distributions import Delta

    noisy = [n for n in evidence if not issubclass(info[n].family, Delta)]
    if noisy:
        raise AbductionError(
            f"method='rejection' matches the evidence exactly, so the evidence sites must "
            f"be deterministic (Delta) sites; {noisy} have a density. Use method='auto'."
        )

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


class Rejection(Engine):
    """Rejection from the prior (``"rejection"``), for deterministic evidence sites."""

    options = {"max_draws": 1_000_000, "atol": 1e-5}

    def posterior(self, problem, rng_key, num_samples, max_draws, atol):
        return _rejection(problem, rng_key, num_samples, max_draws, atol)
