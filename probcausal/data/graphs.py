"""Random DAG priors: Erdős–Rényi and scale-free (Barabási–Albert).

Two implementations of each prior:

* :func:`random_graph` builds one graph with the networkx generator
  (``gnp_random_graph``, ``barabasi_albert_graph``) and orients it along a random
  order: the reference, for users who want a ``networkx.DiGraph``.
* :func:`sample_dag` draws the same distribution as a jittable JAX function, so
  thousands of graphs can be drawn inside a vmapped simulator. Its adjacency is
  strictly upper triangular (node ``i`` can only cause ``j > i``); the simulator
  permutes the labels afterwards. Tests check that both agree in distribution.

``expected_degree`` is the expected number of edges per node, in and out
together: a graph over ``d`` nodes has ``d * expected_degree / 2`` edges on
average.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np

__all__ = ["GRAPH_PRIORS", "random_graph", "sample_dag"]

#: ``"er"``: Erdős–Rényi; ``"sf"``: scale-free, hubs are causes (edges point from
#: the older to the newer node of the preferential-attachment process);
#: ``"sf_in"``: the transpose, hubs are effects.
GRAPH_PRIORS = ("er", "sf", "sf_in")


def _check(prior: str, d: int, expected_degree: float) -> None:
    if prior not in GRAPH_PRIORS:
        raise ValueError(f"unknown graph prior {prior!r}; choose one of {GRAPH_PRIORS}")
    if d < 2:
        raise ValueError(f"a random graph needs at least 2 nodes, got num_variables={d}")
    if not 0 < expected_degree <= d - 1:
        raise ValueError(
            f"expected_degree must lie in (0, {d - 1}] for {d} nodes, got {expected_degree}"
        )


def _attachments(expected_degree: float) -> int:
    return max(1, round(expected_degree / 2))


def sample_dag(key: jax.Array, d: int, prior: str = "er", expected_degree: float = 2.0):
    """A random DAG as a ``(d, d)`` float 0/1 adjacency, strictly upper triangular
    (``A[i, j] = 1`` is the edge ``i -> j``). Jittable and vmappable over ``key``.

    Examples
    --------
    >>> import jax
    >>> from probcausal.data import sample_dag
    >>> a = sample_dag(jax.random.key(0), 5, "er", 2.0)
    >>> a.shape, bool((jax.numpy.tril(a) == 0).all())
    ((5, 5), True)
    """
    _check(prior, d, expected_degree)
    if prior == "er":
        p = expected_degree / (d - 1)
        upper = jnp.triu(jnp.ones((d, d), bool), k=1)
        return (jax.random.bernoulli(key, p, (d, d)) & upper).astype(jnp.float32)
    m = _attachments(expected_degree)
    keys = jax.random.split(key, d)

    def attach(carry, i):
        adjacency, degree = carry
        # as networkx: nodes 1..m join node 0 (a star); every later node picks m
        # distinct earlier nodes with probability ∝ degree (Gumbel top-m)
        earlier = jnp.where(i <= m, jnp.arange(d) == 0, jnp.arange(d) < i) & (i > 0)
        logits = jnp.where(earlier, jnp.log(jnp.maximum(degree, 1.0)), -jnp.inf)
        scores = logits + jax.random.gumbel(keys[i], (d,))
        _, chosen = jax.lax.top_k(scores, m)
        valid = jnp.take(earlier, chosen)
        column = jnp.zeros(d).at[chosen].add(valid.astype(jnp.float32))
        adjacency = adjacency.at[:, i].set(column)
        degree = degree + column
        degree = degree.at[i].add(column.sum())
        return (adjacency, degree), None

    init = (jnp.zeros((d, d)), jnp.zeros(d))
    (adjacency, _), _ = jax.lax.scan(attach, init, jnp.arange(d))
    if prior == "sf_in":
        # reverse every edge, then reverse the node order so the matrix stays upper
        adjacency = adjacency.T[::-1, ::-1]
    return adjacency


def random_graph(
    d: int, prior: str = "er", expected_degree: float = 2.0, *, seed: int = 0
) -> nx.DiGraph:
    """One random DAG over nodes ``0 .. d-1`` from the networkx generator of
    ``prior``, oriented along a random order.

    Examples
    --------
    >>> import networkx as nx
    >>> from probcausal.data import random_graph
    >>> g = random_graph(20, "sf", 2.0, seed=1)
    >>> nx.is_directed_acyclic_graph(g), g.number_of_nodes()
    (True, 20)
    """
    _check(prior, d, expected_degree)
    rng = np.random.default_rng(seed)
    if prior == "er":
        undirected = nx.gnp_random_graph(d, expected_degree / (d - 1), seed=rng)
        order = rng.permutation(d)
    else:
        m = _attachments(expected_degree)
        undirected = nx.barabasi_albert_graph(d, m, seed=rng)
        # networkx adds nodes in label order: older nodes have smaller labels
        order = np.arange(d) if prior == "sf" else np.arange(d)[::-1]
    rank = np.empty(d, int)
    rank[order] = np.arange(d)
    labels = rng.permutation(d)  # hide the causal order in the labels
    graph = nx.DiGraph()
    graph.add_nodes_from(range(d))
    for u, v in undirected.edges():
        a, b = (u, v) if rank[u] < rank[v] else (v, u)
        graph.add_edge(int(labels[a]), int(labels[b]))
    return graph
