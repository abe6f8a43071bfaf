"""Adaptive tempered sequential Monte Carlo: the abduction engine for multimodal
posteriors.

Particles start at the prior of the latent sites and move through the tempered
targets ``p(z) p(evidence | z)^beta``, ``beta`` from 0 to 1. Each stage raises
``beta`` as far as keeps the effective sample size of the reweighted particles at
half their number (bisection), resamples them (systematic) and moves them with
random-walk Metropolis steps on the unconstrained scale, the proposal scaled by
the particles' own spread. Unlike a single MCMC chain, the particle population
weighs separated modes by their posterior mass (Del Moral, Doucet & Jasra 2006).
It suits a few latent values per query; many per-unit latents in a plate are
better served by ``method="nuts"`` or ``"svi"``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from numpyro.distributions import biject_to
from numpyro.handlers import seed, substitute, trace

from probcausal.errors import AbductionError

__all__ = ["tempered_smc"]


def _systematic(key, log_w, n):
    w = jax.nn.softmax(log_w)
    u = (jax.random.uniform(key) + jnp.arange(n)) / n
    return jnp.clip(jnp.searchsorted(jnp.cumsum(w), u), 0, log_w.shape[0] - 1)


def _ess(log_w):
    w = jax.nn.softmax(log_w)
    return 1.0 / jnp.sum(w**2)


def _next_beta(beta, lik, n: int):
    """The next temperature: the largest in ``(beta, 1]`` whose incremental weights
    keep an effective sample size of ``n / 2`` (bisection); always a step forward."""
    lik = jnp.where(jnp.isfinite(lik), lik, -jnp.inf)

    def ess_at(b):
        return _ess((b - beta) * lik)

    lo, hi = beta, jnp.asarray(1.0)
    ok_at_one = ess_at(hi) >= 0.5 * n

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        good = ess_at(mid) >= 0.5 * n
        return jnp.where(good, mid, lo), jnp.where(good, hi, mid)

    lo, _ = jax.lax.fori_loop(0, 40, body, (lo, hi))
    # always progress, if only a little: ESS may be below target at any step
    return jnp.where(ok_at_one, 1.0, jnp.maximum(lo, beta + 1e-6))


def _moves(key, particles, prior, lik, beta, log_densities, steps: int):
    """``steps`` random-walk Metropolis moves of every particle at temperature
    ``beta``, the step scaled to the particles' spread."""
    n, dim = particles.shape
    scale = 2.38 / jnp.sqrt(dim) * (jnp.std(particles, axis=0) + 1e-6)

    def move(carry, k):
        x, prior, lik = carry
        k_prop, k_acc = jax.random.split(k)
        prop = x + scale * jax.random.normal(k_prop, x.shape)
        p_prior, p_lik = jax.vmap(log_densities)(prop)
        log_a = (p_prior + beta * p_lik) - (prior + beta * lik)
        log_a = jnp.where(jnp.isfinite(log_a), log_a, -jnp.inf)
        accept = jnp.log(jax.random.uniform(k_acc, (n,))) < log_a
        x = jnp.where(accept[:, None], prop, x)
        return (x, jnp.where(accept, p_prior, prior), jnp.where(accept, p_lik, lik)), None

    out, _ = jax.lax.scan(move, (particles, prior, lik), jax.random.split(key, steps))
    return out


def _densities(inner, latents, transforms, unravel, args, kwargs, densities):
    """``flat unconstrained latents -> (log prior + log Jacobian, log likelihood)``."""

    def log_densities(flat):
        z_unc = unravel(flat)
        z = {s: transforms[s](z_unc[s]) for s in latents}
        jac = sum(jnp.sum(transforms[s].log_abs_det_jacobian(z_unc[s], z[s])) for s in latents)
        if densities is not None:
            prior, lik = densities(z)
            return prior + jac, lik
        tr = trace(seed(substitute(inner, z), 0)).get_trace(*args, **kwargs)
        prior = sum(jnp.sum(tr[s]["fn"].log_prob(z[s])) for s in latents)
        lik = sum(
            jnp.sum(site["fn"].log_prob(site["value"]))
            for name, site in tr.items()
            if site["type"] == "sample" and name not in latents and site["is_observed"]
        )
        return prior + jac, lik

    return log_densities


def tempered_smc(
    inner,
    latents,
    key,
    num_samples: int,
    args=(),
    kwargs=None,
    num_particles: int | None = None,
    num_mcmc_steps: int = 20,
    max_stages: int = 200,
    densities=None,
):
    """Posterior draws ``site -> (num_samples, *shape)`` of ``latents`` under
    ``inner`` (the conditioned model whose only free sites are the latents).

    ``densities``: ``values -> (log prior, log likelihood)`` of the latents' values,
    where the model's own sums are not them (discrete latents summed out); the
    particles start from prior draws of ``inner`` either way."""
    kwargs = kwargs or {}
    n = max(int(num_particles or 0), num_samples, 2000)
    proto = trace(seed(inner, 0)).get_trace(*args, **kwargs)
    transforms = {s: biject_to(proto[s]["fn"].support) for s in latents}
    _, unravel = ravel_pytree({s: transforms[s].inv(proto[s]["value"]) for s in latents})
    log_densities = _densities(inner, latents, transforms, unravel, args, kwargs, densities)

    def prior_draw(k):
        tr = trace(seed(inner, k)).get_trace(*args, **kwargs)
        return ravel_pytree({s: transforms[s].inv(tr[s]["value"]) for s in latents})[0]

    def stage(state):
        key, particles, prior, lik, beta, count = state
        key, k_res, k_move = jax.random.split(key, 3)
        new_beta = _next_beta(beta, lik, n)
        log_w = jnp.where(jnp.isfinite(lik), (new_beta - beta) * lik, -jnp.inf)
        idx = _systematic(k_res, log_w, n)
        particles, prior, lik = _moves(
            k_move, particles[idx], prior[idx], lik[idx], new_beta, log_densities, num_mcmc_steps
        )
        return key, particles, prior, lik, new_beta, count + 1

    def run(key):
        k0, key = jax.random.split(key)
        particles = jax.vmap(prior_draw)(jax.random.split(k0, n))
        prior, lik = jax.vmap(log_densities)(particles)
        state = (key, particles, prior, lik, jnp.asarray(0.0), jnp.asarray(0))
        going = lambda state: (state[4] < 1.0) & (state[5] < max_stages)  # noqa: E731
        key, particles, prior, lik, beta, count = jax.lax.while_loop(going, stage, state)
        pick = jax.random.choice(key, n, (num_samples,), replace=n < num_samples)
        chosen = jax.vmap(unravel)(particles[pick])
        values = {s: jax.vmap(transforms[s])(chosen[s]) for s in latents}
        return values, beta, count, jnp.all(jnp.isfinite(lik))

    values, beta, count, finite = jax.jit(run)(key)
    if float(beta) < 1.0:
        raise AbductionError(
            f"method='smc' reached only beta={float(beta):.3g} of 1 in {int(count)} stages "
            f"for the latent sites {latents}: the evidence is very informative. Raise "
            "`num_particles`, or use method='nuts'."
        )
    if not bool(finite):
        raise AbductionError(
            f"method='smc': the evidence has zero likelihood for some posterior particles of "
            f"{latents}; check that the evidence is possible under the model."
        )
    return values
