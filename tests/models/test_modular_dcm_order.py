"""Modular-DCM's modules and training order: the paper's examples, cycles of any
length merged, and invariants over random ADMGs."""

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import probcausal as pc
from probcausal.models.modular_dcm import (
    PretrainedMechanismError,
    h_graph,
    training_modules,
)


def test_front_door_trains_the_mediator_first():
    g = pc.ADMG(directed=[("D", "I"), ("I", "A")], bidirected=[("D", "A")])
    first, second = training_modules(g)
    assert (first.variables, first.matches, first.do_parents) == (("I",), ("I",), ("D",))
    assert (second.variables, second.matches, second.do_parents) == (
        ("D", "A"),
        ("D", "I", "A"),
        (),
    )


def test_pretrained_image_below_a_confounded_pair():
    """Sex -> I <- Glasses, Sex <-> Glasses: {Sex, Glasses} on P(Sex, Glasses);
    {I} is the pretrained model."""
    g = pc.ADMG(directed=[("Sex", "I"), ("Glasses", "I")], bidirected=[("Sex", "Glasses")])
    a, b = training_modules(g, pretrained=["I"])
    assert set(a.variables) == {"Sex", "Glasses"} and set(a.matches) == {"Sex", "Glasses"}
    assert not a.pretrained and a.do_parents == ()
    assert b.variables == ("I",) and b.pretrained
    assert set(b.do_parents) == {"Sex", "Glasses"}


def test_pretrained_mechanism_must_be_its_own_c_component():
    g = pc.ADMG(directed=[("D", "I"), ("I", "A")], bidirected=[("D", "A")])
    with pytest.raises(PretrainedMechanismError, match=r"'A' shares latent confounders with"):
        training_modules(g, pretrained=["A"])
    with pytest.raises(PretrainedMechanismError, match="no variable of the graph"):
        training_modules(g, pretrained=["Z"])


def test_h_graph_cycles_of_any_length_are_merged():
    """Districts h1 = {a1, b1}, h2 = {a2, b2}, h3 = {a3, b3} with h1 -> h2 -> h3 -> h1:
    each has a parent in the previous one that descends from it."""
    directed = [("b2", "a1"), ("a1", "a2"), ("b3", "a2"), ("a2", "a3"), ("a3", "b1")]
    g = pc.ADMG(directed, [("a1", "b1"), ("a2", "b2"), ("a3", "b3")])
    h = h_graph(g)
    (cycle,) = list(nx.simple_cycles(h))
    assert len(cycle) == 3
    (module,) = training_modules(g)
    assert set(module.variables) == {"a1", "b1", "a2", "b2", "a3", "b3"}
    assert module.do_parents == ()


@st.composite
def admgs(draw):
    n = draw(st.integers(1, 7))
    nodes = [f"v{i}" for i in range(n)]
    pairs = [(nodes[i], nodes[j]) for i in range(n) for j in range(i + 1, n)]
    directed = [p for p in pairs if draw(st.booleans())]
    bidirected = [p for p in pairs if draw(st.integers(0, 3)) == 0]
    return pc.ADMG(directed, bidirected, nodes=nodes)


@settings(max_examples=300)
@given(admgs())
def test_modules_partition_the_variables_and_only_need_earlier_ones(g):
    modules = training_modules(g)
    seen = []
    districts = [frozenset(d) for d in g.districts()]
    for m in modules:
        variables = set(m.variables)
        # a module is a union of whole c-components
        assert all(d <= variables or not (d & variables) for d in districts)
        # what it matches beyond its own variables was trained before
        assert set(m.matches) - variables <= set(seen)
        # do-parents are outside the matched set, and none is a descendant of it
        assert not set(m.do_parents) & set(m.matches)
        assert not set(m.do_parents) & g.descendants(m.matches)
        seen.extend(m.variables)
    assert sorted(seen) == sorted(g.nodes)
