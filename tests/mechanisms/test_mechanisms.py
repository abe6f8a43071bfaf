import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from scipy import stats

from probcausal import mechanisms
from probcausal.errors import MissingMechanismError
from probcausal.mechanisms.gumbel_max import posterior_gumbels

KEY = jax.random.PRNGKey(0)
N = 20000
DISCRETE = [
    dist.Bernoulli(0.3),
    dist.Categorical(jnp.array([0.2, 0.5, 0.3])),
    dist.Poisson(3.5),
    dist.Binomial(8, 0.35),
]

CONTINUOUS = [
    dist.Normal(1.0, 2.0),
    dist.Laplace(-1.0, 0.5),
    dist.Logistic(0.3, 1.5),
    dist.Cauchy(0.0, 1.0),
    dist.Gumbel(1.0, 2.0),
    dist.StudentT(4.0, 1.0, 2.0),
    dist.Uniform(-1.0, 3.0),
    dist.Exponential(2.0),
    dist.HalfNormal(1.5),
    dist.HalfCauchy(0.5),
    dist.LogNormal(0.2, 0.7),
]


@pytest.mark.parametrize("fn", CONTINUOUS, ids=lambda f: type(f).__name__)
def test_continuous_abduction_inverts_apply(fn):
    x = fn.sample(KEY, (50,))
    u = mechanisms.abduct(None, fn, x)
    np.testing.assert_allclose(mechanisms.apply(fn, u), x, rtol=1e-4, atol=1e-4)
    assert mechanisms.is_exact(fn)


@pytest.mark.parametrize("fn", CONTINUOUS, ids=lambda f: type(f).__name__)
@pytest.mark.slow
def test_noise_pushforward_has_the_family_distribution(fn):
    expanded = fn.expand((N,))
    x = np.asarray(mechanisms.apply(expanded, mechanisms.sample_noise(KEY, expanded)))
    ref = np.asarray(fn.sample(jax.random.PRNGKey(1), (N,)))
    # two-sample KS at N=20000: the 1e-3 critical value is about 0.0195
    assert stats.ks_2samp(x, ref).statistic < 0.0195


def test_multivariate_normal_roundtrip_and_covariance():
    cov = jnp.array([[2.0, 0.6], [0.6, 1.0]])
    fn = dist.MultivariateNormal(jnp.array([1.0, -1.0]), cov)
    x = fn.sample(KEY, (5,))
    np.testing.assert_allclose(mechanisms.apply(fn, mechanisms.abduct(None, fn, x)), x, atol=1e-5)
    big = fn.expand((N,))
    xs = mechanisms.apply(big, mechanisms.sample_noise(KEY, big))
    np.testing.assert_allclose(np.cov(np.asarray(xs).T), cov, atol=0.06)


@pytest.mark.parametrize(
    "fn",
    DISCRETE,
    ids=lambda f: type(f).__name__,
)
def test_discrete_noise_pushforward_matches_pmf(fn):
    expanded = fn.expand((N,))
    x = np.asarray(mechanisms.apply(expanded, mechanisms.sample_noise(KEY, expanded)))
    support = np.arange(0, 30)
    pmf = np.exp(np.asarray(fn.log_prob(jnp.asarray(support))))
    freq = np.array([(x == k).mean() for k in support])
    # binomial standard error per cell, 5 sigma
    assert np.all(np.abs(freq - pmf) < 5 * np.sqrt(pmf * (1 - pmf) / N) + 1e-4)


@pytest.mark.parametrize(
    "fn",
    DISCRETE,
    ids=lambda f: type(f).__name__,
)
def test_discrete_abduction_reproduces_the_value_and_the_prior(fn):
    expanded = fn.expand((N,))
    x = expanded.sample(KEY)
    u = mechanisms.abduct(jax.random.PRNGKey(2), expanded, x)
    np.testing.assert_array_equal(mechanisms.apply(expanded, u), x)
    # p(u | x) integrated over p(x) is the prior of u (uniform or standard Gumbel);
    # one-sample KS, 1e-3 critical value 1.95 / sqrt(N) (per noise coordinate)
    prior = (
        "uniform"
        if isinstance(fn, dist.Poisson | dist.BinomialProbs)
        else "logistic"
        if isinstance(fn, dist.BernoulliProbs | dist.BernoulliLogits)
        else "gumbel_r"
    )
    u = np.asarray(u).reshape(N, -1)
    for j in range(u.shape[1]):
        assert stats.kstest(u[:, j], prior).statistic < 1.95 / np.sqrt(N)
    assert not mechanisms.is_exact(fn)


