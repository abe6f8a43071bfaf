import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.handlers import condition, seed, trace
from numpyro.infer.util import log_density

import probcausal as pc
from probcausal.errors import InterventionShapeError, SeedRequiredError, UnknownSiteError
from tests.scms import encouragement


def plated(n=5):
    mu = numpyro.sample("mu", dist.Normal(0, 1))
    with numpyro.plate("units", n):
        x = numpyro.sample("x", dist.Normal(mu, 1))
        return numpyro.sample("y", dist.Normal(2 * x, 0.1))


def run(model, seed_=0, *args):
    return trace(seed(model, seed_)).get_trace(*args)


def test_value_intervention_sets_site_and_drops_its_density():
    tr = run(pc.do(encouragement, {"h": 2.0}))
    assert float(tr["h"]["value"]) == 2.0
    assert tr["h"]["is_observed"] and tr["h"]["infer"]["intervened"]
    # the log density ignores h: equal to the model with h removed from the sum
    ld, _ = log_density(pc.do(encouragement, {"h": 2.0}), (), {}, {"x": 0.3, "y": 1.0})
    ref = dist.Normal(0, 1).log_prob(0.3) + dist.Normal(0.7 * 0.3 + 0.8, 1).log_prob(1.0)
    np.testing.assert_allclose(ld, ref, rtol=1e-6)


def test_intervening_with_the_factual_value_changes_nothing():
    tr = run(encouragement, 3)
    h = tr["h"]["value"]
    ev = {n: tr[n]["value"] for n in ("x", "h", "y")}
    twin = run(pc.TwinWorld(pc.do(condition(encouragement, ev), {"h": h})), 3)
    for name in ("x", "h", "y"):
        worlds = jnp.broadcast_to(twin[name]["value"], (2,))  # no world dim: equal worlds
        np.testing.assert_array_equal(worlds, jnp.stack([ev[name], ev[name]]))


def test_batched_values_broadcast_like_batch_dims():
    hs = jnp.array([0.0, 1.0, 2.0])
    s = pc.interventional(
        encouragement, {"h": hs}, rng_key=jax.random.PRNGKey(0), num_samples=20000
    )
    assert s["y"].shape == (20000, 3)
    # E[y | do(h)] = 0.4 h; sd of y given h is sqrt(0.49 + 1)
    tol = 4 * np.sqrt(1.49 / 20000)
    np.testing.assert_allclose(s["y"].mean(0), 0.4 * hs, atol=tol)


def test_callable_shift_uses_natural_value():
    tr = run(encouragement, 1)
    tr2 = run(pc.do(encouragement, {"h": lambda h: h + 1.0}), 1)
    assert tr2["h"]["infer"]["intervened"]
    np.testing.assert_allclose(tr2["h"]["value"], tr["h"]["value"] + 1.0, rtol=1e-6)


def test_stochastic_intervention_replaces_the_distribution():
    s = pc.interventional(
        plated, {"x": dist.Normal(10.0, 0.5)}, rng_key=jax.random.PRNGKey(0), num_samples=4000
    )
    x = s["x"]
    assert x.shape == (4000, 5)
    assert abs(float(x.mean()) - 10.0) < 4 * 0.5 / np.sqrt(x.size)
    assert abs(float(x.std()) - 0.5) < 0.02


def test_intervention_inside_plate():
    tr = run(pc.do(plated, {"x": jnp.arange(5.0)}))
    np.testing.assert_allclose(tr["y"]["value"], 2 * jnp.arange(5.0), atol=0.6)


def test_unknown_site_lists_the_model_sites():
    with pytest.raises(UnknownSiteError, match=r"\['hh'\].*\['h', 'x', 'y'\]"):
        run(pc.do(encouragement, {"hh": 1.0}))


def test_plate_size_mismatch_names_site_and_plate():
    with pytest.raises(
        InterventionShapeError, match=r"site 'x' inside plate\(s\) 'units' \(size 5, dim -1\)"
    ):
        run(pc.do(plated, {"x": jnp.zeros(3)}))


def test_callable_without_seed_raises():
    with pytest.raises(SeedRequiredError, match="site 'h'.*numpyro.handlers.seed"):
        trace(pc.do(condition(encouragement, {"x": 0.1}), {"h": lambda h: h})).get_trace()


def test_actions_must_be_a_dict():
    with pytest.raises(TypeError, match="`actions` must be a dict"):
        pc.do(encouragement, ["h"])


def test_context_manager_form_equals_wrapper_form():
    def block():
        with pc.do(actions={"h": 1.5}):
            return encouragement()

    a = run(block, 4)["y"]["value"]
    b = run(pc.do(encouragement, {"h": 1.5}), 4)["y"]["value"]
    assert float(a) == float(b)


def test_jit_and_vmap_equivalence():
    def sample(key, h):
        return seed(pc.do(encouragement, {"h": h}), key)()

    keys = jax.random.split(jax.random.PRNGKey(0), 6)
    hs = jnp.linspace(-1, 1, 6)
    eager = jnp.stack([sample(k, h) for k, h in zip(keys, hs, strict=True)])
    np.testing.assert_allclose(jax.jit(jax.vmap(sample))(keys, hs), eager, rtol=1e-6)


def test_graph_of_intervened_model_cuts_incoming_edges():
    g = pc.graph(pc.do(encouragement, {"h": 2.0}))
    assert set(g.edges()) == {("x", "y"), ("h", "y")}
    assert g.nodes["h"]["intervened"] and not g.nodes["h"]["latent"]
