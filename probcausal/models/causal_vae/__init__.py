"""CausalVAE (Yang et al., 2021): a VAE whose latent concepts follow a learned
SCM, supervised by concept labels; ``do`` on concepts generates images."""

from probcausal.models.causal_vae.discovery import LabelGraph, learn_label_graph
from probcausal.models.causal_vae.model import CausalVAE

__all__ = ["CausalVAE", "LabelGraph", "learn_label_graph"]
