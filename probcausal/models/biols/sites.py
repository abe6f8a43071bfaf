"""The NumPyro sites every BIOLS objective shares: the latent SCM's priors (and
its order) and their mean-field Normal posterior."""

from __future__ import annotations

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from probcausal.models.biols import likelihood as lik

__all__ = ["latent_scm_guide", "latent_scm_sites"]


def latent_scm_sites(d: int, dtype, perm=None, order_temperature: float = 0.2):
    """The priors over the lower-triangular weights ``L`` (Laplace(0, 1)) and the
    log noise scales (Normal(0, 1)), and ``W = (P L Pᵀ)ᵀ`` as a deterministic
    site. ``perm`` is the known order's permutation matrix; ``None`` draws it from
    a Gumbel-Sinkhorn distribution over the ``order_logits`` parameter (hard
    Hungarian sample, straight-through gradient). Returns ``(W, σ)``."""
    lower = numpyro.sample("L", dist.Laplace(0.0, 1.0).expand([d * (d - 1) // 2]).to_event(1))
    log_sigma = numpyro.sample("log_sigma", dist.Normal(0.0, 1.0).expand([d]).to_event(1))
    if perm is None:
        logits = numpyro.param("order_logits", jnp.zeros((d, d), dtype))
        perm = lik.gumbel_sinkhorn_sample(numpyro.prng_key(), logits, order_temperature)
    weights = numpyro.deterministic("W", lik.weights_from_order(lower, perm, d))
    return weights, jnp.exp(log_sigma)


def latent_scm_guide(d: int, dtype, init_scale: float = 0.05):
    """The mean-field Normal posterior over ``L`` and ``log_sigma`` (what
    ``AutoNormal`` with ``init_to_median`` builds: both priors' medians are zero),
    written out so that its set-up needs no gradient of the model (``AutoNormal``
    compiles one to validate its starting point)."""
    for name, size in (("L", d * (d - 1) // 2), ("log_sigma", d)):
        loc = numpyro.param(f"{name}_auto_loc", jnp.zeros(size, dtype))
        scale = numpyro.param(
            f"{name}_auto_scale",
            jnp.full(size, init_scale, dtype),
            constraint=dist.constraints.softplus_positive,
        )
        numpyro.sample(name, dist.Normal(loc, scale).to_event(1))
