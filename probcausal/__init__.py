"""probcausal: causal inference as a NumPyro extension.

Causal models are NumPyro programs. Handlers (:class:`do`, :class:`TwinWorld`,
:class:`MultiWorld`, :class:`observe`) give them interventional and
counterfactual meaning; queries (:func:`interventional`, :func:`counterfactual`,
effects) answer questions with exact abduction wherever the evidence allows, and
:func:`to_inference_data` hands the results to ArviZ.
"""

from probcausal import data, errors, handlers, identification, infer, mechanisms, nn, queries
from probcausal.causal_model import CausalModel, causal_model
from probcausal.compilation import use_persistent_cache
from probcausal.graph import graph
from probcausal.handlers import MultiWorld, TwinWorld, WorldValue, do, observe
from probcausal.identification import (
    ADMG,
    NotIdentifiableError,
    backdoor_adjustment_sets,
    frontdoor_set,
    identify,
)
from probcausal.models.avici import discover
from probcausal.models.biols import BIOLS
from probcausal.models.causal_vae import CausalVAE
from probcausal.models.modular_dcm import ModularDCM
from probcausal.queries import (
    CounterfactualResult,
    InterventionalResult,
    ate,
    cate,
    counterfactual,
    ett,
    interventional,
    mediation,
    probability_of_necessity,
    probability_of_necessity_and_sufficiency,
    probability_of_sufficiency,
    to_inference_data,
)

__version__ = "0.1.0"

# compiled programs persist on disk across processes (probcausal.compilation)
use_persistent_cache()

__all__ = [
    "ADMG",
    "CausalModel",
    "CounterfactualResult",
    "InterventionalResult",
    "ModularDCM",
    "BIOLS",
    "CausalVAE",
    "MultiWorld",
    "NotIdentifiableError",
    "TwinWorld",
    "WorldValue",
    "ate",
    "backdoor_adjustment_sets",
    "causal_model",
    "cate",
    "counterfactual",
    "data",
    "discover",
    "do",
    "errors",
    "ett",
    "frontdoor_set",
    "graph",
    "handlers",
    "identification",
    "identify",
    "infer",
    "interventional",
    "mechanisms",
    "mediation",
    "nn",
    "observe",
    "probability_of_necessity",
    "probability_of_necessity_and_sufficiency",
    "probability_of_sufficiency",
    "queries",
    "to_inference_data",
]
