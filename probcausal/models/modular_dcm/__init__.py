"""Modular-DCM (Rahman & Kocaoglu, ICML 2024): deep causal generative models
trained module by module over the c-components of an ADMG.

:class:`ModularDCM` builds the model (one generator per variable, a shared
noise per bidirected edge) and trains it; :func:`training_modules` gives the
modules: which variables each trains, which joint it matches, which parents it
reads from data, and in what order.
"""

from probcausal.models.modular_dcm.model import Continuous, Discrete, Image, ModularDCM
from probcausal.models.modular_dcm.order import (
    PretrainedMechanismError,
    TrainingModule,
    check_pretrained,
    h_graph,
    training_modules,
)

__all__ = [
    "Continuous",
    "Discrete",
    "Image",
    "ModularDCM",
    "PretrainedMechanismError",
    "TrainingModule",
    "check_pretrained",
    "h_graph",
    "training_modules",
]
