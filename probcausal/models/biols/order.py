"""A starting node order for the permutation posterior, from estimated latents.

Under a linear-Gaussian SCM with known hard interventions, the log-likelihood
of a latent table ``z`` for a node order (every earlier node a possible parent,
weights at their least-squares values) decomposes into one regression per node:
``z_j`` on the nodes before it, over the rows that do not intervene on ``j``.
Observational data leave Markov-equivalent orders tied; the rows that cut a
node's incoming edges break the ties. Exact dynamic programming over the
subsets of nodes finds the best order up to :data:`EXACT_MAX` nodes; above, a
greedy backward pass (the node best explained as the last of those left, one at
a time) starts a local search that moves one node at a time to the position of
highest score until no move improves it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["order_scores", "best_order"]

EXACT_MAX = 12


class _Regressions:
    """Residual variances of ``z_j`` on any set of other latents, over the rows
    that do not intervene on ``j``, from one Gram matrix per node."""

    def __init__(self, z, targets):
        z = np.asarray(z, np.float64)
        n, d = z.shape
        design = np.column_stack([z, np.ones(n)])
        self.grams, self.rows = [], []
        for j in range(d):
            keep = ~np.asarray(targets)[:, j]
            self.grams.append(design[keep].T @ design[keep])
            self.rows.append(max(int(keep.sum()), 1))
        self.d = d

    def log_likelihood(self, j: int, parents) -> float:
        """The maximised Gaussian log-likelihood of ``z_j``'s free rows given
        ``parents`` (with an intercept)."""
        g, m = self.grams[j], self.rows[j]
        s = list(parents) + [self.d]
        g_ss = g[np.ix_(s, s)] + 1e-9 * np.eye(len(s))
        g_sj = g[s, j]
        rss = g[j, j] - g_sj @ np.linalg.solve(g_ss, g_sj)
        var = max(rss / m, 1e-12)
        return -0.5 * m * (np.log(2 * np.pi * var) + 1.0)


def order_scores(z, targets, order) -> float:
    """The log-likelihood of ``z`` for ``order`` (``order[k]`` the node at
    position ``k``), each node regressed on all the nodes before it."""
    reg = _Regressions(z, targets)
    return float(sum(reg.log_likelihood(j, order[:k]) for k, j in enumerate(order)))


def best_order(z, targets) -> np.ndarray:
    """The order of highest :func:`order_scores`: exact up to ``EXACT_MAX`` nodes
    (dynamic programming over subsets), greedy above.

    Examples
    --------
    >>> import jax, numpy as np
    >>> from probcausal.data import latent_scm_data
    >>> data = latent_scm_data(jax.random.key(0), num_latents=4, dim=10)
    >>> order = best_order(data.z, data.targets)
    >>> cause, effect = np.nonzero(data.adjacency)
    >>> bool((np.argsort(order)[cause] < np.argsort(order)[effect]).all())
    True
    """
    reg = _Regressions(z, targets)
    d = reg.d
    if d <= EXACT_MAX:
        return _exact(reg, d)
    left, order = list(range(d)), []
    while left:
        j = max(left, key=lambda j: reg.log_likelihood(j, [k for k in left if k != j]))
        order.insert(0, j)
        left.remove(j)
    return _insertion_search(reg, order)


def _score(reg, order):
    return sum(reg.log_likelihood(j, order[:k]) for k, j in enumerate(order))


def _insertion_search(reg, order, max_sweeps: int = 20):
    """Move single nodes to their best position while the score improves."""
    current = _score(reg, order)
    for _ in range(max_sweeps):
        improved = False
        for j in list(order):
            rest = [k for k in order if k != j]
            candidates = [rest[:p] + [j] + rest[p:] for p in range(len(order))]
            scores = [_score(reg, c) for c in candidates]
            p = int(np.argmax(scores))
            if scores[p] > current + 1e-9:
                order, current, improved = candidates[p], scores[p], True
        if not improved:
            break
    return np.asarray(order)


def _exact(reg, d):
    """``best[S]``: the best score of the first ``|S|`` positions holding the
    set ``S`` (a bitmask); the last of ``S`` is its node with the best score given
    the others."""
    size = 1 << d
    best = np.full(size, -np.inf)
    last = np.zeros(size, np.int64)
    best[0] = 0.0
    for s in range(1, size):
        members = [j for j in range(d) if s >> j & 1]
        for j in members:
            rest = s & ~(1 << j)
            score = best[rest] + reg.log_likelihood(j, [k for k in members if k != j])
            if score > best[s]:
                best[s], last[s] = score, j
    order, s = [], size - 1
    while s:
        order.insert(0, int(last[s]))
        s &= ~(1 << int(last[s]))
    return np.asarray(order)
