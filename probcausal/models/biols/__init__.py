"""BIOLS (Subramanian et al., 2022, "Learning Latent Structural Causal Models"):
Bayesian inference over a latent linear-Gaussian SCM (structure, weights, noise
scales) and its decoder from low-level data with known interventions.

:class:`BIOLS` fits the posterior; :mod:`~probcausal.models.biols.likelihood`
holds the pieces of its objective (weights from a node order, the
Gumbel-Sinkhorn permutation posterior, the collapsed likelihood).
"""

from probcausal.models.biols.model import BIOLS, biols_model

__all__ = ["BIOLS", "biols_model"]
