"""Neural sites: shapes, noise sharing across worlds, abduction through a neural
mechanism, discrete sites, frozen modules, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from flax import nnx
from numpyro.handlers import seed, trace

import probcausal as pc


class Bilinear(nnx.Module):
    """y = (x + 1) * u: the noise enters non-additively."""

    noise_features = 1
    context_features = 1

    def __call__(self, context, noise):
        return ((context + 1.0) * noise)[..., 0]


def test_mlp_generator_site_shapes_inside_plates():
    g = pc.nn.MLPGenerator(2, 3, out_shape=(4,), hidden=(8,), rngs=nnx.Rngs(0))

    def model():
        with numpyro.plate("units", 5):
            a = numpyro.sample("a", dist.Normal(0, 1))
            b = numpyro.sample("b", dist.Normal(0, 1))
            return pc.nn.sample("v", g, a, b)

    tr = trace(seed(model, 0)).get_trace()
    assert tr["v"]["value"].shape == (5, 4)
    assert tr["v_noise"]["value"].shape == (5, 3)
    assert tr["v"]["fn"].event_dim == 1
    assert "v_net$params" in tr and tr["v_net$params"]["type"] == "param"


def test_twin_world_shares_the_noise_of_a_neural_site():
    g = pc.nn.MLPGenerator(1, 2, hidden=(8,), rngs=nnx.Rngs(0))

    def model():
        x = numpyro.sample("x", dist.Normal(0, 1))
        return pc.nn.sample("y", g, x)

    with pc.TwinWorld(), pc.do(actions={"x": 2.0}):
        tr = trace(seed(model, 1)).get_trace()
    y, x, u = tr["y"]["value"], tr["x"]["value"], tr["y_noise"]["value"]
    assert y.shape == (2,) and x.shape == (2,)
    assert float(x[1]) == 2.0
    # each world is the generator applied to that world's x and the one shared noise
    expected = g(x[:, None], jnp.broadcast_to(u, (2, 2)))
    np.testing.assert_allclose(y, expected, rtol=1e-6)


def test_counterfactual_through_a_nonadditive_neural_mechanism():
    """x=1, y=2 gives u=1; under do(x=3): y = 4u + (2 - 2u) -> 4. Given x, y is
    linear in the latent noise u: the conjugate engine is exact here."""
    g = Bilinear()

    def model():
        x = numpyro.sample("x", dist.Normal(0, 1))
        return pc.nn.sample("y", g, x, obs_scale=0.01)

    r = pc.counterfactual(
        model, {"x": 1.0, "y": 2.0}, {"x": 3.0}, rng_key=jax.random.key(0), num_samples=400
    )
    assert r.method == "gaussian"
    # posterior sd of u ~ 0.005, so y_cf = 2 + 2u has sd ~ 0.01; 5 sd tolerance
    assert abs(float(r["y"].mean()) - 4.0) < 0.02
    assert float(r["y"].std()) < 0.05


def test_discrete_neural_site_is_gumbel_max_and_counterfactually_stable():
    logits_net = lambda context, noise: jnp.concatenate(
        [context, jnp.zeros_like(context), -context], axis=-1
    )

    def model():
        x = numpyro.sample("x", dist.Normal(0, 1))
        return pc.nn.sample(
            "d", logits_net, x, noise=dist.Normal(0, 1).expand([1]).to_event(1), num_classes=3
        )

    with pc.TwinWorld(), pc.do(actions={"x": 0.0}):
        tr = trace(seed(model, 3)).get_trace()
    d = tr["d"]["value"]
    assert d.shape == (2, 3)
    np.testing.assert_array_equal(d.sum(-1), 1.0)
    g = tr["d_gumbel"]["value"]
    logits = jnp.stack([tr["x"]["value"], 0 * tr["x"]["value"], -tr["x"]["value"]], -1)
    np.testing.assert_array_equal(jnp.argmax(d, -1), jnp.argmax(logits + g, -1))
    # class frequencies follow softmax(logits): Gumbel-max
    draws = pc.interventional(model, {"x": 1.0}, rng_key=jax.random.key(0), num_samples=20000)
    freq = np.asarray(draws["d"].mean(0))
    p = np.asarray(jax.nn.softmax(jnp.array([1.0, 0.0, -1.0])))
    assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / 20000))


def test_straight_through_gradient_is_the_softmax_gradient():
    g = jnp.zeros(3)
    f_hard = lambda z: pc.nn.gumbel_softmax(z, g, 1.0, True)[1]
    f_soft = lambda z: pc.nn.gumbel_softmax(z, g, 1.0, False)[1]
    logits = jnp.array([0.3, 0.1, -0.2])
    assert float(f_hard(logits)) == 0.0  # argmax is class 0
    np.testing.assert_allclose(jax.grad(f_hard)(logits), jax.grad(f_soft)(logits), rtol=1e-6)


def test_frozen_module_creates_no_param_site_and_blocks_gradients():
    module = pc.nn.MLPGenerator(1, 1, hidden=(8,), rngs=nnx.Rngs(0))
    frozen = pc.nn.Frozen(module)
    assert frozen.out_shape == () and frozen.noise_features == 1

    def model():
        x = numpyro.sample("x", dist.Normal(0, 1))
        return pc.nn.sample("y", frozen, x)

    tr = trace(seed(model, 0)).get_trace()
    assert not [n for n, s in tr.items() if s["type"] == "param"]
    # gradients flow to the inputs (so modules upstream can train) ...
    dx = jax.grad(lambda c: frozen(c, jnp.zeros((1, 1))).sum())(jnp.ones((1, 1)))
    assert float(jnp.abs(dx).sum()) > 0
    # ... and the weights are a copy: changing the module does not change the frozen one
    before = jax.tree.map(np.asarray, frozen.state)
    nnx.update(module, jax.tree.map(lambda a: a + 1.0, nnx.state(module)))
    after = jax.tree.map(np.asarray, frozen.state)
    pairs = zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True)
    assert all(np.array_equal(a, b) for a, b in pairs)


def test_neural_site_errors_name_the_site():
    g = pc.nn.MLPGenerator(2, 1, rngs=nnx.Rngs(0))

    def wrong_context():
        x = numpyro.sample("x", dist.Normal(0, 1))
        pc.nn.sample("y", g, x)

    with pytest.raises(ValueError, match="neural site 'y': its parents give 1 context features"):
        trace(seed(wrong_context, 0)).get_trace()

    def no_noise_size():
        pc.nn.sample("y", lambda c, u: u[..., 0])

    with pytest.raises(ValueError, match="neural site 'y': cannot tell the noise size"):
        trace(seed(no_noise_size, 0)).get_trace()

    def wrong_event_dims():
        x = numpyro.sample("x", dist.Normal(0, 1))
        pc.nn.sample("y", g, x, event_dims=(1,))

    with pytest.raises(ValueError, match="parent 0 has shape \\(\\) but event_dims"):
        trace(seed(wrong_event_dims, 0)).get_trace()

    with pytest.raises(ValueError, match="divisible by 4"):
        pc.nn.ConvGenerator(1, 1, image_shape=(10, 10, 1), rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="Frozen wraps a flax.nnx.Module"):
        pc.nn.Frozen(lambda x: x)


@pytest.mark.slow
def test_amortized_encoder_guide_abducts_without_fitting_per_query():
    """Train q(u | x, y) once on simulations; abduction is then a forward pass."""
    import optax
    from numpyro.handlers import condition

    g = Bilinear()

    def model():
        x = numpyro.sample("x", dist.Normal(0, 1))
        return pc.nn.sample("y", g, x, obs_scale=0.05)

    sims = pc.interventional(model, {}, rng_key=jax.random.key(0), num_samples=8000)
    data = {"x": sims["x"], "y": sims["y"]}

    def plated():
        with numpyro.plate("units", 8000):
            model()

    guide = pc.nn.EncoderGuide(
        pc.nn.Encoder(2, 1, hidden=(64, 64), rngs=nnx.Rngs(0)), ["x", "y"], "y_noise"
    )
    fitted = pc.infer.fit_svi(
        condition(plated, data),
        guide.bind(data),
        optax.adam(optax.cosine_decay_schedule(3e-3, 3000)),
        3000,
        rng_key=jax.random.key(1),
        progress=False,
    )
    # x = 0.5, y = 1.5 gives u = 1; under do(x=2): y = 3u + (1.5 - 1.5u) = 1.5 + 1.5u -> 3
    r = pc.counterfactual(
        model,
        {"x": 0.5, "y": 1.5},
        {"x": 2.0},
        rng_key=jax.random.key(2),
        num_samples=2000,
        method="svi",
        guide=guide,
        guide_params=fitted.params,
    )
    # exact posterior sd of u is 0.05/1.5 ~ 0.033, so y_cf has sd ~ 0.05
    assert abs(float(r["y"].mean()) - 3.0) < 0.1
    assert float(r["y"].std()) < 0.2
