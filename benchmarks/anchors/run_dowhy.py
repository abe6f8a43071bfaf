"""DoWhy-gcm on the shared suite, in its own environment.

The SCMs are the suite's own, not fitted: each mechanism is an
``AdditiveNoiseModel`` whose prediction model returns the known function, with
``ScipyDistribution`` noise, in an ``InvertibleStructuralCausalModel``.
Counterfactuals use ``gcm.counterfactual_samples`` (exact abduction by inverting
each mechanism on fully observed rows).

``.bench/dowhy/bin/python run_dowhy.py --query KEY --json OUT``.
"""

from __future__ import annotations

import os
import sys
import time
import warnings

T0 = time.perf_counter()
import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from dowhy import gcm  # noqa: E402
from dowhy.gcm.ml.classification import ClassificationModel  # noqa: E402
from dowhy.gcm.ml.prediction_model import PredictionModel  # noqa: E402
from scipy import stats  # noqa: E402

IMPORT_S = time.perf_counter() - T0

sys.path.insert(0, os.path.dirname(__file__))
import spec  # noqa: E402

warnings.filterwarnings("ignore")
gcm.config.disable_progress_bars()


class Known(PredictionModel):
    """A prediction model that is the known mechanism: ``f(parents)``, columns in
    gcm's parent order (sorted names)."""

    def __init__(self, f):
        self.f = f

    def fit(self, X, Y):
        pass

    def predict(self, X):
        return np.asarray(self.f(np.asarray(X, dtype=np.float64)), dtype=np.float64).reshape(-1, 1)

    def clone(self):
        return Known(self.f)


class KnownClasses(ClassificationModel):
    def __init__(self, logits_of, classes):
        self.logits_of, self._classes = logits_of, classes

    def fit(self, X, Y):
        pass

    def predict(self, X):
        return np.argmax(self.predict_probabilities(X), axis=1).reshape(-1, 1)

    def predict_probabilities(self, X):
        a = self.logits_of(np.asarray(X, dtype=np.float64))
        p = np.exp(a - a.max(1, keepdims=True))
        return p / p.sum(1, keepdims=True)

    @property
    def classes(self):
        return self._classes

    def clone(self):
        return KnownClasses(self.logits_of, self._classes)


def normal():
    return gcm.ScipyDistribution(stats.norm, loc=0.0, scale=1.0)


def anm(f):
    return gcm.AdditiveNoiseModel(prediction_model=Known(f), noise_model=normal())


def encouragement_scm():
    scm = gcm.InvertibleStructuralCausalModel(nx.DiGraph([("x", "h"), ("x", "y"), ("h", "y")]))
    scm.set_causal_mechanism("x", normal())
    scm.set_causal_mechanism("h", anm(lambda X: spec.H_COEF * X[:, 0]))
    # parents of y in gcm's order: (h, x)
    scm.set_causal_mechanism("y", anm(lambda X: spec.HY_COEF * X[:, 0] + spec.XY_COEF * X[:, 1]))
    return known(scm)


def mediation_scm():
    scm = gcm.InvertibleStructuralCausalModel(nx.DiGraph([("x", "m"), ("x", "y"), ("m", "y")]))
    scm.set_causal_mechanism("x", normal())
    scm.set_causal_mechanism("m", anm(lambda X: spec.MED_A * X[:, 0]))
    # parents of y: (m, x)
    scm.set_causal_mechanism("y", anm(lambda X: spec.MED_B * X[:, 0] + spec.MED_C * X[:, 1]))
    return known(scm)


def categorical_scm():
    scm = gcm.InvertibleStructuralCausalModel(nx.DiGraph([("z", "c"), ("z", "y"), ("c", "y")]))
    scm.set_causal_mechanism("z", normal())
    logits = lambda X: spec.categorical_logits(X[:, 0])  # noqa: E731
    scm.set_causal_mechanism("c", gcm.ClassifierFCM(KnownClasses(logits, [0, 1, 2])))
    beta = spec.CAT_BETA
    scm.set_causal_mechanism(
        "y", anm(lambda X: beta[X[:, 0].astype(int)] + spec.CAT_Z * X[:, 1])
    )  # parents of y: (c, z)
    return known(scm)


def known(scm):
    """Mark the mechanisms as given for this graph (gcm otherwise asks for ``fit``,
    which would re-estimate them from data)."""
    from dowhy.gcm.causal_models import PARENTS_DURING_FIT
    from dowhy.graph import get_ordered_predecessors

    for node in scm.graph.nodes:
        scm.graph.nodes[node][PARENTS_DURING_FIT] = get_ordered_predecessors(scm.graph, node)
    return scm


def frame(q):
    return pd.DataFrame({k: v.astype(np.float64) for k, v in spec.data_for(q).items()})


def full_evidence(q):
    scm, df = encouragement_scm(), frame(q)
    call = lambda: gcm.counterfactual_samples(scm, {"h": lambda h: 2.0}, observed_data=df)  # noqa: E731
    return call, lambda out: out["y"].to_numpy(), "counterfactual_samples"


def multi_world(q):
    scm, df = encouragement_scm(), frame(q)

    def call():
        worlds = [
            gcm.counterfactual_samples(scm, {"h": lambda h, a=a: a}, observed_data=df)["y"]
            for a in spec.MULTI_ACTIONS
        ]
        return np.stack([w.to_numpy() for w in worlds], -1)

    return call, lambda y: y, "counterfactual_samples, once per world"


def categorical_query(q):
    scm, df = categorical_scm(), frame(q)
    call = lambda: gcm.counterfactual_samples(scm, {"c": lambda c: 2}, observed_data=df)  # noqa: E731
    try:
        call()
    except Exception as e:  # noqa: BLE001 - the tool's own refusal is the finding
        raise NotImplementedError(
            "counterfactual_samples abducts the noise of every node, and a categorical "
            f"node (ClassifierFCM) is not invertible: {type(e).__name__}: {e}"
        ) from None
    return call, lambda out: out["y"].to_numpy(), "counterfactual_samples"


def partial_evidence(q):
    raise NotImplementedError(
        "gcm.counterfactual_samples needs every node observed (it inverts each mechanism "
        "on the factual row); it has no posterior over an unobserved parent."
    )


def mediation_query(q):
    raise NotImplementedError(
        "gcm has no natural-effect query, and the nested counterfactual Y(t, M(c)) cannot "
        "be composed: an intervention is a function of the node's value in the same world "
        "(holding m with `lambda m: m` keeps M(t), not M(c))."
    )


BUILDERS = {
    "full_evidence": full_evidence,
    "multi_world": multi_world,
    "categorical": categorical_query,
    "partial_evidence": partial_evidence,
    "mediation_linear": mediation_query,
    "mediation_logistic": mediation_query,
}


def run_one(q, import_s):
    seed = lambda: np.random.seed(0)  # noqa: E731
    return spec.build_and_measure("dowhy", BUILDERS, q, import_s, seed=seed, packages=("dowhy",))


if __name__ == "__main__":
    spec.runner_main("dowhy", run_one, IMPORT_S)