def test_gumbel_posterior_counterfactual_matches_closed_form():
    # Bernoulli y with p(x=1)=0.9, p(x=0)=0.3: P(Y_0 = 1 | Y_1 = 1) under Gumbel-max is
    # min(p0, p1) / p1 = 0.3 / 0.9 (counterfactual stability / monotone coupling).
    y1 = dist.Bernoulli(0.9).expand((N,))
    u = mechanisms.abduct(KEY, y1, jnp.ones(N, jnp.int32))
    y0 = mechanisms.apply(dist.Bernoulli(0.3), u)
    assert abs(float(y0.mean()) - 1 / 3) < 4 * np.sqrt((1 / 3) * (2 / 3) / N)


def test_delta_has_no_noise():
    fn = dist.Delta(jnp.array([1.0, 2.0]))
    assert mechanisms.apply(fn, mechanisms.sample_noise(KEY, fn)).tolist() == [1.0, 2.0]


def test_missing_mechanism_names_site_and_fix():
    with pytest.raises(
        MissingMechanismError, match=r"site 'z'.*ProjectedNormal.*mechanisms.register"
    ):
        mechanisms.noise_shape(dist.ProjectedNormal(jnp.ones(3)), site="z")


def test_register_new_family():
    class Tilted(dist.Gamma):
        pass

    class Affine(mechanisms.Mechanism):
        def sample_noise(self, key, shape, fn=None):
            return jax.random.uniform(key, shape)

        def apply(self, fn, u):
            return fn.concentration * u

        def abduct(self, key, fn, x):
            return x / fn.concentration

    mechanisms.register(Tilted, Affine())
    fn = Tilted(2.0, 1.0)
    assert float(mechanisms.apply(fn, mechanisms.abduct(None, fn, jnp.array(1.5)))) == 1.5
    with pytest.raises(TypeError, match="instance of probcausal.mechanisms.Mechanism"):
        mechanisms.register(Tilted, object())


@pytest.mark.parametrize("fn", CONTINUOUS + DISCRETE, ids=lambda f: type(f).__name__)
def test_standard_noise_is_drawn_without_the_distribution(fn):
    """``standard_noise`` mechanisms promise that ``sample_noise`` ignores ``fn``:
    queries draw their noise in bulk before the model runs. Their draws with and
    without ``fn`` are the same; StudentT's noise depends on ``df`` and says so."""
    leaf = fn.base_dist if isinstance(fn, dist.TransformedDistribution) else fn
    mech = mechanisms.standard_noise_mechanism(type(leaf))
    if isinstance(leaf, dist.StudentT):
        assert mech is None
        return
    assert mech is mechanisms.mechanism_for(leaf)
    shape = mechanisms.noise_shape(leaf)
    np.testing.assert_array_equal(
        mech.sample_noise(KEY, (5, *shape)), mech.sample_noise(KEY, (5, *shape), leaf)
    )


def test_binary_gumbel_max_is_two_class_argmax_through_the_gumbel_difference():
    """Bernoulli's noise d = u0 - u1 of a Gumbel pair gives the two-class argmax,
    ties included (to 0), and its abduction matches the pair's: the posterior of
    u0 - u1 under truncated-Gumbel abduction is the truncated logistic."""
    logits = jnp.array([-1.0, 0.0, 0.5, 2.0, 0.0])
    u = jnp.array([[0.3, -0.7], [1.0, 1.0], [0.0, -0.5], [0.0, -2.5], [0.2, 0.1]])
    fn = dist.Bernoulli(logits=logits)
    expected = jnp.argmax(jnp.stack([jnp.zeros(5), logits], -1) + u, axis=-1)
    d = u[..., 0] - u[..., 1]
    assert mechanisms.apply(fn, d).tolist() == expected.tolist() == [0, 0, 0, 0, 0]
    u = jax.random.gumbel(KEY, (1000, 5, 2))
    expected = jnp.argmax(jnp.stack([jnp.zeros(5), logits], -1) + u, axis=-1)
    np.testing.assert_array_equal(mechanisms.apply(fn, u[..., 0] - u[..., 1]), expected)
    # posterior: the pair's truncated-Gumbel draw, differenced, against the logistic's
    big = dist.Bernoulli(logits=jnp.full((N,), 1.3))
    x = jnp.arange(N) % 2
    pair = posterior_gumbels(KEY, jnp.stack([jnp.zeros(N), big.logits], -1), x)
    d = np.asarray(mechanisms.abduct(jax.random.PRNGKey(5), big, x))
    for value in (0, 1):
        sel = np.asarray(x) == value
        diff = np.asarray(pair[sel, 0] - pair[sel, 1])
        assert stats.ks_2samp(d[sel], diff).statistic < 1.95 * np.sqrt(2 / sel.sum())
