"""Inference and learning engines: abduction (exact, enumeration, NUTS, SVI,
Gibbs), SVI and adversarial (WGAN-GP) training, and the training loop they
share (progress, checkpoints, resume, NaN detection, sharding)."""

from probcausal.infer.abduction import (
    METHODS,
    SiteInfo,
    choose_method,
    latent_ancestors,
    model_info,
    posterior_latents,
)
from probcausal.infer.adversarial import WGANGP, WGANGPState, wasserstein_1d
from probcausal.infer.svi import fit_svi
from probcausal.infer.training import FitResult, data_mesh, fit, replicate, shard_batch

__all__ = [
    "METHODS",
    "WGANGP",
    "FitResult",
    "SiteInfo",
    "WGANGPState",
    "choose_method",
    "data_mesh",
    "fit",
    "fit_svi",
    "latent_ancestors",
    "model_info",
    "posterior_latents",
    "replicate",
    "shard_batch",
    "wasserstein_1d",
]
