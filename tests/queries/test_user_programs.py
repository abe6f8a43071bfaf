"""Queries on models written the way NumPyro users write them.

Vector and event sites built with ``jnp.ones``, ``stack`` and ``where``,
``numpyro.deterministic``, ``obs=``, structural zeros, globals read by the model,
impossible evidence and malformed arguments. Every expected value is computed
independently (closed form or brute-force enumeration with NumPy).
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import probcausal as pc
from probcausal.errors import (
    DeterministicEvidenceError,
    ImpossibleEvidenceError,
    OutOfSupportError,
    UnknownSiteError,
)

KEY = jax.random.PRNGKey(0)


# --- vector sites -----------------------------------------------------------------


def vec_ones():
    a = numpyro.sample("a", dist.Normal(0, 1))
    numpyro.sample("x", dist.Normal(a * jnp.ones(2), 1).to_event(1))


def vec_mvn():
    a = numpyro.sample("a", dist.Normal(0, 1))
    numpyro.sample("x", dist.MultivariateNormal(a * jnp.ones(2), jnp.eye(2)))


def vec_stack():
    a = numpyro.sample("a", dist.Normal(0, 1))
    numpyro.sample("x", dist.Normal(jnp.stack([a, -a]), 1).to_event(1))


def vec_three():
    a = numpyro.sample("a", dist.Normal(0, 1))
    numpyro.sample("x", dist.Normal(a * jnp.ones(3), 1).to_event(1))


@pytest.mark.parametrize(
    "model, x, want",
    [
        (vec_ones, [1.0, 1.0], [3.0, 3.0]),  # x' = x + (a' - a) * 1
        (vec_mvn, [1.0, 1.0], [3.0, 3.0]),
        (vec_stack, [1.0, 1.0], [3.0, -1.0]),  # x' = x + (a' - a) * [1, -1]
        (vec_three, [1.0, 2.0, 0.0], [3.0, 4.0, 2.0]),
    ],
)
def test_vector_site_counterfactual_full_evidence(model, x, want):
    cf = pc.counterfactual(
        model, {"a": 1.0, "x": jnp.array(x)}, {"a": 3.0}, rng_key=KEY, num_samples=3
    )
    np.testing.assert_allclose(cf["x"], np.broadcast_to(want, (3, len(want))), atol=1e-5)
    np.testing.assert_allclose(cf.factual["x"][0], x)


@pytest.mark.parametrize("model", [vec_ones, vec_mvn])
@pytest.mark.slow
def test_vector_site_counterfactual_partial_evidence(model):
    # a | x = [1, 1] is N(2/3, 1/3); x' = 2 + x - a: mean 7/3, variance 1/3 per element
    n = 4000
    cf = pc.counterfactual(model, {"x": jnp.ones(2)}, {"a": 2.0}, rng_key=KEY, num_samples=n)
    x_cf = np.asarray(cf["x"])
    assert x_cf.shape == (n, 2)
    tol = 4 * np.sqrt(1 / 3 / n)
    np.testing.assert_allclose(x_cf.mean(0), 7 / 3, atol=tol)
    # both elements move together: x'_1 - x'_2 = x_1 - x_2 = 0
    np.testing.assert_allclose(x_cf[:, 0], x_cf[:, 1], atol=1e-5)


def test_where_selects_probabilities_in_each_world():
    p0, p1 = jnp.array([0.7, 0.2, 0.1]), jnp.array([0.1, 0.2, 0.7])

    def model():
        t = numpyro.sample("t", dist.Bernoulli(0.5))
        numpyro.sample("c", dist.Categorical(probs=jnp.where(t > 0.5, p1, p0)))

    n = 6000
    cf = pc.counterfactual(model, {"t": 0, "c": 0}, {"t": 1}, rng_key=KEY, num_samples=n)
    # Gumbel-max given argmax(log p0 + g) = 0: the counterfactual class under p1,
    # brute force over the noise (rejection on a large Gumbel draw)
    g = np.random.default_rng(0).gumbel(size=(400_000, 3))
    keep = np.argmax(np.log(np.asarray(p0)) + g, 1) == 0
    truth = np.bincount(np.argmax(np.log(np.asarray(p1)) + g[keep], 1), minlength=3) / keep.sum()
    got = np.bincount(np.asarray(cf["c"]), minlength=3) / n
    np.testing.assert_allclose(got, truth, atol=4 * np.sqrt(0.25 / n) + 0.005)


def test_vector_site_under_a_plate():
    def model(n=4):
        a = numpyro.sample("a", dist.Normal(0, 1))
        with numpyro.plate("units", n):
            numpyro.sample("x", dist.Normal(a * jnp.ones((n, 2)), 1).to_event(1))

    x = jnp.arange(8.0).reshape(4, 2)
    cf = pc.counterfactual(model, {"a": 0.5, "x": x}, {"a": 1.5}, rng_key=KEY, num_samples=2)
    np.testing.assert_allclose(cf["x"][0], x + 1.0, atol=1e-5)


# --- deterministic sites ----------------------------------------------------------


def det_model():
    a = numpyro.sample("a", dist.Normal(0, 1))
    b = numpyro.deterministic("b", 2 * a)
    numpyro.sample("y", dist.Normal(b + 1, 1))


def test_deterministic_sites_in_interventional_and_ate():
    s = pc.interventional(det_model, {"a": 1.5}, rng_key=KEY, num_samples=5)
    np.testing.assert_allclose(s["b"], 3.0)
    assert s["y"].shape == (5,)
    assert float(pc.ate(det_model, "a", "y", rng_key=KEY, num_samples=50)) == pytest.approx(2.0)


def test_deterministic_sites_in_every_world():
    cf = pc.counterfactual(
        det_model, {"a": 1.0, "y": 4.0}, [{"a": 2.0}, {"a": 0.0}], rng_key=KEY, num_samples=2
    )
    np.testing.assert_allclose(cf["b"][0], [4.0, 0.0])
    np.testing.assert_allclose(cf.factual["b"], 2.0)
    np.testing.assert_allclose(cf["y"][0], [6.0, 2.0], atol=1e-5)  # u = 4 - 3 = 1


def test_evidence_on_a_deterministic_site_is_refused():
    with pytest.raises(DeterministicEvidenceError, match="'b' is a numpyro.deterministic.*'a'"):
        pc.counterfactual(det_model, {"b": 1.0}, {"a": 0.0}, rng_key=KEY)
    with pytest.raises(UnknownSiteError, match="deterministic"):
        pc.interventional(det_model, {"b": 1.0}, rng_key=KEY)


# --- obs= is evidence about the factual world, in every query -------------------


def obs_model(y=None):
    x = numpyro.sample("x", dist.Normal(0, 1))
    numpyro.sample("y", dist.Normal(2 * x, 1), obs=y)


def test_obs_is_factual_evidence_in_interventional_and_ate():
    y = jnp.array(1.0)
    s = pc.interventional(
        obs_model, {"x": 1.0}, rng_key=KEY, num_samples=2000, model_kwargs={"y": y}
    )
    cf = pc.counterfactual(
        obs_model, {}, {"x": 1.0}, rng_key=KEY, num_samples=2000, model_kwargs={"y": y}
    )
    # y' = 2 + (y - 2x), x | y=1 ~ N(0.4, 0.2): mean 2.2, variance 4 * 0.2
    np.testing.assert_allclose(s["y"], cf["y"])
    assert abs(float(s["y"].mean()) - 2.2) < 4 * np.sqrt(0.8 / 2000)
    effect = pc.ate(obs_model, "x", "y", rng_key=KEY, num_samples=200, model_kwargs={"y": y})
    assert float(effect) == pytest.approx(2.0, abs=1e-4)


def test_without_obs_interventional_is_ancestral():
    s = pc.interventional(obs_model, {"x": 1.0}, rng_key=KEY, num_samples=4000)
    assert abs(float(s["y"].mean()) - 2.0) < 4 * np.sqrt(1 / 4000)
    assert abs(float(s["y"].var()) - 1.0) < 4 * np.sqrt(2 / 4000)


# --- impossible evidence and actions ---------------------------------------------


def _one(fn):
    def model():
        numpyro.sample("v", fn)

    return model


@pytest.mark.parametrize(
    "fn, value, error",
    [
        (dist.Bernoulli(0.3), 2, OutOfSupportError),
        (dist.Bernoulli(0.3), 0.5, OutOfSupportError),
        (dist.Categorical(probs=jnp.ones(3) / 3), 5, OutOfSupportError),
        (dist.Poisson(2.0), -2, OutOfSupportError),
        (dist.Poisson(2.0), 2.5, OutOfSupportError),
        (dist.Exponential(1.0), -1.0, ImpossibleEvidenceError),
        (dist.Uniform(0.0, 1.0), 3.0, ImpossibleEvidenceError),
        (dist.Bernoulli(probs=1.0), 0, ImpossibleEvidenceError),
    ],
)
def test_impossible_evidence_is_refused(fn, value, error):
    with pytest.raises(error, match="'v'"):
        pc.counterfactual(_one(fn), {"v": value}, {}, rng_key=KEY, num_samples=2)


def test_impossible_evidence_message_names_value_and_support():
    with pytest.raises(ImpossibleEvidenceError, match=r"3\.0.*support of Uniform.*\[0, 1\]"):
        pc.counterfactual(_one(dist.Uniform(0.0, 1.0)), {"v": 3.0}, {}, rng_key=KEY)
    with pytest.raises(OutOfSupportError, match=r"value 5 for site 'v'.*\{0, 1, 2\}"):
        pc.counterfactual(_one(dist.Categorical(probs=jnp.ones(3) / 3)), {"v": 5}, {}, rng_key=KEY)


def test_impossible_evidence_on_one_unit_names_the_index():
    def model():
        with numpyro.plate("units", 3):
            numpyro.sample("v", dist.Exponential(1.0))

    with pytest.raises(ImpossibleEvidenceError, match=r"index \(1,\) is -1\.0"):
        pc.counterfactual(model, {"v": jnp.array([1.0, -1.0, 2.0])}, {}, rng_key=KEY)


def test_obs_values_are_checked_too():
    def model(y):
        x = numpyro.sample("x", dist.Normal(0, 1))
        numpyro.sample("y", dist.Exponential(jnp.exp(x)), obs=y)

    with pytest.raises(ImpossibleEvidenceError, match="'y'"):
        pc.counterfactual(model, {"x": 0.0}, {"x": 1.0}, rng_key=KEY, model_args=(-1.0,))


def test_actions_outside_a_discrete_support_are_refused():
    def model():
        t = numpyro.sample("t", dist.Bernoulli(0.5))
        c = numpyro.sample("c", dist.Categorical(probs=jnp.ones(3) / 3))
        numpyro.sample("y", dist.Normal(t + c, 1))

    for action in ({"t": 5}, {"t": 0.5}, {"c": 3}, {"c": -1}):
        with pytest.raises(OutOfSupportError, match="intervention value"):
            pc.interventional(model, action, rng_key=KEY, num_samples=2)
        with pytest.raises(OutOfSupportError, match="intervention value"):
            pc.counterfactual(model, {"y": 0.0}, action, rng_key=KEY, num_samples=2)


def test_float_actions_and_evidence_on_categorical_sites():
    def model():
        c = numpyro.sample("c", dist.Categorical(probs=jnp.array([0.2, 0.3, 0.5])))
        numpyro.sample("y", dist.Normal(jnp.array([0.0, 1.0, 5.0])[c], 1))

    effect = pc.ate(model, "c", "y", rng_key=KEY, num_samples=100)  # defaults 1.0, 0.0
    assert float(effect) == pytest.approx(1.0, abs=1e-5)
    cf = pc.counterfactual(model, {"c": 2.0, "y": 5.5}, {"c": 1.0}, rng_key=KEY, num_samples=2)
    np.testing.assert_allclose(cf["y"], 1.5, atol=1e-5)


# --- structural zeros -------------------------------------------------------------


@pytest.mark.slow
def test_structural_zero_class_counterfactual():
    """either = tub OR lung as a deterministic CPT (asia): given either = yes,
    tub = no (so lung = yes), do(tub = yes) keeps either = yes with probability 1."""
    cpt = jnp.array([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]]])  # [tub, lung] -> either

    def model():
        tub = numpyro.sample("tub", dist.Categorical(probs=jnp.array([0.99, 0.01])))
        lung = numpyro.sample("lung", dist.Categorical(probs=jnp.array([0.9, 0.1])))
        numpyro.sample("either", dist.Categorical(probs=cpt[tub, lung]))

    cf = pc.counterfactual(model, {"either": 1, "tub": 0}, {"tub": 1}, rng_key=KEY, num_samples=500)
    assert np.all(np.asarray(cf["either"]) == 1)
    assert np.all(np.asarray(cf["lung"]) == 1)
    # and with the other class: either = no, do(tub=yes) -> either = yes surely
    cf = pc.counterfactual(model, {"either": 0}, {"tub": 1}, rng_key=KEY, num_samples=500)
    assert np.all(np.asarray(cf["either"]) == 1)
    assert np.all(np.isfinite(np.asarray(cf.noise["either"])))


# --- compiled programs are never stale --------------------------------------------

SCALE = {"v": 1.0}


def global_model():
    x = numpyro.sample("x", dist.Normal(0, 1))
    numpyro.sample("y", dist.Normal(SCALE["v"] * x, 1))


def test_changed_global_is_not_answered_by_a_stale_program():
    SCALE["v"] = 1.0
    try:
        a = pc.counterfactual(
            global_model, {"x": 1.0, "y": 1.0}, {"x": 2.0}, rng_key=KEY, num_samples=2
        )
        SCALE["v"] = 3.0
        b = pc.counterfactual(
            global_model, {"x": 1.0, "y": 1.0}, {"x": 2.0}, rng_key=KEY, num_samples=2
        )
        s = pc.interventional(global_model, {"x": 2.0}, rng_key=KEY, num_samples=4000)
    finally:
        SCALE["v"] = 1.0
    np.testing.assert_allclose(a["y"], 2.0, atol=1e-5)  # y' = 1 * 2 + (1 - 1)
    np.testing.assert_allclose(b["y"], 4.0, atol=1e-5)  # y' = 3 * 2 + (1 - 3)
    assert abs(float(s["y"].mean()) - 6.0) < 4 / np.sqrt(4000)


def test_changed_closure_value_is_not_answered_by_a_stale_program():
    def make(scale):
        w = np.array([scale])

        def model():
            x = numpyro.sample("x", dist.Normal(0, 1))
            numpyro.sample("y", dist.Normal(w[0] * x, 1))

        return model, w

    model, w = make(1.0)
    a = pc.counterfactual(model, {"x": 1.0, "y": 1.0}, {"x": 2.0}, rng_key=KEY, num_samples=2)
    w[0] = 2.0  # mutated in place
    b = pc.counterfactual(model, {"x": 1.0, "y": 1.0}, {"x": 2.0}, rng_key=KEY, num_samples=2)
    np.testing.assert_allclose(a["y"], 2.0, atol=1e-5)
    np.testing.assert_allclose(b["y"], 3.0, atol=1e-5)  # 2 * 2 + (1 - 2)


# --- malformed arguments ----------------------------------------------------------


@pytest.mark.parametrize("n", [0, -3, 2.5, "10"])
def test_num_samples_must_be_a_positive_int(n):
    with pytest.raises((TypeError, ValueError), match="num_samples"):
        pc.counterfactual(obs_model, {"x": 0.0}, {"x": 1.0}, rng_key=KEY, num_samples=n)
    with pytest.raises((TypeError, ValueError), match="num_samples"):
        pc.interventional(obs_model, {"x": 1.0}, rng_key=KEY, num_samples=n)


@pytest.mark.parametrize("key", [None, 0, np.float32(1.0)])
def test_rng_key_must_be_a_prng_key(key):
    with pytest.raises(TypeError, match="rng_key.*PRNGKey"):
        pc.counterfactual(obs_model, {"x": 0.0}, {"x": 1.0}, rng_key=key)


def test_new_style_keys_work():
    cf = pc.counterfactual(
        obs_model, {"x": 0.0, "y": 1.0}, {"x": 1.0}, rng_key=jax.random.key(0), num_samples=2
    )
    np.testing.assert_allclose(cf["y"], 3.0)


def test_evidence_and_actions_must_be_dicts():
    with pytest.raises(TypeError, match="evidence.*dict"):
        pc.counterfactual(obs_model, [("x", 0.0)], {"x": 1.0}, rng_key=KEY)
    with pytest.raises(TypeError, match="actions.*dict"):
        pc.counterfactual(obs_model, {"x": 0.0}, "x", rng_key=KEY)


def test_misspelt_engine_keyword_is_named():
    with pytest.raises(TypeError, match="'num_warmpu' \\(did you mean 'num_warmup'\\?\\)"):
        pc.counterfactual(obs_model, {"y": 0.0}, {"x": 1.0}, rng_key=KEY, num_warmpu=10)


# --- brute force: a discrete network with a deterministic row -------------------


def test_discrete_counterfactual_matches_brute_force():
    """P(y' = 1 | evidence) on a three-node binary chain with Gumbel-max noise,
    against a brute-force sum over every latent configuration and the noise."""
    p_a = np.array([0.6, 0.4])
    p_b = np.array([[0.8, 0.2], [0.0, 1.0]])  # a=1 forces b=1
    p_c = np.array([[0.9, 0.1], [0.3, 0.7]])

    def model():
        a = numpyro.sample("a", dist.Categorical(probs=jnp.asarray(p_a)))
        b = numpyro.sample("b", dist.Categorical(probs=jnp.asarray(p_b)[a]))
        numpyro.sample("c", dist.Categorical(probs=jnp.asarray(p_c)[b]))

    n = 8000
    cf = pc.counterfactual(model, {"c": 1}, {"a": 0}, rng_key=KEY, num_samples=n)
    # brute force: posterior of (a, b) given c=1, then the Gumbel noise of b and c
    rng = np.random.default_rng(1)
    g = rng.gumbel(size=(200_000, 2, 2))
    total = 0.0
    for a, b in itertools.product(range(2), range(2)):
        w = p_a[a] * p_b[a, b] * p_c[b, 1]
        if w == 0:
            continue
        with np.errstate(divide="ignore"):
            keep = (np.argmax(np.log(p_b[a]) + g[:, 0], 1) == b) & (
                np.argmax(np.log(p_c[b]) + g[:, 1], 1) == 1
            )
            b_cf = np.argmax(np.log(p_b[0]) + g[keep, 0], 1)
            c_cf = np.argmax(np.log(p_c[b_cf]) + g[keep, 1], 1)
        total += w * c_cf.mean()
    truth = total / sum(p_a[a] * p_b[a, b] * p_c[b, 1] for a in range(2) for b in range(2))
    got = float(np.mean(np.asarray(cf["c"])))
    assert abs(got - truth) < 4 * np.sqrt(truth * (1 - truth) / n) + 0.01


def test_probabilities_of_causation_need_a_discrete_outcome():
    def model():
        x = numpyro.sample("x", dist.Bernoulli(0.5))
        numpyro.sample("y", dist.Normal(x, 1))

    for query in (
        pc.probability_of_necessity,
        pc.probability_of_sufficiency,
        pc.probability_of_necessity_and_sufficiency,
    ):
        with pytest.raises(pc.errors.UnsupportedQueryError, match="'y' is a continuous Normal"):
            query(model, "x", "y", rng_key=KEY, num_samples=10)


def test_results_print_a_summary_not_arrays():
    cf = pc.counterfactual(
        det_model, {"a": 1.0, "y": 4.0}, [{"a": 2.0}, {"a": 0.0}], rng_key=KEY, num_samples=3
    )
    text = repr(cf)
    assert text == (
        "CounterfactualResult(method='exact', num_samples=3, "
        "worlds=['factual', 'do(a=2.0)', 'do(a=0.0)'], evidence=['a', 'y'], "
        "sites=[a(3, 2), b(3, 2), y(3, 2)])"
    )
    assert str(cf) == text


@pytest.mark.parametrize(
    "fn",
    [dist.Poisson(3.0), dist.NegativeBinomial2(3.0, 2.0), dist.Geometric(probs=0.3)],
    ids=lambda f: type(f).__name__,
)
@pytest.mark.slow
def test_unbounded_discrete_latent_posterior_by_truncated_enumeration(fn):
    def model():
        k = numpyro.sample("k", fn)
        numpyro.sample("y", dist.Normal(k, 1.0))

    n = 4000
    cf = pc.counterfactual(model, {"y": 5.0}, {"k": 0}, rng_key=KEY, num_samples=n)
    assert cf.method == "enumeration"
    ks = np.arange(300)
    w = np.exp(np.asarray(fn.log_prob(jnp.asarray(ks))) - 0.5 * (5.0 - ks) ** 2)
    w /= w.sum()
    mean, sd = (ks * w).sum(), np.sqrt((ks**2 * w).sum() - (ks * w).sum() ** 2)
    assert abs(float(cf.latents["k"].mean()) - mean) < 4 * sd / np.sqrt(n)
    # the counterfactual y' = 0 + (y - k)
    np.testing.assert_allclose(cf["y"], 5.0 - np.asarray(cf.latents["k"]), atol=1e-5)
