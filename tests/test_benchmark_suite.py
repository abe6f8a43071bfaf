"""The side-by-side suite's closed forms and probcausal's answers on it.

No timing here (that is `make bench`): these check that the suite's truths are
right, independently of the tools, and that probcausal and the hand-written floor
meet the tolerances the benchmark table reports.
"""

import os
import sys

import numpy as np
import pytest

ANCHORS = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "anchors")
sys.path.insert(0, ANCHORS)

import spec  # noqa: E402


def test_logistic_mediation_matches_monte_carlo():
    """The enumerated NDE/NIE against a NumPy simulation with shared noise."""
    rng = np.random.default_rng(0)
    n = 2_000_000
    u_m, u_y = rng.random(n), rng.random(n)
    m_of = lambda x: (u_m < spec.sigmoid(spec.LOGIT_M[0] + spec.LOGIT_M[1] * x)) * 1.0  # noqa: E731
    a, bx, bm = spec.LOGIT_Y
    y_of = lambda x, m: (u_y < spec.sigmoid(a + bx * x + bm * m)) * 1.0  # noqa: E731
    t, c = spec.TREATED, spec.CONTROL
    y_tmc, y_c, y_t = y_of(t, m_of(c)), y_of(c, m_of(c)), y_of(t, m_of(t))
    exact = spec.logistic_mediation()
    tol = 5 / np.sqrt(n)
    assert abs(np.mean(y_tmc - y_c) - exact["nde"]) < tol
    assert abs(np.mean(y_t - y_tmc) - exact["nie"]) < tol
    assert exact["nde"] > 0.1 and exact["nie"] > 0.05  # both paths matter


def test_partial_evidence_posterior_matches_regression():
    """E[x | h, y] of the closed form against least squares on simulated units."""
    rng = np.random.default_rng(1)
    n = 400_000
    x = rng.standard_normal(n)
    h = spec.H_COEF * x + rng.standard_normal(n)
    y = spec.XY_COEF * x + spec.HY_COEF * h + rng.standard_normal(n)
    design = np.stack([h, y], 1)
    coef, *_ = np.linalg.lstsq(design, x, rcond=None)
    closed = [spec.partial_posterior_mean(1.0, 0.0), spec.partial_posterior_mean(0.0, 1.0)]
    np.testing.assert_allclose(coef, closed, atol=5e-3)
    resid_sd = np.std(x - design @ coef) * spec.partial_slope()
    assert abs(resid_sd - spec.partial_posterior_sd()) < 5e-3


def test_categorical_data_follows_softmax():
    d = spec.categorical_data(200_000)
    z, c = d["z"], d["c"]
    mask = z > 1.0
    logits = spec.categorical_logits(np.array([1.5]))[0]
    p = np.exp(logits) / np.exp(logits).sum()
    freq = np.bincount(c[(z > 1.4) & (z < 1.6)], minlength=3) / ((z > 1.4) & (z < 1.6)).sum()
    np.testing.assert_allclose(freq, p, atol=0.03)
    assert mask.any()


QUERIES = ["full_evidence@1000", "multi_world@1000", "categorical@1000", "mediation_linear@100000"]


@pytest.mark.parametrize("key", QUERIES)
@pytest.mark.parametrize("tool", ["probcausal", "floor"])
def test_probcausal_and_floor_meet_the_tolerance(key, tool):
    import jax
    import run_probcausal as runner

    q = spec.by_key(key)
    build = runner.probcausal_call if tool == "probcausal" else runner.floor_call
    call, answer_of, _ = build(q)
    err = spec.error(q, answer_of(jax.block_until_ready(call())))
    assert err <= spec.tolerance(q), (key, tool, err)


def test_a_wrong_answer_fails_the_tolerance():
    q = spec.by_key("full_evidence@1000")
    wrong = spec.truth(q) + 1e-3
    assert spec.error(q, wrong) > spec.tolerance(q)
