"""The supported families (docs/semantics.md): for each, abduct-then-apply gives the
value back, the noise posterior matches SciPy's CDF, and the noise pushed through
the mechanism has the family's distribution."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy import stats

import probcausal as pc
from probcausal import mechanisms

KEY = jax.random.PRNGKey(0)
N = 4000

# family, SciPy distribution with the same parameters
CONTINUOUS = [
    (dist.Gamma(2.5, 1.5), stats.gamma(2.5, scale=1 / 1.5)),
    (dist.Chi2(3.0), stats.chi2(3.0)),
    (dist.InverseGamma(3.0, 2.0), stats.invgamma(3.0, scale=2.0)),
    (dist.Beta(2.0, 5.0), stats.beta(2.0, 5.0)),
    (dist.Weibull(1.5, 2.0), stats.weibull_min(2.0, scale=1.5)),
    (dist.Kumaraswamy(2.0, 3.0), None),
    (dist.TruncatedNormal(0.5, 1.0, low=0.0), stats.truncnorm(-0.5, np.inf, loc=0.5)),
    (dist.TruncatedNormal(0.0, 1.0, low=-1.0, high=2.0), stats.truncnorm(-1.0, 2.0)),
    (dist.TruncatedNormal(0.0, 2.0, high=1.0), stats.truncnorm(-np.inf, 0.5, scale=2.0)),
    (dist.AsymmetricLaplace(0.0, 1.0, 2.0), None),
    (dist.VonMises(0.0, 2.0), stats.vonmises(2.0)),
    (dist.VonMises(0.0, 900.0), stats.vonmises(900.0)),  # the large-kappa expansion
]
DISCRETE = [
    (dist.NegativeBinomial2(3.0, 2.0), stats.nbinom(2.0, 2.0 / 5.0)),  # mean 3, conc 2
    (dist.GammaPoisson(2.0, 0.5), stats.nbinom(2.0, 0.5 / 1.5)),
    (dist.Geometric(probs=0.3), stats.geom(0.3, loc=-1)),
    (dist.ZeroInflatedPoisson(0.3, 2.0), None),
    (dist.DiscreteUniform(-2, 3), stats.randint(-2, 4)),
    (dist.BetaBinomial(2.0, 3.0, total_count=8), stats.betabinom(8, 2.0, 3.0)),
]


def _kumaraswamy_cdf(x, a=2.0, b=3.0):
    return 1 - (1 - x**a) ** b


def _cdf(fn, ref):
    if ref is not None:
        return ref.cdf
    if isinstance(fn, dist.Kumaraswamy):
        return _kumaraswamy_cdf
    return lambda x: np.asarray(fn.cdf(jnp.asarray(x)))


@pytest.mark.parametrize("fn, ref", CONTINUOUS, ids=lambda v: type(v).__name__)
def test_continuous_family_round_trip_and_noise(fn, ref):
    x = fn.sample(KEY, (N,))
    u = mechanisms.abduct(None, fn, x)
    back = mechanisms.apply(fn, u)
    np.testing.assert_allclose(back, x, rtol=2e-4, atol=2e-5)
    # the noise is the CDF value (the monotone coupling): SciPy's CDF independently;
    # InverseGamma is 1 / Gamma, so its base noise is the upper tail
    want = _cdf(fn, ref)(np.asarray(x, np.float64))
    if isinstance(fn, dist.InverseGamma):
        want = 1 - want
    np.testing.assert_allclose(u, want, atol=2e-4)
    # pushforward of uniform noise is the family (two-sided KS against the CDF)
    draws = mechanisms.apply(fn, mechanisms.sample_noise(jax.random.PRNGKey(1), fn, (N,)))
    assert stats.kstest(np.asarray(draws, np.float64), _cdf(fn, ref)).pvalue > 1e-3


@pytest.mark.parametrize("fn, ref", DISCRETE, ids=lambda v: type(v).__name__)
@pytest.mark.slow
def test_discrete_family_round_trip_and_noise(fn, ref):
    x = fn.sample(KEY, (N,))
    u = mechanisms.abduct(jax.random.PRNGKey(2), fn, x)
    np.testing.assert_array_equal(mechanisms.apply(fn, u), x)
    cdf = _cdf(fn, ref) if ref is not None else None
    if cdf is not None:
        x64 = np.asarray(x, np.float64)
        lo, hi = cdf(x64 - 1), cdf(x64)
        # the noise posterior is uniform on the value's CDF interval
        assert np.all(u >= lo - 1e-5) and np.all(u <= hi + 1e-5)
        frac = (np.asarray(u) - lo) / np.maximum(hi - lo, 1e-12)
        assert stats.kstest(frac, "uniform").pvalue > 1e-3
    # pushforward: frequencies match the pmf
    draws = np.asarray(mechanisms.apply(fn, mechanisms.sample_noise(KEY, fn, (N,))))
    values = np.unique(draws)
    pmf = np.exp(np.asarray(fn.log_prob(jnp.asarray(values))))
    freq = np.array([(draws == v).mean() for v in values])
    np.testing.assert_allclose(freq, pmf, atol=4 * np.sqrt(0.25 / N))


@pytest.mark.parametrize("loc, kappa", [(2.9, 4.0), (-3.0, 0.5), (1.0, 1500.0)])
def test_von_mises_is_a_rotation_of_a_centred_angle(loc, kappa):
    """x = wrap(loc + e): the noise is the centred angle's CDF (SciPy), the round trip
    holds across the wrap at ±pi, draws are VonMises(loc, kappa), and a changed loc
    rotates every unit by the change."""
    fn = dist.VonMises(loc, kappa)
    x = fn.sample(KEY, (N,))
    u = mechanisms.abduct(None, fn, x)
    offset = np.angle(np.exp(1j * (np.asarray(x, np.float64) - loc)))
    np.testing.assert_allclose(u, stats.vonmises.cdf(offset, kappa), atol=2e-4)
    back = np.asarray(mechanisms.apply(fn, u), np.float64)
    np.testing.assert_allclose(np.angle(np.exp(1j * (back - np.asarray(x)))), 0.0, atol=1e-3)
    draws = mechanisms.apply(fn, mechanisms.sample_noise(jax.random.PRNGKey(1), fn, (N,)))
    d_off = np.angle(np.exp(1j * (np.asarray(draws, np.float64) - loc)))
    assert stats.kstest(d_off, stats.vonmises(kappa).cdf).pvalue > 1e-3
    turned = np.asarray(mechanisms.apply(dist.VonMises(loc + 0.7, kappa), u), np.float64)
    np.testing.assert_allclose(
        np.angle(np.exp(1j * (turned - np.asarray(x) - 0.7))), 0.0, atol=1e-3
    )


def test_low_rank_mvn_round_trip():
    fn = dist.LowRankMultivariateNormal(jnp.zeros(3), jnp.ones((3, 1)), jnp.ones(3))
    x = fn.sample(KEY, (50,))
    u = mechanisms.abduct(None, fn, x)
    np.testing.assert_allclose(mechanisms.apply(fn, u), x, atol=1e-4)
    np.testing.assert_allclose(
        np.cov(np.asarray(mechanisms.apply(fn, jax.random.normal(KEY, (20000, 3)))).T),
        fn.covariance_matrix,
        atol=0.1,
    )


@pytest.mark.slow
def test_dirichlet_through_gammas():
    fn = dist.Dirichlet(jnp.array([2.0, 3.0, 5.0]))
    x = fn.sample(KEY, (500,))
    u = mechanisms.abduct(jax.random.PRNGKey(3), fn, x)
    np.testing.assert_allclose(mechanisms.apply(fn, u), x, atol=2e-4)
    draws = np.asarray(mechanisms.apply(fn, mechanisms.sample_noise(KEY, fn, (N, 3))))
    np.testing.assert_allclose(draws.mean(0), [0.2, 0.3, 0.5], atol=4 * np.sqrt(0.25 / N))
    # averaged over x, the abducted uniforms are the prior: U(0, 1) each
    assert stats.kstest(np.asarray(u).ravel(), "uniform").pvalue > 1e-3


def test_folded_normal_abducts_both_preimages_with_their_weights():
    """|y| = x, y ~ N(0.5, 1): the preimage +x has weight f(x) / (f(x) + f(-x))."""
    fn = dist.FoldedDistribution(dist.Normal(0.5, 1.0))
    x = jnp.full((N,), 0.743)
    u = mechanisms.abduct(KEY, fn, x)
    np.testing.assert_allclose(mechanisms.apply(fn, u), x, atol=1e-5)
    pre = 0.5 + np.asarray(u)  # the base value y = loc + u
    plus = stats.norm.pdf(0.743, 0.5) / (stats.norm.pdf(0.743, 0.5) + stats.norm.pdf(-0.743, 0.5))
    frac = float(np.mean(pre > 0))
    assert abs(frac - plus) < 4 * np.sqrt(plus * (1 - plus) / N)
    assert not mechanisms.is_exact(fn)


def test_folded_counterfactual_has_both_answers():
    """y = a + e, x = |y|; evidence a = 0.5, x = 0.743; do(a = 1.5): x' = |1.5 + e| with
    e = 0.243 (weight 0.68) or e = -1.243 (weight 0.32): 1.743 or 0.257."""

    def model():
        a = numpyro.sample("a", dist.Normal(0, 1))
        numpyro.sample("x", dist.FoldedDistribution(dist.Normal(a, 1.0)))

    cf = pc.counterfactual(model, {"a": 0.5, "x": 0.743}, {"a": 1.5}, rng_key=KEY, num_samples=N)
    x = np.asarray(cf["x"])
    near = np.isclose(x, 1.743, atol=1e-4) | np.isclose(x, 0.257, atol=1e-4)
    assert near.all()
    w = stats.norm.pdf(0.243) / (stats.norm.pdf(0.243) + stats.norm.pdf(-1.243))
    assert abs(np.mean(np.isclose(x, 1.743, atol=1e-4)) - w) < 4 * np.sqrt(w * (1 - w) / N)


def test_gamma_counterfactual_is_the_quantile_coupling():
    """x ~ Gamma(2, rate=exp(-a)): x' = F'^-1(F(x)) under do(a = a')."""

    def model():
        a = numpyro.sample("a", dist.Normal(0, 1))
        numpyro.sample("x", dist.Gamma(2.0, jnp.exp(-a)))

    cf = pc.counterfactual(model, {"a": 0.0, "x": 1.3}, {"a": 1.0}, rng_key=KEY, num_samples=2)
    want = stats.gamma(2.0, scale=np.e).ppf(stats.gamma(2.0).cdf(1.3))
    np.testing.assert_allclose(cf["x"], want, rtol=1e-4)
    assert cf.method == "exact"


def test_unsupported_family_is_named():
    def model():
        numpyro.sample("corr", dist.LKJCholesky(2, 1.0))

    with pytest.raises(pc.errors.MissingMechanismError, match="site 'corr'.*LKJCholesky"):
        pc.counterfactual(model, {"corr": jnp.eye(2)}, {}, rng_key=KEY)


def test_multinomial_sequential_binomials():
    p = np.array([0.2, 0.5, 0.3])
    fn = dist.Multinomial(6, probs=jnp.asarray(p))
    x = fn.sample(KEY, (N,))
    u = mechanisms.abduct(jax.random.PRNGKey(2), fn, x)
    np.testing.assert_array_equal(mechanisms.apply(fn, u), x)
    # the first class's noise lies in its binomial CDF interval (SciPy)
    x0 = np.asarray(x[:, 0], np.float64)
    lo, hi = stats.binom(6, 0.2).cdf(x0 - 1), stats.binom(6, 0.2).cdf(x0)
    assert np.all(u[:, 0] >= lo - 1e-5) and np.all(u[:, 0] <= hi + 1e-5)
    # pushforward: every class count is binomial(6, p_j) and the counts sum to 6
    draws = np.asarray(
        mechanisms.apply(fn, mechanisms.sample_noise(jax.random.PRNGKey(1), fn, (N, 3)))
    )
    assert np.all(draws.sum(-1) == 6)
    for j in range(3):
        freq = np.bincount(draws[:, j], minlength=7) / N
        pmf = stats.binom(6, p[j]).pmf(np.arange(7))
        assert np.all(np.abs(freq - pmf) <= 4 * np.sqrt(pmf * (1 - pmf) / N) + 1e-3)


@pytest.mark.slow
def test_multinomial_counterfactual_keeps_the_counts_quantiles():
    def model():
        t = numpyro.sample("t", dist.Bernoulli(0.5))
        probs = jnp.where(t == 1, jnp.array([0.6, 0.3, 0.1]), jnp.array([0.1, 0.3, 0.6]))
        numpyro.sample("c", dist.Multinomial(10, probs=probs))

    cf = pc.counterfactual(
        model, {"t": 0, "c": jnp.array([0, 3, 7])}, {"t": 1}, rng_key=KEY, num_samples=2000
    )
    c = np.asarray(cf["c"])
    assert np.all(c.sum(-1) == 10)
    # the first count was at the bottom of Bin(10, 0.1) (u <= 0.9^10 = 0.35): had t
    # been 1 it lies at the same quantile of Bin(10, 0.6), so at most its 0.35 quantile
    assert np.all(c[:, 0] <= stats.binom(10, 0.6).ppf(0.9**10))


@pytest.mark.slow
def test_mixture_round_trip_and_pushforward():
    fn = dist.MixtureSameFamily(
        dist.Categorical(probs=jnp.array([0.3, 0.7])), dist.Normal(jnp.array([-2.0, 2.0]), 0.5)
    )
    x = fn.sample(KEY, (N,))
    u = mechanisms.abduct(jax.random.PRNGKey(2), fn, x)
    assert u.shape == (N, 4)
    np.testing.assert_allclose(mechanisms.apply(fn, u), x, rtol=1e-5, atol=1e-5)
    draws = mechanisms.apply(fn, mechanisms.sample_noise(jax.random.PRNGKey(1), fn, (N, 4)))
    cdf = lambda v: 0.3 * stats.norm(-2, 0.5).cdf(v) + 0.7 * stats.norm(2, 0.5).cdf(v)  # noqa: E731
    assert stats.kstest(np.asarray(draws, np.float64), cdf).pvalue > 1e-3


def test_mixture_counterfactual_keeps_the_component_by_its_gumbels():
    """Evidence x = 2.5 puts the unit in the component at 3 (noise -0.5). Had the
    weights been (0.9, 0.1) instead of (0.1, 0.9), it stays there with probability
    P(d < -log 9 | d < log 9) = 0.1 / 0.9 (d the logistic difference of the two
    Gumbels), at 3 - 0.5 exactly; otherwise it is a fresh draw of N(-3, 1)."""

    def model():
        t = numpyro.sample("t", dist.Bernoulli(0.5))
        w = jnp.where(t == 1, jnp.array([0.9, 0.1]), jnp.array([0.1, 0.9]))
        numpyro.sample(
            "x",
            dist.MixtureSameFamily(
                dist.Categorical(probs=w), dist.Normal(jnp.array([-3.0, 3.0]), 1.0)
            ),
        )

    n = 4000
    cf = pc.counterfactual(model, {"t": 0, "x": 2.5}, {"t": 1}, rng_key=KEY, num_samples=n)
    x = np.asarray(cf["x"])
    stay = np.isclose(x, 2.5, atol=1e-4)
    p = 0.1 / 0.9
    assert abs(stay.mean() - p) < 4 * np.sqrt(p * (1 - p) / n)
    moved = x[~stay]
    assert abs(moved.mean() + 3) < 4 / np.sqrt(moved.size)
