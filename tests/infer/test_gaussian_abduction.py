"""The conjugate engine (``method="gaussian"``) against closed-form Gaussian
conditioning, and its refusal of models whose log density is not quadratic."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import probcausal as pc
from probcausal.errors import AbductionError
from tests.scms import partial

KEY = jax.random.PRNGKey(0)


def condition_gaussian(cov, latent, observed, values):
    """Mean and covariance of ``latent`` given ``observed = values`` under N(0, cov)."""
    s_lo = cov[np.ix_(latent, observed)]
    s_oo = cov[np.ix_(observed, observed)]
    gain = np.linalg.solve(s_oo, s_lo.T).T
    return gain @ values, cov[np.ix_(latent, latent)] - gain @ s_lo.T


def sem_covariance(coef, scale):
    """x = coef @ x + scale * eps, coef strictly lower triangular."""
    a = np.linalg.inv(np.eye(len(scale)) - coef)
    return a @ np.diag(np.square(scale)) @ a.T


def test_scalar_latent_is_the_default_and_exact():
    # x ~ N(0, 1), y ~ N(2x, 1), y = 3: x | y ~ N(1.2, 0.2); do(x=1): y' ~ N(2.6, 0.8)
    n = 20000
    cf = pc.counterfactual(partial, {"y": 3.0}, {"x": 1.0}, rng_key=KEY, num_samples=n)
    assert cf.method == "gaussian"
    x = np.asarray(cf.latents["x"])
    assert abs(x.mean() - 1.2) < 5 * np.sqrt(0.2 / n)
    assert abs(x.var() - 0.2) < 5 * 0.2 * np.sqrt(2 / n)
    y = np.asarray(cf["y"])
    assert abs(y.mean() - 2.6) < 5 * np.sqrt(0.8 / n)


COEF = np.array(
    [[0.0, 0.0, 0.0, 0.0], [0.8, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [-1.0, 1.0, 0.0, 0.0]]
)
SCALE = np.array([1.0, 0.5, 0.3, 1.0])


def two_latents(n):
    """Two correlated latent parents per unit (z1 -> z2), two observed children."""
    with numpyro.plate("units", n):
        z1 = numpyro.sample("z1", dist.Normal(0.0, SCALE[0]))
        z2 = numpyro.sample("z2", dist.Normal(COEF[1, 0] * z1, SCALE[1]))
        numpyro.sample("y", dist.Normal(z1 + z2, SCALE[2]))
        numpyro.sample("w", dist.Normal(z2 - z1, SCALE[3]))


def test_two_latents_per_unit_match_conditioning():
    units, n = 40, 4000
    rng = np.random.default_rng(0)
    cov = sem_covariance(COEF, SCALE)
    data = rng.multivariate_normal(np.zeros(4), cov, size=units)
    cf = pc.counterfactual(
        two_latents,
        {"y": data[:, 2], "w": data[:, 3]},
        {"z1": 0.0},
        rng_key=KEY,
        num_samples=n,
        model_kwargs={"n": units},
    )
    assert cf.method == "gaussian"
    z = np.stack([cf.latents["z1"], cf.latents["z2"]], -1)  # (n, units, 2)
    mean, post = condition_gaussian(cov, [0, 1], [2, 3], data[:, 2:].T)  # (2, units)
    sd = np.sqrt(np.diag(post))
    assert np.all(np.abs(z.mean(0) - mean.T) < 5 * sd / np.sqrt(n))
    resid = (z - mean.T).reshape(-1, 2)
    tol = 5 * np.sqrt(2 / len(resid)) * np.outer(sd, sd)
    assert np.all(np.abs(np.cov(resid.T) - post) < tol)
    # the counterfactual follows from the abducted noise: y' = z2' + u_y, with
    # z2' = u_z2 (z1 set to 0) and u = evidence - mechanism at the posterior draw
    u_y = data[:, 2] - z[..., 0] - z[..., 1]
    u_z2 = z[..., 1] - COEF[1, 0] * z[..., 0]
    np.testing.assert_allclose(cf["y"], u_z2 + u_y, atol=1e-5)


def coupled(n):
    with numpyro.plate("units", n):
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    numpyro.sample("total", dist.Normal(x.sum(), 0.5))


def test_site_outside_the_plate_coupling_units_is_handled_densely():
    n, units = 4000, 3
    cf = pc.counterfactual(
        coupled,
        {"total": 2.0},
        {"total": 0.0},
        rng_key=KEY,
        num_samples=n,
        model_kwargs={"n": units},
    )
    assert cf.method == "gaussian"
    cov = np.ones((units + 1, units + 1))
    cov[:units, :units] = np.eye(units)
    cov[units, units] = units + 0.25
    mean, post = condition_gaussian(cov, list(range(units)), [units], np.array([2.0]))
    x = np.asarray(cf.latents["x"])
    sd = np.sqrt(np.diag(post))
    assert np.all(np.abs(x.mean(0) - mean) < 5 * sd / np.sqrt(n))
    # the draws are correlated across units as the posterior says
    tol = 5 * np.sqrt(2 / n) * np.outer(sd, sd)
    assert np.all(np.abs(np.cov(x.T) - post) < tol)


def nonlinear():
    x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(jnp.tanh(2.0 * x), 0.5))


def heteroscedastic():
    x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(x, jnp.exp(0.5 * x)))


@pytest.mark.parametrize("model", [nonlinear, heteroscedastic])
@pytest.mark.slow
def test_non_quadratic_density_is_refused_and_auto_falls_back(model):
    with pytest.raises(AbductionError, match=r"not quadratic in the latent sites \['x'\]"):
        pc.counterfactual(model, {"y": 0.5}, {"x": 1.0}, rng_key=KEY, method="gaussian")
    cf = pc.counterfactual(
        model, {"y": 0.5}, {"x": 1.0}, rng_key=KEY, num_samples=20, num_warmup=20
    )
    assert cf.method == "nuts"


def test_discrete_latent_refused():
    def model():
        c = numpyro.sample("c", dist.Bernoulli(0.5))
        numpyro.sample("y", dist.Normal(c, 1.0))

    with pytest.raises(AbductionError, match=r"method='gaussian' cannot infer the discrete"):
        pc.counterfactual(model, {"y": 0.5}, {"c": 1}, rng_key=KEY, method="gaussian")


@st.composite
def linear_sems(draw):
    k = draw(st.integers(2, 5))
    coef = np.zeros((k, k))
    for i in range(k):
        for j in range(i):
            if draw(st.booleans()):
                coef[i, j] = draw(st.floats(-2.0, 2.0).filter(lambda c: abs(c) > 0.1))
    scale = np.array([draw(st.floats(0.3, 2.0)) for _ in range(k)])
    observed = draw(
        st.lists(st.booleans(), min_size=k, max_size=k).filter(lambda o: 0 < sum(o) < k)
    )
    return coef, scale, [i for i in range(k) if observed[i]]


@settings(max_examples=12, deadline=None)
@given(linear_sems())
@pytest.mark.slow
def test_random_linear_sems_posterior_matches_conditioning(case):
    coef, scale, observed = case
    k = len(scale)

    def model():
        values = []
        for i in range(k):
            loc = sum(coef[i, j] * values[j] for j in range(i) if coef[i, j] != 0.0)
            values.append(numpyro.sample(f"v{i}", dist.Normal(loc, scale[i])))

    cov = sem_covariance(coef, scale)
    rng = np.random.default_rng(0)
    sample = rng.multivariate_normal(np.zeros(k), cov)
    evidence = {f"v{i}": float(sample[i]) for i in observed}
    n = 4000
    cf = pc.counterfactual(
        model, evidence, {f"v{observed[0]}": 0.0}, rng_key=KEY, num_samples=n, method="gaussian"
    )
    latent = sorted(int(name[1:]) for name in cf.latents)
    if not latent:
        return  # no latent ancestor of the evidence: nothing to infer
    mean, post = condition_gaussian(cov, latent, observed, sample[observed])
    z = np.stack([np.asarray(cf.latents[f"v{i}"]) for i in latent], -1)
    sd = np.sqrt(np.diag(post))
    assert np.all(np.abs(z.mean(0) - mean) < 5 * sd / np.sqrt(n) + 1e-4)


def test_unobserved_non_gaussian_child_does_not_block_the_engine():
    def model():
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        numpyro.sample("flag", dist.Bernoulli(logits=x))  # not observed: sampled forward
        numpyro.sample("y", dist.Normal(2.0 * x, 1.0))

    cf = pc.counterfactual(model, {"y": 3.0}, {"x": 1.0}, rng_key=KEY, num_samples=20000)
    assert cf.method == "gaussian"
    assert abs(float(cf.latents["x"].mean()) - 1.2) < 5 * np.sqrt(0.2 / 20000)
    # the flag is drawn given the posterior x: P(flag=1) = E[sigmoid(x) | y=3]
    x = np.asarray(cf.latents["x"])
    expected = np.mean(1 / (1 + np.exp(-x)))
    assert abs(float(cf.factual["flag"].mean()) - expected) < 5 * np.sqrt(0.25 / 20000)
