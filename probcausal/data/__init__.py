"""Simulators of random causal models and offline data sets.

* :mod:`~probcausal.data.graphs`: Erdős–Rényi and scale-free DAG priors (networkx
  generators, and jittable JAX samplers of the same distributions).
* :mod:`~probcausal.data.scm`: random SCMs (linear or GP-like mechanisms, Gaussian,
  Laplace or Cauchy noise, additive or heteroscedastic) as probcausal causal
  models, and :func:`simulate`, a jitted batch simulator of observational and
  interventional data sets.
* :mod:`~probcausal.data.latent`: latent linear-Gaussian SCMs seen through a
  linear, MLP or block-image decoder, with known interventions (BIOLS's design).
* :mod:`~probcausal.data.concepts`: the Pendulum and Flow scenes of CausalVAE,
  rendered at any resolution, with their counterfactual truth.
* :func:`load_sachs`: the Sachs et al. (2005) flow-cytometry data, shipped.
"""

from probcausal.data.bif import NETWORKS, BayesianNetwork, bayesian_network, read_bif
from probcausal.data.concepts import ConceptData, Scene, flow_data, pendulum_data
from probcausal.data.graphs import GRAPH_PRIORS, random_graph, sample_dag
from probcausal.data.latent import LatentSCMData, latent_scm_data, render_blocks
from probcausal.data.sachs import load_sachs
from probcausal.data.scm import (
    SCM,
    Datasets,
    Domain,
    SCMParams,
    random_scm,
    sample_scm_params,
    scm_model,
    simulate,
    standardize,
)

__all__ = [
    "NETWORKS",
    "BayesianNetwork",
    "bayesian_network",
    "read_bif",
    "GRAPH_PRIORS",
    "SCM",
    "Datasets",
    "Domain",
    "SCMParams",
    "LatentSCMData",
    "ConceptData",
    "Scene",
    "flow_data",
    "pendulum_data",
    "latent_scm_data",
    "render_blocks",
    "load_sachs",
    "random_graph",
    "random_scm",
    "sample_dag",
    "sample_scm_params",
    "scm_model",
    "simulate",
    "standardize",
]
