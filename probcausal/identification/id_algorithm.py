"""The complete identification algorithm ID (Shpitser & Pearl, 2006)."""

from __future__ import annotations

import networkx as nx

from probcausal.errors import NotIdentifiableError
from probcausal.graph import as_names
from probcausal.identification.admg import ADMG
from probcausal.identification.estimand import (
    Estimand,
    Expr,
    Prob,
    marginal_sum,
    product,
    quotient,
)

__all__ = ["NotIdentifiableError", "identify"]


class _Dist:
    """The distribution argument of ID: an expression over ``scope``."""

    def __init__(self, expr: Expr, scope: frozenset, joint: bool):
        self.expr, self.scope, self.joint = expr, scope, joint

    def marginal(self, keep) -> _Dist:
        keep = frozenset(keep)
        return _Dist(marginal_sum(self.scope - keep, self.expr), keep, self.joint)

    def conditional(self, v, pre) -> Expr:
        pre = frozenset(pre)
        if self.joint:
            return Prob(frozenset([v]), pre)
        return quotient(
            marginal_sum(self.scope - pre - {v}, self.expr),
            marginal_sum(self.scope - pre, self.expr),
        )


def _id(y: frozenset, x: frozenset, P: _Dist, G: ADMG, top: tuple) -> Expr:
    V = frozenset(G.nodes)
    order = G.topological_order()
    # line 1
    if not x:
        return P.marginal(y).expr
    # line 2
    an_y = frozenset(G.ancestors(y))
    if V != an_y:
        return _id(y, x & an_y, P.marginal(an_y), G.subgraph(an_y), top)
    # line 3
    w = (V - x) - G.remove_incoming(x).ancestors(y)
    if w:
        return _id(y, x | w, P, G, top)
    # line 4
    districts = G.subgraph(V - x).districts()
    if len(districts) > 1:
        parts = [_id(frozenset(s), V - frozenset(s), P, G, top) for s in districts]
        return marginal_sum(V - (y | x), product(parts))
    (S,) = districts
    S = frozenset(S)
    components = [frozenset(c) for c in G.districts()]
    # line 5
    if components == [V]:
        raise NotIdentifiableError(top[0], top[1], V, S)
    # line 6
    if S in components:
        factors = [P.conditional(v, order[: order.index(v)]) for v in order if v in S]
        return marginal_sum(S - y, product(factors))
    # line 7
    (S2,) = [c for c in components if S < c]
    factors = [P.conditional(v, order[: order.index(v)]) for v in order if v in S2]
    P2 = _Dist(product(factors), S2, joint=False)
    return _id(y, x & S2, P2, G.subgraph(S2), top)


def _idc(y, x, z, P, G, top) -> Expr:
    """IDC (Shpitser & Pearl 2006b): move what can be moved from ``z`` into ``x``."""
    for w in sorted(z, key=str):
        cut = G.remove_incoming(x).remove_outgoing([w])
        if cut.d_separated(y, [w], (x | z) - {w}):
            return _idc(y, x | {w}, z - {w}, P, G, top)
    joint = _id(y | z, x, P, G, top)
    return quotient(joint, marginal_sum(y, joint))


def identify(graph, treatment, outcome, given=None) -> Estimand:
    """Identify ``P(outcome | do(treatment))``, or ``P(outcome | do(treatment), given)``,
    in ``graph`` (complete: ID and IDC of Shpitser & Pearl 2006). Raises
    :class:`NotIdentifiableError` carrying the hedge.

    ``graph`` is an :class:`ADMG` or a ``networkx.DiGraph`` whose latent nodes carry
    ``latent=True`` (projected automatically).

    Examples
    --------
    >>> import probcausal as pc
    >>> g = pc.ADMG(directed=[("x", "m"), ("m", "y")], bidirected=[("x", "y")])
    >>> print(pc.identify(g, "x", "y"))  # the front-door formula
    P(y | do(x)) = Σ_{m} [P(m | x) Σ_{x'} [P(x') P(y | m, x')]]
    """
    if isinstance(graph, nx.DiGraph):
        graph = ADMG.from_latent_dag(graph)
    x, y = frozenset(as_names(treatment)), frozenset(as_names(outcome))
    z = frozenset(as_names(given)) if given is not None else frozenset()
    unknown = (x | y | z) - set(graph.nodes)
    if unknown:
        raise ValueError(f"{sorted(map(str, unknown))} are not nodes of the graph {graph.nodes}")
    for a, b, what in (
        (x, y, "treatment and outcome"),
        (x, z, "treatment and given"),
        (y, z, "outcome and given"),
    ):
        if a & b:
            raise ValueError(f"{sorted(map(str, a & b))} are both {what}")
    V = frozenset(graph.nodes)
    P = _Dist(Prob(V), V, joint=True)
    top = (x, y)
    expr = _idc(y, x, z, P, graph, top) if z else _id(y, x, P, graph, top)
    return Estimand(
        expr,
        sorted(x, key=str),
        sorted(y, key=str),
        graph.topological_order(),
        given=sorted(z, key=str),
    )
