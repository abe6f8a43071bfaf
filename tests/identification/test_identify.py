import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import probcausal as pc
from probcausal.identification import ADMG, CyclicGraphError, NotIdentifiableError, identify
from tests.identification.bruteforce import BinarySCM


def check_numerically(graph, treatment, outcome, seeds=(0, 1, 2), given=None):
    est = identify(graph, treatment, outcome, given=given)
    for s in seeds:
        scm = BinarySCM(graph, np.random.default_rng(s))
        table, _ = est.table(scm.joint())
        truth = scm.interventional(est.treatment, est.outcome, est.given)
        np.testing.assert_allclose(table.table, truth, atol=1e-6)
    return est


GRAPHS = {
    "backdoor": (ADMG([("z", "x"), ("z", "y"), ("x", "y")]), "x", "y"),
    "frontdoor": (ADMG([("x", "m"), ("m", "y")], [("x", "y")]), "x", "y"),
    "napkin": (ADMG([("w", "r"), ("r", "x"), ("x", "y")], [("w", "x"), ("w", "y")]), "x", "y"),
    "verma": (
        ADMG([("a", "b"), ("b", "c"), ("c", "d")], [("b", "d")]),
        ["a", "c"],
        "d",
    ),
    "sequential": (
        ADMG([("x1", "z"), ("z", "x2"), ("x1", "y"), ("x2", "y"), ("z", "y")], [("z", "y")]),
        ["x1", "x2"],
        "y",
    ),
    "tian_pearl_fig": (
        ADMG([("x", "z1"), ("z1", "z2"), ("z2", "y"), ("x", "y")], [("x", "z2"), ("z1", "y")]),
        "x",
        "y",
    ),
    # Shpitser & Pearl (2008, JMLR), "Complete identification methods for the causal
    # hierarchy" (journal version of the 2006 ID papers): Figures 2a-2e and 3a.
    "shpitser_pearl_fig2a": (ADMG([("x", "y")]), "x", "y"),
    "shpitser_pearl_fig2b": (ADMG([("x", "y"), ("x", "z"), ("z", "y")], [("y", "z")]), "x", "y"),
    "shpitser_pearl_fig2c": (ADMG([("x", "y"), ("z", "x"), ("z", "y")], [("x", "z")]), "x", "y"),
    "shpitser_pearl_fig2e": (ADMG([("x", "z"), ("z", "y")], [("x", "y")]), "x", "y"),
    "shpitser_pearl_fig3a": (
        ADMG(
            [("x", "y1"), ("w1", "x"), ("w2", "y2")],
            [("w1", "w2"), ("w1", "y1"), ("w1", "y2"), ("x", "w2")],
        ),
        "x",
        ["y1", "y2"],
    ),
    "multi_outcome": (
        ADMG([("x", "y1"), ("y1", "y2"), ("x", "y2")], [("y1", "y2")]),
        "x",
        ["y1", "y2"],
    ),
}


@pytest.mark.parametrize("name", GRAPHS)
def test_identifiable_graphs_match_brute_force(name):
    graph, x, y = GRAPHS[name]
    check_numerically(graph, x, y)


NOT_IDENTIFIABLE = {
    "bow": (ADMG([("x", "y")], [("x", "y")]), "x", "y"),
    "instrument": (ADMG([("z", "x"), ("x", "y")], [("x", "y")]), "x", "y"),
    "frontdoor_confounded_mediator": (
        ADMG([("x", "m"), ("m", "y")], [("x", "y"), ("m", "y")]),
        "x",
        "y",
    ),
    "shpitser_fig_bow_chain": (ADMG([("x", "z"), ("z", "y")], [("x", "z")]), "x", "y"),
    "sequential_confounded_first_step": (
        ADMG([("x1", "z"), ("z", "x2"), ("x1", "y"), ("x2", "y"), ("z", "y")], [("x1", "z")]),
        ["x1", "x2"],
        "y",
    ),
}


@pytest.mark.parametrize("name", NOT_IDENTIFIABLE)
def test_non_identifiable_graphs_raise_with_hedge(name):
    graph, x, y = NOT_IDENTIFIABLE[name]
    with pytest.raises(NotIdentifiableError, match=r"not identifiable.*hedge") as err:
        identify(graph, x, y)
    forest, sub = err.value.hedge
    assert sub < forest


IDC_CASES = {
    "covariate_after_treatment": (ADMG([("x", "z"), ("z", "y"), ("x", "y")]), "x", "y", "z"),
    "pre_treatment_covariate": (ADMG([("z", "x"), ("x", "y"), ("z", "y")]), "x", "y", "z"),
    "confounded_covariate": (
        ADMG([("z", "x"), ("x", "y"), ("z", "y")], [("z", "y")]),
        "x",
        "y",
        "z",
    ),
    "frontdoor_given_mediator_parent": (
        ADMG([("w", "x"), ("x", "m"), ("m", "y")], [("x", "y")]),
        "x",
        "y",
        "w",
    ),
}


