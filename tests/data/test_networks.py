"""Published discrete networks (asia, sachs, child, alarm) as causal models: queries
against exact variable elimination on the mutilated network, written here with
NumPy's einsum (pgmpy's CausalInference drops the evidence inside its adjustment,
so it is not a reference)."""

import jax
import networkx as nx
import numpy as np
import pytest

import probcausal as pc

KEY = jax.random.PRNGKey(0)
N = 3000


def exact(net, do, evidence, target):
    """P(target | do(do), evidence) in the mutilated network, by einsum."""
    ids = {v: i for i, v in enumerate(net.order)}
    operands = []
    for v in net.order:
        if v in do:  # the mutilated network: v is fixed
            operands += [np.eye(len(net.states[v]))[do[v]], [ids[v]]]
        else:
            operands += [net.cpts[v], [ids[p] for p in net.parents[v]] + [ids[v]]]
        if v in evidence:
            operands += [np.eye(len(net.states[v]))[evidence[v]], [ids[v]]]
    out = np.einsum(*operands, [ids[target]], optimize="greedy")
    return out / out.sum()


def pick(net):
    """A treatment with descendants, an outcome among them, and evidence on a
    mid-level node with parents (its ancestors are latent)."""
    g = net.graph()
    order = list(net.order)
    treatment = next(v for v in order if len(nx.descendants(g, v)) >= 2)
    outcome = [v for v in order if v in nx.descendants(g, treatment)][-1]
    middle = [v for v in order if v not in (treatment, outcome) and net.parents[v]]
    evidence_var = middle[len(middle) // 2]
    return treatment, outcome, evidence_var


def _check(p_hat, p):
    se = np.sqrt(p * (1 - p) / N)
    assert np.all(np.abs(p_hat - p) <= 4 * se + 2e-3), (p_hat, p)


def _frequencies(draws, k):
    return np.bincount(np.asarray(draws).ravel(), minlength=k) / np.size(draws)


@pytest.mark.parametrize(
    "name",
    [
        "asia",
        "sachs",
        pytest.param("child", marks=pytest.mark.slow),
        pytest.param("alarm", marks=pytest.mark.slow),
    ],
)
@pytest.mark.slow
def test_interventional_and_do_with_evidence_match_elimination(name):
    net = pc.data.bayesian_network(name)
    model = net.causal_model()
    t, y, e = pick(net)
    k_y = len(net.states[y])
    # rung 2: P(y | do(t = 0)), ancestral sampling of the intervened model
    s = pc.interventional(model, {t: 0}, rng_key=KEY, num_samples=N)
    _check(_frequencies(s[y], k_y), exact(net, {t: 0}, {}, y))
    # rung 2 with evidence: P(y | do(t = 0), e = 0): the intervened model conditioned
    # on the evidence (abduction by variable elimination over the latent ancestors)
    p_e = exact(net, {t: 0}, {}, e)
    e_val = int(np.argmax(p_e))
    cf = pc.counterfactual(pc.do(model, {t: 0}), {e: e_val}, {}, rng_key=KEY, num_samples=N)
    _check(_frequencies(cf.factual[y], k_y), exact(net, {t: 0}, {e: e_val}, y))


@pytest.mark.slow
def test_asia_counterfactual_through_the_deterministic_or():
    """either = tub OR lung. Given either = yes and tub = no (so lung = yes), had tub
    been yes, either would still be yes: probability 1."""
    net = pc.data.bayesian_network("asia")
    yes, no = net.index("either", "yes"), net.index("either", "no")
    evidence = {"either": yes, "tub": net.index("tub", "no")}
    cf = pc.counterfactual(
        net.causal_model(),
        evidence,
        {"tub": net.index("tub", "yes")},
        rng_key=KEY,
        num_samples=2000,
    )
    assert np.all(np.asarray(cf["either"]) == yes)
    assert np.all(np.asarray(cf.factual["lung"]) == net.index("lung", "yes"))
    # either = no: tub = no and lung = no; do(lung = yes) makes either yes surely
    cf = pc.counterfactual(
        net.causal_model(),
        {"either": no},
        {"lung": net.index("lung", "yes")},
        rng_key=KEY,
        num_samples=2000,
    )
    assert np.all(np.asarray(cf["either"]) == yes)


def test_impossible_evidence_in_a_network_is_named():
    net = pc.data.bayesian_network("asia")
    # either = no with lung = yes contradicts the deterministic OR
    evidence = {"either": net.index("either", "no"), "lung": net.index("lung", "yes")}
    with pytest.raises(pc.errors.ImpossibleEvidenceError, match="either"):
        pc.counterfactual(net.causal_model(), evidence, {}, rng_key=KEY, num_samples=10)


def test_read_bif_refuses_malformed_text():
    with pytest.raises(ValueError, match="declares 3 states"):
        pc.data.read_bif("variable a { type discrete [ 3 ] { x, y }; }\n")
    with pytest.raises(ValueError, match="do not sum to 1"):
        pc.data.read_bif(
            "variable a { type discrete [ 2 ] { x, y }; }\nprobability ( a ) { table 0.5, 0.6; }\n"
        )
    with pytest.raises(ValueError, match="unknown network 'asai'"):
        pc.data.bayesian_network("asai")
