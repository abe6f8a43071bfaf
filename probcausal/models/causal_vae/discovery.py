"""The concept graph from the labels: an exact score-based search.

The labels are observed, so their graph can be learned from them before any image
is seen. Each concept is regressed on each candidate parent set with polynomial
features (the mechanisms between concepts are nonlinear), scored by the Gaussian
BIC of the residuals, and the DAG of best total score is searched over every node
order, among the DAGs that keep the marginal independences an HSIC test finds
(two causes of a collider: their edges are then oriented). An edge that neither
tells apart (a covered edge, whose reversal is Markov equivalent) is oriented by
the additive-noise asymmetry and listed in :attr:`LabelGraph.by_noise`.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np

__all__ = ["LabelGraph", "learn_label_graph", "MAX_CONCEPTS"]

#: the search scores ``n 2^(n-1)`` parent sets and visits ``n!`` orders
MAX_CONCEPTS = 7


class LabelGraph(NamedTuple):
    """``adjacency`` ``(n, n)`` (``[i, j] = 1``: ``i -> j``) of the best DAG;
    ``by_noise``: the edges ``(i, j)`` whose reversal is Markov equivalent, so
    that their orientation rests on the additive-noise asymmetry alone; ``score``:
    the graph's BIC (higher is better)."""

    adjacency: np.ndarray
    by_noise: tuple[tuple[int, int], ...]
    score: float


def _polynomial(x, degree):
    """Every monomial of the columns of ``x`` up to ``degree``, the constant first."""
    cols = [np.ones(len(x))]
    for k in range(1, degree + 1):
        for combo in itertools.combinations_with_replacement(range(x.shape[1]), k):
            cols.append(np.prod(x[:, list(combo)], axis=1))
    return np.stack(cols, 1)


def _local_scores(u, degree, floor):
    n_rows, n = u.shape
    scores = {}
    for j in range(n):
        others = [i for i in range(n) if i != j]
        for size in range(n):
            for parents in itertools.combinations(others, size):
                if parents:
                    feats = _polynomial(u[:, parents], degree)
                else:
                    feats = np.ones((n_rows, 1))
                coef, *_ = np.linalg.lstsq(feats, u[:, j], rcond=None)
                var = max(float(np.mean((u[:, j] - feats @ coef) ** 2)), floor)
                loglik = -0.5 * n_rows * (np.log(2 * np.pi * var) + 1.0)
                scores[j, frozenset(parents)] = loglik - 0.5 * feats.shape[1] * np.log(n_rows)
    return scores


def _hsic_pvalue(a, b, rng, features=64, permutations=200, max_rows=2000):
    """A permutation p-value of the HSIC statistic of two standardized samples
    with Gaussian-kernel random Fourier features (bandwidth 1)."""
    if len(a) > max_rows:
        keep = rng.choice(len(a), max_rows, replace=False)
        a, b = a[keep], b[keep]
    w, phase = rng.normal(size=(2, features)), rng.uniform(0, 2 * np.pi, (2, features))
    fa = np.cos(a[:, None] * w[0] + phase[0])
    fb = np.cos(b[:, None] * w[1] + phase[1])
    fa, fb = fa - fa.mean(0), fb - fb.mean(0)

    def stat(fb):
        return float(np.sum((fa.T @ fb) ** 2))

    observed = stat(fb)
    null = [stat(fb[rng.permutation(len(fb))]) for _ in range(permutations)]
    return (1 + sum(v >= observed for v in null)) / (1 + permutations)


def _independent_pairs(u, alpha, rng):
    n = u.shape[1]
    return [
        (i, j)
        for i, j in itertools.combinations(range(n), 2)
        if _hsic_pvalue(u[:, i], u[:, j], rng) > alpha
    ]


def _best_dag(n, scores, independent):
    """The best-scoring DAG under which every pair in ``independent`` is
    d-separated given nothing (no shared ancestor, no directed path). Each node
    order is searched with each node, in turn, taking its best parent set among
    its predecessors that keeps the independences."""
    ranked = {}
    for j in range(n):
        sets = [(v, ps) for (k, ps), v in scores.items() if k == j]
        ranked[j] = sorted(sets, key=lambda t: -t[0])
    apart = {(i, j) for i, j in independent} | {(j, i) for i, j in independent}
    best = (-np.inf, None)
    for order in itertools.permutations(range(n)):
        placed, ancestors, total, parents = set(), {}, 0.0, {}
        for j in order:
            for value, ps in ranked[j]:
                if not ps <= placed:
                    continue
                anc = {j}.union(*(ancestors[p] for p in ps)) if ps else {j}
                if any((j, b) in apart and anc & ancestors[b] for b in placed):
                    continue  # j would share an ancestor with a node it is independent of
                ancestors[j], parents[j] = anc, ps
                total += value
                break
            placed.add(j)
        if total > best[0]:
            best = (total, dict(parents))
    adjacency = np.zeros((n, n), np.int64)
    for j, ps in best[1].items():
        for i in ps:
            adjacency[i, j] = 1
    return adjacency