@pytest.mark.parametrize("name", IDC_CASES)
def test_conditional_queries_match_brute_force(name):
    graph, x, y, z = IDC_CASES[name]
    est = check_numerically(graph, x, y, given=z)
    assert str(est).startswith(f"P({y} | do({x}), {z}) = ")


def test_frontdoor_formula_prints_with_primed_bound_variable():
    est = identify(*GRAPHS["frontdoor"])
    assert str(est) == "P(y | do(x)) = Σ_{m} [P(m | x) Σ_{x'} [P(x') P(y | m, x')]]"


def test_evaluate_on_data_frame_matches_table():
    import pandas as pd

    graph, x, y = GRAPHS["backdoor"]
    rng = np.random.default_rng(0)
    z = rng.integers(0, 2, 5000)
    xx = (rng.random(5000) < 0.3 + 0.4 * z).astype(int)
    yy = (rng.random(5000) < 0.2 + 0.3 * xx + 0.4 * z).astype(int)
    df = pd.DataFrame({"z": z, "x": xx, "y": yy})
    est = identify(graph, x, y)
    value = est.evaluate(df, intervention={"x": 1}, outcome={"y": 1})
    pz1 = z.mean()
    p = lambda x_, z_: yy[(xx == x_) & (z == z_)].mean()
    assert abs(value - ((1 - pz1) * p(1, 0) + pz1 * p(1, 1))) < 1e-12


def test_latent_projection_from_digraph():
    dag = nx.DiGraph([("u", "x"), ("u", "y"), ("x", "m"), ("m", "y")])
    dag.nodes["u"]["latent"] = True
    g = ADMG.from_latent_dag(dag)
    assert set(g.di.edges) == {("x", "m"), ("m", "y")}
    assert {frozenset(e) for e in g.bi.edges} == {frozenset(("x", "y"))}
    assert "Σ_{m}" in str(identify(dag, "x", "y"))


def test_cycle_is_named():
    with pytest.raises(CyclicGraphError, match=r"cycle: .*->.*->"):
        ADMG([("a", "b"), ("b", "c"), ("c", "a")])


def test_bad_queries():
    graph, x, y = GRAPHS["backdoor"]
    with pytest.raises(ValueError, match=r"\['q'\] are not nodes"):
        identify(graph, "q", "y")
    with pytest.raises(ValueError, match="both treatment and outcome"):
        identify(graph, "x", "x")
    with pytest.raises(pc.errors.UnknownNodeError, match=r"\['q'\] are not in the graph"):
        pc.backdoor_adjustment_sets(graph, "q", "y")
    with pytest.raises(pc.errors.UnknownNodeError, match=r"\['w'\] are not in the graph"):
        pc.frontdoor_set(graph, "x", "w")


def test_evaluate_refuses_missing_columns_and_values():
    g = pc.ADMG(directed=[("z", "x"), ("z", "y"), ("x", "y")])
    est = identify(g, "x", "y")
    rng = np.random.default_rng(0)
    data = {v: rng.integers(0, 2, 100).astype(float) for v in "xyz"}
    est.evaluate(data, intervention={"x": 1}, outcome={"y": 1})  # fine
    with pytest.raises(pc.errors.EstimandDataError, match=r"column\(s\) \['z'\]"):
        est.evaluate({"x": data["x"], "y": data["y"]}, intervention={"x": 1}, outcome={"y": 1})
    nan = dict(data, z=np.where(np.arange(100) == 7, np.nan, data["z"]))
    with pytest.raises(pc.errors.EstimandDataError, match="'z' holds 1 missing"):
        est.evaluate(nan, intervention={"x": 1}, outcome={"y": 1})
    with pytest.raises(pc.errors.EstimandDataError, match=r"values for \['y'\]"):
        est.evaluate(data, intervention={"x": 1})


@st.composite
def admgs(draw):
    n = draw(st.integers(2, 7))
    nodes = [f"v{i}" for i in range(n)]
    pairs = [(nodes[i], nodes[j]) for i in range(n) for j in range(i + 1, n)]
    directed = [p for p in pairs if draw(st.booleans())]
    bidirected = [p for p in pairs if draw(st.integers(0, 4)) == 0][:6]
    graph = ADMG(directed, bidirected, nodes=nodes)
    order = draw(st.permutations(nodes))
    k = draw(st.integers(1, min(2, n - 1)))
    return graph, list(order[:k]), [order[k]]


