"""Scores of learned causal structure and latents, shared by the research systems.

* :func:`shd`: structural Hamming distance between two graphs;
* :func:`auroc`: area under the ROC curve of edge scores against a true graph;
* :func:`scores`: AUROC, AUPRC, SHD and F1 of one score matrix;
* :func:`mcc`: mean correlation coefficient between estimated and true latents
  after the best one-to-one matching (Hungarian algorithm).

Graphs are ``(d, d)`` arrays with ``[i, j]`` the edge ``i -> j``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["auroc", "mcc", "scores", "shd"]


def _pair_states(adjacency: np.ndarray):
    """Unordered pair -> state: 0 none, 1 i->j, 2 j->i, 3 both; ``undirected`` marks
    CPDAG edges given as 0.5 both ways."""
    a = adjacency
    upper = np.triu_indices(a.shape[0], 1)
    fwd, bwd = a[upper], a.T[upper]
    undirected = (fwd == 0.5) & (bwd == 0.5)
    state = (fwd > 0.5).astype(int) + 2 * (bwd > 0.5).astype(int)
    return state, undirected


def shd(predicted: np.ndarray, truth: np.ndarray) -> int:
    """Structural Hamming distance; ``predicted`` holds 1 for ``i -> j`` and 0.5 both
    ways for an undirected edge.

    Examples
    --------
    >>> import numpy as np
    >>> from probcausal.metrics import shd
    >>> truth = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    >>> shd(truth.T, truth), shd(np.zeros((3, 3)), truth), shd(truth, truth)
    (2, 2, 0)
    """
    p_state, p_und = _pair_states(np.asarray(predicted, float))
    t_state, _ = _pair_states(np.asarray(truth, float))
    edges = {0: 0, 1: 1, 2: 1, 3: 2}  # a 2-cycle is two edges
    total = 0
    for p, undirected, t in zip(p_state, p_und, t_state, strict=True):
        if undirected:
            total += 1  # an extra edge, or one left unoriented
        elif p == t:
            continue
        elif p == 0 or t == 0:
            total += edges[p] + edges[t]  # missing or extra edges
        else:
            total += 1  # reversed
    return total


def scores(predicted: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """AUROC, AUPRC, SHD and F1 of one predicted score matrix against the truth;
    the predicted graph is the scores above ``threshold`` (a score of exactly 0.5
    both ways is an undirected edge)."""
    from sklearn.metrics import average_precision_score  # the experiments' extra

    truth = np.asarray(truth)
    d = truth.shape[0]
    off = ~np.eye(d, dtype=bool)
    y, s = (truth[off] != 0).astype(int), np.asarray(predicted, float)[off]
    has_both = 0 < y.sum() < y.size
    auprc = average_precision_score(y, s) if has_both else float("nan")
    binary = np.where(np.isclose(predicted, 0.5), 0.5, (np.asarray(predicted) > threshold) * 1.0)
    predicted_edges = binary[off] >= 0.5
    tp = (predicted_edges & (y == 1)).sum()
    precision = tp / max(predicted_edges.sum(), 1)
    recall = tp / max(y.sum(), 1)
    f1 = 0.0 if tp == 0 else 2 * precision * recall / (precision + recall)
    return {
        "auroc": auroc(predicted, truth),
        "auprc": auprc,
        "shd": shd(binary, truth),
        "f1": float(f1),
    }


def auroc(edge_scores: np.ndarray, truth: np.ndarray) -> float:
    """Area under the ROC curve of ``edge_scores`` (e.g. posterior edge
    probabilities) over the ``d (d - 1)`` ordered pairs against the edges of
    ``truth``; NaN when the truth has no edge or every edge.

    Examples
    --------
    >>> import numpy as np
    >>> from probcausal.metrics import auroc
    >>> truth = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    >>> auroc(truth * 0.9 + 0.05, truth), auroc(truth.T * 1.0, truth)
    (1.0, 0.25)
    """
    from scipy.stats import rankdata

    truth = np.asarray(truth)
    off = ~np.eye(truth.shape[0], dtype=bool)
    y = truth[off] != 0
    positives, negatives = int(y.sum()), int((~y).sum())
    if not positives or not negatives:
        return float("nan")
    # Mann-Whitney: the chance that an edge outscores a non-edge, ties counting half
    ranks = rankdata(np.asarray(edge_scores, float)[off])
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def mcc(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute Pearson correlation between the columns of ``estimate``
    ``(n, d)`` (e.g. posterior means E[z | x]) and of ``truth`` ``(n, d)``, after
    matching each estimated latent to one true latent so that the sum of the
    correlations is largest (Hungarian algorithm). 1 for latents recovered up to
    permutation, scale and sign.

    Examples
    --------
    >>> import numpy as np
    >>> from probcausal.metrics import mcc
    >>> z = np.random.default_rng(0).normal(size=(500, 3))
    >>> round(mcc(-2.0 * z[:, ::-1] + 1.0, z), 6)
    1.0
    """
    from scipy.optimize import linear_sum_assignment

    estimate, truth = np.asarray(estimate, float), np.asarray(truth, float)
    if estimate.ndim != 2 or estimate.shape != truth.shape:
        raise ValueError(f"estimate {estimate.shape} and truth {truth.shape} must both be (n, d)")
    d = truth.shape[1]
    corr = np.abs(np.corrcoef(estimate.T, truth.T)[:d, d:])
    corr = np.nan_to_num(corr)  # a constant column correlates with nothing
    rows, cols = linear_sum_assignment(-corr)
    return float(corr[rows, cols].mean())
