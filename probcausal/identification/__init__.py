"""Identification: ADMGs, latent projection, the complete ID algorithm, estimands."""

from probcausal.identification.admg import ADMG, CyclicGraphError
from probcausal.identification.estimand import Estimand, Factor, joint_table
from probcausal.identification.id_algorithm import NotIdentifiableError, identify

__all__ = [
    "ADMG",
    "CyclicGraphError",
    "Estimand",
    "Factor",
    "NotIdentifiableError",
    "identify",
    "joint_table",
]
