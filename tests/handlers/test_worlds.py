import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.handlers import condition, seed, substitute, trace
from numpyro.infer.util import log_density

import probcausal as pc
from probcausal.errors import SeedRequiredError, WorldDimError
from tests.scms import encouragement


def mixed(n=4):
    mu = numpyro.sample("mu", dist.Normal(0, 1))
    with numpyro.plate("units", n):
        x = numpyro.sample("x", dist.Normal(mu, 1))
        t = numpyro.sample("t", dist.Bernoulli(logits=x))
        c = numpyro.sample("c", dist.Categorical(logits=jnp.stack([x, -x, 0 * x], -1)))
        k = numpyro.sample("k", dist.Poisson(jnp.exp(0.3 * x) + t))
        return numpyro.sample("y", dist.Normal(x + 2 * t + c + 0.5 * k, 1))


DATA = {
    "mu": 0.3,
    "x": jnp.array([-1.0, 0.0, 1.0, 2.0]),
    "t": jnp.array([0, 1, 1, 0]),
    "c": jnp.array([2, 0, 1, 1]),
    "k": jnp.array([0, 3, 1, 2]),
    "y": jnp.array([1.0, 2.0, 3.0, 4.0]),
}


def twin_trace(model, seed_=0, **kw):
    return trace(seed(model, seed_)).get_trace(**kw)


@pytest.mark.slow
def test_factual_world_equals_evidence_and_model_log_density():
    twin = pc.TwinWorld(pc.do(condition(mixed, DATA), {"t": 1}))
    tr = twin_trace(twin)
    for name, value in DATA.items():
        world0 = tr[name]["value"][0] if tr[name]["value"].ndim == 2 else tr[name]["value"]
        np.testing.assert_allclose(world0, value)
    ld_twin, _ = log_density(seed(twin, 0), (), {}, {})
    ld_obs, _ = log_density(condition(mixed, DATA), (), {}, {})
    np.testing.assert_allclose(ld_twin, ld_obs, rtol=1e-6)


def test_unintervened_twin_world_reproduces_the_model_draw():
    # with no intervention, all worlds equal the factual world, which is a model draw
    tr = twin_trace(pc.TwinWorld(mixed), 5)
    for site in ("x", "t", "c", "k", "y"):
        v = tr[site]["value"]
        if v.ndim == 2:
            np.testing.assert_array_equal(v[0], v[1])


def test_evidence_position_does_not_matter():
    inner = twin_trace(pc.TwinWorld(pc.do(condition(mixed, DATA), {"t": 1})), 2)
    outer = twin_trace(condition(pc.TwinWorld(pc.do(mixed, {"t": 1})), DATA), 2)
    observe = twin_trace(pc.observe(pc.do(pc.TwinWorld(mixed), {"t": 1}), DATA), 2)
    for name in DATA:
        np.testing.assert_array_equal(inner[name]["value"], outer[name]["value"])
        np.testing.assert_array_equal(inner[name]["value"], observe[name]["value"])


def test_handler_order_commutes():
    def a():
        with pc.TwinWorld(world_dim=-2), pc.do(actions={"t": 1}), condition(data=DATA):
            return mixed()

    def b():
        with condition(data=DATA), pc.do(actions={"t": 1}), pc.TwinWorld(world_dim=-2):
            return mixed()

    np.testing.assert_array_equal(seed(a, 3)(), seed(b, 3)())


def test_counterfactual_world_of_linear_model_is_exact():
    ev = {"x": 0.5, "h": 1.0, "y": 1.5}
    tr = twin_trace(pc.TwinWorld(pc.do(condition(encouragement, ev), {"h": 2.0})))
    np.testing.assert_allclose(tr["y"]["value"], [1.5, 1.9], rtol=1e-6)


