"""Modular-DCM (Rahman & Kocaoglu, ICML 2024): deep causal generative models
trained module by module over the c-components of an ADMG.

This package holds the training order (:func:`training_modules`): which
variables each module trains, which joint it matches, which parents it reads
from data, and in what order.
"""

from probcausal.models.modular_dcm.order import (
    PretrainedMechanismError,
    TrainingModule,
    check_pretrained,
    h_graph,
    training_modules,
)

__all__ = [
    "PretrainedMechanismError",
    "TrainingModule",
    "check_pretrained",
    "h_graph",
    "training_modules",
]
