"""Inference engines: abduction (exact, enumeration, NUTS, SVI, Gibbs)."""

from probcausal.infer.abduction import (
    METHODS,
    SiteInfo,
    choose_method,
    latent_ancestors,
    model_info,
    posterior_latents,
)

__all__ = [
    "METHODS",
    "SiteInfo",
    "choose_method",
    "latent_ancestors",
    "model_info",
    "posterior_latents",
]
