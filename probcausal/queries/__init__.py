"""Interventional and counterfactual queries, effects, and ArviZ conversion."""

from probcausal.queries.counterfactual import CounterfactualResult, counterfactual
from probcausal.queries.effects import (
    ate,
    cate,
    ett,
    mediation,
    probability_of_necessity,
    probability_of_necessity_and_sufficiency,
    probability_of_sufficiency,
)
from probcausal.queries.inference_data import to_inference_data
from probcausal.queries.interventional import InterventionalResult, interventional

__all__ = [
    "CounterfactualResult",
    "InterventionalResult",
    "ate",
    "cate",
    "counterfactual",
    "ett",
    "interventional",
    "mediation",
    "probability_of_necessity",
    "probability_of_necessity_and_sufficiency",
    "probability_of_sufficiency",
    "to_inference_data",
]