def learn_label_graph(
    labels,
    *,
    degree: int = 4,
    alpha: float = 0.01,
    floor: float = 1e-2,
    seed: int = 0,
) -> LabelGraph:
    """The BIC-optimal DAG over the columns of ``labels`` ``(rows, n)``.

    Pairs of concepts that an HSIC permutation test (level ``alpha``, seeded
    by ``seed``) finds independent must be d-separated in it: labels that are
    exact functions of their causes (the pendulum's shadow) fit a reversed graph
    as well as the true one, and only the independence of the causes tells
    them apart.

    ``degree`` is the polynomial degree of the regressions, ``floor`` the least
    residual variance (in standardized units: labels that are exact functions of
    their parents are not scored as infinitely likely). An edge whose reversal
    is Markov equivalent is oriented by the additive-noise asymmetry: the
    direction whose regression residual is independent of its inputs.

    Examples
    --------
    >>> import numpy as np
    >>> from probcausal.models.causal_vae import learn_label_graph
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.uniform(-1, 1, (2, 2000))
    >>> c = np.sin(2 * a) + b**2 + 0.1 * rng.normal(size=2000)
    >>> learn_label_graph(np.stack([a, b, c], 1)).adjacency.tolist()
    [[0, 0, 1], [0, 0, 1], [0, 0, 0]]
    """
    u = np.asarray(labels, np.float64)
    if u.ndim != 2 or u.shape[1] < 2:
        raise ValueError(f"labels must be (rows, concepts) with 2 or more concepts, got {u.shape}")
    n = u.shape[1]
    if n > MAX_CONCEPTS:
        raise ValueError(
            f"the exact label-graph search takes at most {MAX_CONCEPTS} concepts, got {n}: "
            "give the graph as an adjacency matrix"
        )
    u = (u - u.mean(0)) / np.maximum(u.std(0), 1e-12)
    scores = _local_scores(u, degree, floor)
    independent = _independent_pairs(u, alpha, np.random.default_rng(seed))
    adjacency = _best_dag(n, scores, independent)
    adjacency, oriented = _orient_covered(u, adjacency, degree, np.random.default_rng(seed + 1))
    total = sum(scores[k, frozenset(np.flatnonzero(adjacency[:, k]).tolist())] for k in range(n))
    return LabelGraph(adjacency, tuple(oriented), float(total))


def _residual(u, j, parents, degree):
    feats = _polynomial(u[:, sorted(parents)], degree)
    coef, *_ = np.linalg.lstsq(feats, u[:, j], rcond=None)
    r = u[:, j] - feats @ coef
    return r / max(float(r.std()), 1e-12)


def _dependence(r, inputs, rng):
    """The largest HSIC p-value complement of the residual against each input."""
    return max(1.0 - _hsic_pvalue(r, inputs[:, k], rng) for k in range(inputs.shape[1]))


def _orient_covered(u, adjacency, degree, rng):
    """Orient each covered edge ``i -> j`` (``pa(j) = pa(i) + {i}``: its reversal
    is Markov equivalent, so neither the score nor the independences can tell)
    by the additive-noise asymmetry (Hoyer et al., 2009): keep the direction in
    which the regression residual is independent of the regressors."""
    adjacency = adjacency.copy()
    oriented = []
    for i, j in sorted(zip(*np.nonzero(adjacency), strict=True)):
        pa_i, pa_j = set(np.flatnonzero(adjacency[:, i])), set(np.flatnonzero(adjacency[:, j]))
        if pa_j != pa_i | {i}:
            continue
        forward = _dependence(_residual(u, j, pa_j, degree), u[:, sorted(pa_j)], rng)
        backward_parents = pa_i | {j}
        backward = _dependence(
            _residual(u, i, backward_parents, degree), u[:, sorted(backward_parents)], rng
        )
        if backward < forward:
            adjacency[i, j], adjacency[j, i] = 0, 1
            i, j = j, i
        oriented.append((int(i), int(j)))
    return adjacency, oriented