def test_substituted_factual_values_are_abducted():
    # substitute provides factual latents (e.g. posterior draws), no evidence weight
    tr = twin_trace(
        pc.TwinWorld(pc.do(substitute(encouragement, {"x": 0.5, "h": 1.0, "y": 1.5}), {"h": 2.0}))
    )
    np.testing.assert_allclose(tr["y"]["value"], [1.5, 1.9], rtol=1e-6)
    assert not tr["y"]["is_observed"]


def test_do_opened_inside_the_model_applies_to_later_sites():
    def model():
        x = numpyro.sample("x", dist.Normal(0, 1))
        with pc.do(actions={"h": 2.0}):
            h = numpyro.sample("h", dist.Normal(0.5 * x, 1))
        return numpyro.sample("y", dist.Normal(0.7 * x + 0.4 * h, 1))

    ev = {"x": 0.5, "h": 1.0, "y": 1.5}
    tr = twin_trace(pc.TwinWorld(condition(model, ev)))
    np.testing.assert_allclose(tr["y"]["value"], [1.5, 1.9], rtol=1e-6)


def test_world_dim_is_left_of_plates():
    tr = twin_trace(pc.TwinWorld(pc.do(mixed, {"t": 1})))
    assert tr["y"]["value"].shape == (2, 4)
    assert tr["mu"]["value"].shape == ()  # never differs between worlds


def test_with_form_needs_world_dim_for_deeper_plates():
    def block():
        with pc.TwinWorld(), pc.do(actions={"t": 1}):
            return mixed()

    with pytest.raises(WorldDimError, match=r"site 'x'.*world_dim=-2.*TwinWorld\(model\)"):
        seed(block, 0)()


def test_multiworld_has_one_world_per_do_and_labels():
    mw = pc.MultiWorld(pc.do(pc.do(pc.do(encouragement, {"h": 0.0}), {"h": 1.0}), {"x": 2.0}))
    tr = twin_trace(mw)
    assert tr["y"]["value"].shape == (4,)
    assert mw.labels == ["factual", "do(x=2.0)", "do(h=1.0)", "do(h=0.0)"]


def test_world_value_reads_an_earlier_world():
    def nested():
        with (
            pc.MultiWorld(),
            pc.do(actions={"x": 0.0}),
            pc.do(actions={"x": 1.0, "h": pc.WorldValue(1)}),
        ):
            return encouragement()

    y = seed(nested, 0)()
    np.testing.assert_allclose(y[2] - y[1], 0.7, rtol=1e-5)  # direct effect of x


def test_world_value_must_point_back():
    def bad():
        with pc.MultiWorld(), pc.do(actions={"h": pc.WorldValue(2)}), pc.do(actions={"x": 1.0}):
            return encouragement()

    with pytest.raises(ValueError, match="earlier world"):
        seed(bad, 0)()


def test_noise_needs_seed():
    with pytest.raises(SeedRequiredError, match="site 'x'"):
        trace(pc.TwinWorld(encouragement)).get_trace()


@pytest.mark.slow
def test_jit_vmap_equivalence_and_no_tracer_leaks():
    def cf(key, h):
        tr = trace(seed(pc.TwinWorld(pc.do(condition(mixed, DATA), {"x": h})), key)).get_trace()
        return tr["y"]["value"][1]

    keys = jax.random.split(jax.random.PRNGKey(1), 3)
    hs = jnp.stack([jnp.full(4, v) for v in (-1.0, 0.0, 1.0)])
    eager = jnp.stack([cf(k, h) for k, h in zip(keys, hs, strict=True)])
    with jax.checking_leaks():
        batched = jax.jit(jax.vmap(cf))(keys, hs)
    np.testing.assert_allclose(batched, eager, rtol=1e-5)


