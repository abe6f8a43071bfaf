"""Graphical criteria: back-door adjustment sets and front-door sets."""

from __future__ import annotations

import itertools

from probcausal.errors import UnknownNodeError
from probcausal.graph import as_names
from probcausal.identification.admg import ADMG
from probcausal.identification.estimand import Estimand, Prob, marginal_sum, product

__all__ = ["adjustment_estimand", "backdoor_adjustment_sets", "frontdoor_estimand", "frontdoor_set"]

_MAX_CANDIDATES = 16


def _known(graph: ADMG, *groups) -> None:
    unknown = {v for g in groups for v in as_names(g)} - set(graph.nodes)
    if unknown:
        raise UnknownNodeError(unknown, graph.nodes)


def _subsets(candidates, max_size):
    for k in range(0, (len(candidates) if max_size is None else max_size) + 1):
        yield from (set(c) for c in itertools.combinations(candidates, k))


def backdoor_adjustment_sets(
    graph: ADMG, treatment, outcome, max_size: int | None = None
) -> list[set]:
    """Every set Z satisfying the back-door criterion for ``treatment`` -> ``outcome``,
    smallest first: no descendant of the treatment, and Z blocks every back-door path
    (m-separation in the graph without the treatment's outgoing edges).

    Examples
    --------
    >>> import probcausal as pc
    >>> g = pc.ADMG(directed=[("z", "x"), ("z", "y"), ("x", "y"), ("w", "y")])
    >>> [sorted(z) for z in pc.backdoor_adjustment_sets(g, "x", "y")]
    [['z'], ['w', 'z']]
    """
    _known(graph, treatment, outcome)
    x, y = set(as_names(treatment)), set(as_names(outcome))
    candidates = sorted(set(graph.nodes) - graph.descendants(x) - y, key=str)
    if max_size is None and len(candidates) > _MAX_CANDIDATES:
        max_size = 3
    cut = graph.remove_outgoing(x)
    return [z for z in _subsets(candidates, max_size) if cut.d_separated(x, y, z)]


def frontdoor_set(graph: ADMG, treatment: str, outcome: str) -> set | None:
    """A smallest set M satisfying the front-door criterion, or None.

    M intercepts every directed path from treatment to outcome, no back-door path
    from the treatment to M is open, and the treatment blocks every back-door path
    from M to the outcome.

    Examples
    --------
    >>> import probcausal as pc
    >>> g = pc.ADMG(directed=[("x", "m"), ("m", "y")], bidirected=[("x", "y")])
    >>> pc.frontdoor_set(g, "x", "y")
    {'m'}
    """
    _known(graph, treatment, outcome)
    x, y = treatment, outcome
    between = (graph.descendants([x]) & graph.ancestors([y])) - {x, y}
    for m in _subsets(sorted(between, key=str), None if len(between) <= _MAX_CANDIDATES else 3):
        if not m:
            continue
        rest = graph.subgraph(set(graph.nodes) - m)
        if y in rest.descendants([x]):
            continue  # a directed path avoids M
        if not graph.remove_outgoing([x]).d_separated([x], m):
            continue
        if not graph.remove_outgoing(m).d_separated(m, [y], [x]):
            continue
        return m
    return None


def adjustment_estimand(graph: ADMG, treatment, outcome, adjustment) -> Estimand:
    """``P(y | do(x)) = Σ_z P(y | x, z) P(z)`` for an adjustment set ``z``."""
    x, y, z = (frozenset(as_names(v)) for v in (treatment, outcome, adjustment))
    expr = marginal_sum(z, product([Prob(y, x | z), Prob(z) if z else Prob(frozenset())]))
    return Estimand(expr, sorted(x, key=str), sorted(y, key=str), graph.topological_order())


def frontdoor_estimand(graph: ADMG, treatment: str, outcome: str, mediators) -> Estimand:
    """``P(y | do(x)) = Σ_m P(m | x) Σ_x' P(y | m, x') P(x')`` for a front-door set."""
    x, y, m = frozenset([treatment]), frozenset([outcome]), frozenset(mediators)
    inner = marginal_sum(x, product([Prob(y, m | x), Prob(x)]))
    expr = marginal_sum(m, product([Prob(m, x), inner]))
    return Estimand(expr, [treatment], [outcome], graph.topological_order())
