"""AVICI (Lorch et al., 2022): amortized causal structure learning.

A transformer over (samples x variables), trained on data sets simulated from
random SCMs (:mod:`probcausal.data`), predicts edge probabilities for a new data set
in one forward pass. :func:`discover` (``pc.discover``) is the user entry point.
"""

from probcausal.models.avici.discover import Discovery, acyclic_projection, discover, predict
from probcausal.models.avici.io import PRETRAINED, load_avici, pretrained, save_avici
from probcausal.models.avici.model import AVICI, edge_probabilities
from probcausal.models.avici.train import AVICIState, acyclicity, avici_loss, train_avici

__all__ = [
    "AVICI",
    "AVICIState",
    "Discovery",
    "PRETRAINED",
    "acyclic_projection",
    "acyclicity",
    "avici_loss",
    "discover",
    "edge_probabilities",
    "load_avici",
    "predict",
    "pretrained",
    "save_avici",
    "train_avici",
]
