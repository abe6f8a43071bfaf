"""Identification: ADMGs, latent projection, the complete ID algorithm, estimands."""

from probcausal.identification.admg import ADMG, CyclicGraphError
from probcausal.identification.criteria import (
    adjustment_estimand,
    backdoor_adjustment_sets,
    frontdoor_estimand,
    frontdoor_set,
)
from probcausal.identification.estimand import Estimand, Factor, joint_table
from probcausal.identification.id_algorithm import NotIdentifiableError, identify

__all__ = [
    "ADMG",
    "CyclicGraphError",
    "Estimand",
    "Factor",
    "NotIdentifiableError",
    "adjustment_estimand",
    "backdoor_adjustment_sets",
    "frontdoor_estimand",
    "frontdoor_set",
    "identify",
    "joint_table",
]
