"""Acyclic directed mixed graphs (ADMGs) on networkx."""

from __future__ import annotations

from collections.abc import Iterable

import networkx as nx

from probcausal.errors import CyclicGraphError
from probcausal.graph import graph

__all__ = ["ADMG", "CyclicGraphError"]


class ADMG:
    """An acyclic directed mixed graph: directed edges and bidirected (confounding) edges.

    Parameters
    ----------
    directed : iterable of (u, v)
        Edges ``u -> v``.
    bidirected : iterable of (u, v)
        Edges ``u <-> v``: a latent common cause of ``u`` and ``v``.
    nodes : iterable, optional
        Extra isolated nodes.

    Examples
    --------
    >>> g = ADMG(directed=[("x", "m"), ("m", "y")], bidirected=[("x", "y")])
    >>> sorted(sorted(d) for d in g.districts())
    [['m'], ['x', 'y']]
    >>> g.topological_order()
    ['x', 'm', 'y']
    """

    def __init__(
        self,
        directed: Iterable = (),
        bidirected: Iterable = (),
        nodes: Iterable = (),
    ):
        self.di = nx.DiGraph()
        self.bi = nx.Graph()
        for n in nodes:
            self.di.add_node(n)
            self.bi.add_node(n)
        for u, v in directed:
            self.di.add_edge(u, v)
            self.bi.add_nodes_from((u, v))
        for u, v in bidirected:
            if u == v:
                raise ValueError(
                    f"bidirected self-loop on {u!r}: a bidirected edge joins two nodes"
                )
            self.bi.add_edge(u, v)
            self.di.add_nodes_from((u, v))
        try:
            cycle = nx.find_cycle(self.di)
        except nx.NetworkXNoCycle:
            cycle = None
        if cycle:
            raise CyclicGraphError(cycle)
        self._order = list(nx.lexicographical_topological_sort(self.di, key=str))

    @classmethod
    def from_latent_dag(cls, dag: nx.DiGraph) -> ADMG:
        """Latent projection of a DAG whose latent nodes carry ``latent=True``."""
        latent = {n for n, d in dag.nodes(data=True) if d.get("latent")}
        observed = [n for n in dag.nodes if n not in latent]
        directed, bidirected = set(), set()
        for a in observed:
            # a -> b when a directed path a -> ... -> b runs through latents only
            stack, seen = list(dag.successors(a)), set()
            while stack:
                n = stack.pop()
                if n in seen:
                    continue
                seen.add(n)
                if n in latent:
                    stack.extend(dag.successors(n))
                else:
                    directed.add((a, n))
        for lat in latent:
            # observed nodes reached from lat through latents only share a confounder
            stack, seen, reach = [lat], set(), set()
            while stack:
                n = stack.pop()
                for c in dag.successors(n):
                    if c in latent and c not in seen:
                        seen.add(c)
                        stack.append(c)
                    elif c not in latent:
                        reach.add(c)
            reach = sorted(reach, key=str)
            bidirected |= {(u, v) for i, u in enumerate(reach) for v in reach[i + 1 :]}
        return cls(directed, bidirected, nodes=observed)

    @classmethod
    def from_model(cls, model, *args, hidden=(), **kwargs) -> ADMG:
        """The ADMG of a NumPyro model: its graph (:func:`probcausal.graph`) with the
        sites named in ``hidden`` treated as unobserved and projected out."""

        g = graph(model, *args, **kwargs)
        unknown = set(hidden) - set(g.nodes)
        if unknown:
            raise ValueError(
                f"hidden sites {sorted(unknown)} are not sites of the model {sorted(g)}"
            )
        dag = nx.DiGraph(g.edges)
        dag.add_nodes_from(g.nodes)
        for n in dag.nodes:
            dag.nodes[n]["latent"] = n in set(hidden)
        return cls.from_latent_dag(dag)

    # -- structure ---------------------------------------------------------------------
    @property
    def nodes(self) -> list:
        return list(self._order)

    def topological_order(self) -> list:
        return list(self._order)

    def parents(self, v) -> set:
        return set(self.di.predecessors(v))

    def ancestors(self, nodes: Iterable) -> set:
        """Ancestors of ``nodes``, the nodes included."""
        out = set(nodes)
        for n in list(out):
            out |= nx.ancestors(self.di, n)
        return out

    def descendants(self, nodes: Iterable) -> set:
        """Descendants of ``nodes``, the nodes included."""
        out = set(nodes)
        for n in list(out):
            out |= nx.descendants(self.di, n)
        return out

    def subgraph(self, nodes: Iterable) -> ADMG:
        """The induced subgraph on ``nodes``."""
        keep = set(nodes)
        return ADMG(
            [(u, v) for u, v in self.di.edges if u in keep and v in keep],
            [(u, v) for u, v in self.bi.edges if u in keep and v in keep],
            nodes=[n for n in self._order if n in keep],
        )

    def remove_incoming(self, nodes: Iterable) -> ADMG:
        """``G_{bar X}``: cut directed edges into, and bidirected edges at, ``nodes``."""
        cut = set(nodes)
        return ADMG(
            [(u, v) for u, v in self.di.edges if v not in cut],
            [(u, v) for u, v in self.bi.edges if u not in cut and v not in cut],
            nodes=self._order,
        )

    def remove_outgoing(self, nodes: Iterable) -> ADMG:
        """``G_{underline Z}``: cut directed edges out of ``nodes``."""
        cut = set(nodes)
        return ADMG(
            [(u, v) for u, v in self.di.edges if u not in cut],
            list(self.bi.edges),
            nodes=self._order,
        )

    def d_separated(self, xs: Iterable, ys: Iterable, zs: Iterable = ()) -> bool:
        """Whether ``xs`` and ``ys`` are d-separated given ``zs`` (m-separation: each
        bidirected edge is a latent common parent)."""
        dag = nx.DiGraph(self.di)
        for u, v in self.bi.edges:
            latent = ("__latent__", u, v)
            dag.add_edge(latent, u)
            dag.add_edge(latent, v)
        return nx.is_d_separator(dag, set(xs), set(ys), set(zs))

    def districts(self) -> list[set]:
        """C-components: connected components of the bidirected part."""
        return [set(c) for c in nx.connected_components(self.bi)]

    def __repr__(self) -> str:
        return f"ADMG(directed={sorted(self.di.edges)}, bidirected={sorted(self.bi.edges)})"