@pytest.mark.slow
def test_bulk_noise_with_a_distribution_action_and_student_t_site():
    """Standard noise is drawn for all samples at once; a distribution action and a
    StudentT site (its noise depends on ``df``) still draw per sample. The noise is
    shared between the worlds all the same."""

    def model():
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        t = numpyro.sample("t", dist.StudentT(5.0, x, 1.0))
        numpyro.sample("y", dist.Normal(x + t, 1.0))

    n = 20000
    cf = pc.counterfactual(
        model, {}, {"x": dist.Normal(5.0, 0.1)}, rng_key=jax.random.PRNGKey(0), num_samples=n
    )
    fact = cf.factual
    assert abs(float(fact["x"].mean())) < 5 / np.sqrt(n)
    assert abs(float(cf["x"].mean()) - 5.0) < 5 * 0.1 / np.sqrt(n)
    assert float(jnp.std(cf["x"])) < 0.2
    # t and y keep their noise: t' - x' = t - x and y' - x' - t' = y - x - t
    np.testing.assert_allclose(cf["t"] - cf["x"], fact["t"] - fact["x"], atol=1e-4)
    np.testing.assert_allclose(
        cf["y"] - cf["x"] - cf["t"], fact["y"] - fact["x"] - fact["t"], atol=1e-4
    )
    # draws differ between samples (no noise reused across samples)
    assert len(np.unique(np.asarray(cf.noise["y"]))) > 0.99 * n


def test_direct_world_handlers_refuse_code_that_absorbs_the_world_dim():
    import jax.numpy as jnp
    from numpyro.handlers import condition, seed, trace

    from probcausal.errors import WorldShapeError

    def ones():
        a = numpyro.sample("a", dist.Normal(0, 1))
        numpyro.sample("x", dist.Normal(a * jnp.ones(2), 1).to_event(1))

    def stacked():
        a = numpyro.sample("a", dist.Normal(0, 1))
        numpyro.sample("x", dist.Normal(jnp.stack([a, -a]), 1).to_event(1))

    def batched():  # broadcasts against batch dims, as under a plate
        a = numpyro.sample("a", dist.Normal(0, 1))
        numpyro.sample("x", dist.Normal(jnp.stack([a, -a], -1), 1).to_event(1))

    ev = {"a": jnp.array(1.0), "x": jnp.ones(2)}
    for model in (ones, stacked):
        twin = pc.TwinWorld(pc.do(condition(model, ev), {"a": 3.0}))
        with pytest.raises(WorldShapeError, match="world dimension.*jnp.stack"):
            trace(seed(twin, 0)).get_trace()
    twin = pc.TwinWorld(pc.do(condition(batched, ev), {"a": 3.0}))
    x = trace(seed(twin, 0)).get_trace()["x"]["value"]
    assert x.tolist() == [[1.0, 1.0], [3.0, -1.0]]


def test_multiworld_function_form_with_nested_do_and_world_values():
    from numpyro.handlers import seed

    def model():
        x = numpyro.sample("x", dist.Normal(0, 1))
        m = numpyro.sample("m", dist.Normal(2 * x, 1))
        return numpyro.sample("y", dist.Normal(x + 3 * m, 1))

    nested = pc.MultiWorld(pc.do(pc.do(model, {"x": 1.0, "m": pc.WorldValue(1)}), {"x": 0.0}))
    y = seed(nested, 0)()
    assert abs(float(y[2] - y[1]) - 1.0) < 1e-5  # Y_{1, M_0} - Y_0: the direct effect


def test_mcmc_on_a_world_model_is_refused_by_name():
    from numpyro.infer import MCMC, NUTS

    def model():
        x = numpyro.sample("x", dist.Normal(0, 1))
        numpyro.sample("y", dist.Normal(2 * x, 1), obs=1.0)

    mcmc = MCMC(
        NUTS(pc.TwinWorld(pc.do(model, {"x": 0.5}))),
        num_warmup=5,
        num_samples=5,
        progress_bar=False,
    )
    with pytest.raises(pc.errors.WorldInferenceError, match="site 'x'.*pc.counterfactual"):
        mcmc.run(jax.random.PRNGKey(0))