@settings(max_examples=300)
@given(admgs(), st.booleans())
def test_random_admgs_estimands_match_brute_force(case, conditional):
    graph, x, y = case
    rest = [n for n in graph.nodes if n not in x and n not in y]
    given = rest[:1] if conditional and rest else None
    try:
        check_numerically(graph, x, y, seeds=(0,), given=given)
    except NotIdentifiableError as err:
        forest, sub = err.hedge
        assert sub < forest
        for part in (forest, sub):  # both are single districts
            assert len(graph.subgraph(part).districts()) == 1


def test_public_names():
    assert pc.identify is identify and pc.ADMG is ADMG
    assert pc.NotIdentifiableError is NotIdentifiableError


def test_backdoor_and_frontdoor_helpers():
    from probcausal.identification import frontdoor_set

    graph, x, y = GRAPHS["backdoor"]
    assert pc.backdoor_adjustment_sets(graph, x, y) == [{"z"}]
    assert frontdoor_set(*GRAPHS["frontdoor"]) == {"m"}
    assert pc.backdoor_adjustment_sets(*GRAPHS["frontdoor"]) == []
    assert frontdoor_set(*GRAPHS["backdoor"]) is None


@settings(max_examples=150)
@given(admgs())
def test_every_backdoor_and_frontdoor_set_gives_the_right_answer(case):
    from probcausal.identification import (
        adjustment_estimand,
        backdoor_adjustment_sets,
        frontdoor_estimand,
        frontdoor_set,
    )

    graph, x, y = case
    x, y = x[:1], y
    scm = BinarySCM(graph, np.random.default_rng(0))
    truth = scm.interventional(x, y)
    joint = scm.joint()
    for z in backdoor_adjustment_sets(graph, x, y, max_size=2):
        table, _ = adjustment_estimand(graph, x, y, z).table(joint)
        np.testing.assert_allclose(table.table, truth, atol=1e-6)
    m = frontdoor_set(graph, x[0], y[0])
    if m is not None:
        table, _ = frontdoor_estimand(graph, x[0], y[0], m).table(joint)
        np.testing.assert_allclose(table.table, truth, atol=1e-6)


# Tian & Pearl (2002, AAAI), "A general identification condition for causal effects".
# Theorem 3: for a singleton X, P_x(v) (the effect on all other variables) is
# identifiable iff no bidirected path joins X to any of its children, i.e. no child of
# X lies in X's district. Theorem 4 (sufficient): P_x(s) is identifiable if that holds
# in the subgraph over the ancestors of S.
def _child_in_district(graph, x):
    (district,) = [d for d in graph.districts() if x in d]
    return bool(set(graph.di.successors(x)) & district)


TIAN_PEARL_CASES = {
    # X -> Z -> Y, X <-> Y: the child Z is outside X's district {X, Y}: yes.
    "frontdoor_all_effects": (ADMG([("x", "z"), ("z", "y")], [("x", "y")]), "x", True),
    # X -> Y with X <-> Z <-> Y: the child Y is reached by a bidirected path: no.
    "bidirected_path_to_child": (
        ADMG([("x", "y"), ("z", "y")], [("x", "z"), ("z", "y")]),
        "x",
        False,
    ),
    # the Tian & Pearl graph above: children z1, y; district of x is {x, z2}: yes.
    "tian_pearl_fig": (GRAPHS["tian_pearl_fig"][0], "x", True),
    # napkin: x's only child y shares x's district {w, x, y}: P_x(w, r, y) is not
    # identifiable although P_x(y) is.
    "napkin_all_effects": (GRAPHS["napkin"][0], "x", False),
}


@pytest.mark.parametrize("name", TIAN_PEARL_CASES)
def test_tian_pearl_effect_on_all_variables(name):
    graph, x, identifiable = TIAN_PEARL_CASES[name]
    assert _child_in_district(graph, x) is not identifiable
    rest = [v for v in graph.nodes if v != x]
    if identifiable:
        check_numerically(graph, x, rest)
    else:
        with pytest.raises(NotIdentifiableError):
            identify(graph, x, rest)


@settings(max_examples=200)
@given(admgs())
def test_tian_pearl_theorems_on_random_admgs(case):
    graph, order, _ = case
    x = order[0]
    rest = [v for v in graph.nodes if v != x]
    try:
        identify(graph, x, rest)
        all_effects = True
    except NotIdentifiableError:
        all_effects = False
    assert all_effects is not _child_in_district(graph, x)  # Theorem 3 (iff)
    s = [v for v in rest if v in graph.descendants([x])][:2]  # outcomes X may affect
    if s and not _child_in_district(graph.subgraph(graph.ancestors(s)), x):
        check_numerically(graph, x, s, seeds=(0,))  # Theorem 4 (sufficient)
