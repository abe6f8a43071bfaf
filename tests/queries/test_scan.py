"""Time series written with ``numpyro.contrib.control_flow.scan``: interventions at
one step, at every step, and counterfactuals, against the recursion in NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.contrib.control_flow import scan

import probcausal as pc

KEY = jax.random.PRNGKey(0)
A = 0.5  # x_t = A x_{t-1} + e_t, x_{-1} = x0
T = 4


def ar1(T=T):
    def step(x_prev, _):
        x = numpyro.sample("x", dist.Normal(A * x_prev, 1.0))
        return x, x

    x0 = numpyro.sample("x0", dist.Normal(0, 1))
    _, xs = scan(step, x0, jnp.arange(T))
    numpyro.sample("y", dist.Normal(xs.sum(), 1))


def recursion(x0, noise, steps=None):
    """x_t from x0 and the step noise, with ``steps`` {t: value} set."""
    out, prev = [], x0
    for t, e in enumerate(noise):
        prev = steps[t] if steps and t in steps else A * prev + e
        out.append(prev)
    return np.array(out)


def test_graph_sees_through_the_loop():
    assert sorted(pc.graph(ar1).edges()) == [("x", "y"), ("x0", "x")]


def test_intervention_at_one_step():
    n = 4000
    r = pc.interventional(ar1, {"x": {1: 3.0}}, rng_key=KEY, num_samples=n)
    x = np.asarray(r["x"])
    assert x.shape == (n, T) and np.all(x[:, 1] == 3.0)
    # E x_t = A^(t-1) * 3 after the step; Var x_t = sum_k A^(2k) (t - 1 terms)
    for t in (2, 3):
        sd = np.sqrt(sum(A ** (2 * k) for k in range(t - 1)))
        assert abs(x[:, t].mean() - 3 * A ** (t - 1)) < 4 * sd / np.sqrt(n)
    assert abs(x[:, 0].mean()) < 4 * np.sqrt(1 + A**2) / np.sqrt(n)
    # y reads the intervened series
    np.testing.assert_allclose(r["y"].mean(), 3 * (1 + A + A**2), atol=4 * 2.5 / np.sqrt(n))


def test_counterfactual_with_every_noise_known():
    xs = np.array([0.3, -0.2, 1.0, 0.4], np.float32)
    x0, y = 0.5, 2.0
    evidence = {"x0": x0, "x": xs, "y": y}
    noise = xs - A * np.concatenate([[x0], xs[:-1]])
    e_y = y - xs.sum()
    for actions, ref in [
        ({"x": {1: 3.0}}, recursion(x0, noise, {1: 3.0})),
        ({"x": {-1: 0.0, 0: 1.0}}, recursion(x0, noise, {0: 1.0, 3: 0.0})),
        ({"x0": 2.0}, recursion(2.0, noise)),
        ({"x": np.arange(T, dtype=np.float32)}, np.arange(T)),  # every step its row
        ({"x": 1.5}, np.full(T, 1.5)),  # every step the value
    ]:
        cf = pc.counterfactual(ar1, evidence, actions, rng_key=KEY, num_samples=2)
        np.testing.assert_allclose(cf["x"][0], ref, rtol=1e-5, atol=1e-6, err_msg=str(actions))
        np.testing.assert_allclose(cf["y"][0], ref.sum() + e_y, rtol=1e-5)


def test_counterfactual_with_latent_steps_matches_the_gaussian_posterior():
    n, t_len = 4000, 3
    cf = pc.counterfactual(
        ar1, {"y": 2.0}, {"x0": 1.0}, rng_key=KEY, num_samples=n, model_kwargs={"T": t_len}
    )
    # noise e = (e_x0, e_1..e_T) i.i.d. N(0, 1); x = L e; y = c.e + e_y
    lower = np.array(
        [[A ** (t - s) if s <= t else 0 for s in range(t_len + 1)] for t in range(t_len + 1)]
    )
    c = lower[1:].sum(0)
    post_mean = c * 2.0 / (c @ c + 1)
    post_cov = np.eye(t_len + 1) - np.outer(c, c) / (c @ c + 1)
    shift = np.array([A**t for t in range(1, t_len + 1)])  # x0' = 1 instead of e_x0
    cf_map = lower[1:].copy()
    cf_map[:, 0] = 0
    mean = shift + cf_map @ post_mean
    sd = np.sqrt(np.diag(cf_map @ post_cov @ cf_map.T))
    np.testing.assert_array_less(np.abs(np.asarray(cf["x"]).mean(0) - mean), 4 * sd / np.sqrt(n))
    fact = lower[1:] @ post_mean
    sd_f = np.sqrt(np.diag(lower[1:] @ post_cov @ lower[1:].T))
    np.testing.assert_array_less(
        np.abs(np.asarray(cf.factual["x"]).mean(0) - fact), 4 * sd_f / np.sqrt(n)
    )


def markov_chain(T=5):
    def step(prev, _):
        x = numpyro.sample("x", dist.Bernoulli(probs=jnp.where(prev == 1, 0.9, 0.2)))
        return x, x

    x0 = numpyro.sample("x0", dist.Bernoulli(0.5))
    scan(step, x0, jnp.arange(T))


def test_discrete_chain_intervention_at_a_step():
    n = 4000
    r = pc.interventional(markov_chain, {"x": {2: 1}}, rng_key=KEY, num_samples=n)
    x = np.asarray(r["x"])
    assert np.all(x[:, 2] == 1)
    p3 = 0.9
    p4 = p3 * 0.9 + (1 - p3) * 0.2
    for t, p in ((3, p3), (4, p4)):
        assert abs(x[:, t].mean() - p) < 4 * np.sqrt(p * (1 - p) / n)


def test_a_step_action_on_a_site_outside_a_scan_is_named():
    def model():
        numpyro.sample("x", dist.Normal(0, 1))

    with pytest.raises(pc.errors.UnsupportedQueryError, match="scan"):
        pc.interventional(model, {"x": {1: 2.0}}, rng_key=KEY, num_samples=2)


def test_lax_cond_in_a_model():
    def model():
        x = numpyro.sample("x", dist.Normal(0, 1))
        numpyro.sample("y", dist.Normal(jax.lax.cond(x > 0, lambda v: 2 * v, lambda v: -v, x), 0.1))

    cf = pc.counterfactual(model, {"x": 1.0, "y": 2.5}, {"x": -1.0}, rng_key=KEY, num_samples=4)
    # noise of y: 2.5 - 2 = 0.5; had x been -1: -(-1) + 0.5
    np.testing.assert_allclose(cf["y"], 1.5, rtol=1e-5)
    r = pc.interventional(model, {"x": -2.0}, rng_key=KEY, num_samples=2000)
    assert abs(float(r["y"].mean()) - 2.0) < 4 * 0.1 / np.sqrt(2000)


def test_world_handlers_used_directly_refuse_a_scan():
    with pytest.raises(pc.errors.UnsupportedQueryError, match="pc.counterfactual"):
        with numpyro.handlers.seed(rng_seed=0), pc.TwinWorld():
            with pc.do(actions={"x0": 1.0}):
                ar1()
