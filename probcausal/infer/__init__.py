"""Inference and learning engines: abduction (exact, enumeration, NUTS, SVI,
Gibbs), SVI and adversarial (WGAN-GP) training, and the training loop they
share (progress, checkpoints, resume, NaN detection, sharding)."""

from probcausal.infer.abduction import (
    METHODS,
    Engine,
    Posterior,
    Problem,
    choose_method,
    engines,
    posterior_latents,
    register_engine,
)
from probcausal.infer.adversarial import WGANGP, WGANGPState, wasserstein_1d
from probcausal.infer.svi import fit_svi
from probcausal.infer.training import FitResult, data_mesh, fit, replicate, shard_batch
from probcausal.sites import SiteInfo, latent_ancestors, model_info

__all__ = [
    "METHODS",
    "Engine",
    "Posterior",
    "Problem",
    "engines",
    "register_engine",
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
