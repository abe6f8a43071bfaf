"""Adversarial (WGAN-GP) learning of causal models with neural mechanisms."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from flax import nnx
from numpyro.handlers import seed, substitute, trace

import probcausal as pc
from probcausal.errors import TrainingDataError


def _confounded(key, n, do_x=None):
    """x -> z -> y with a latent confounder u of x and y (x <-> y)."""
    k = jax.random.split(key, 4)
    u = jax.random.normal(k[0], (n,))
    x = u + jax.random.normal(k[1], (n,)) if do_x is None else jnp.full((n,), do_x)
    z = jnp.tanh(x) + 0.3 * jax.random.normal(k[2], (n,))
    y = z + 1.5 * u + 0.5 * jax.random.normal(k[3], (n,))
    return {"x": x, "z": z, "y": y}


@pytest.mark.slow
def test_learned_confounded_scm_recovers_the_interventional_distribution():
    rngs = nnx.Rngs(0)
    gx = pc.nn.MLPGenerator(2, 1, hidden=(32, 32), rngs=rngs)
    gz = pc.nn.MLPGenerator(1, 1, hidden=(32, 32), rngs=rngs)
    gy = pc.nn.MLPGenerator(3, 1, hidden=(32, 32), rngs=rngs)

    def model():
        c = numpyro.sample("c", dist.Normal(jnp.zeros(2), 1.0).to_event(1))  # shared noise
        x = pc.nn.sample("x", gx, c, event_dims=(1,))
        z = pc.nn.sample("z", gz, x)
        pc.nn.sample("y", gy, z, c, event_dims=(0, 1))

    # the learned model's graph projects to the true ADMG
    admg = pc.ADMG.from_model(model, hidden=["c", "x_noise", "z_noise", "y_noise"])
    assert sorted(admg.di.edges()) == [("x", "z"), ("z", "y")]
    assert sorted(tuple(sorted(e)) for e in admg.bi.edges()) == [("x", "y")]

    steps = 4000
    gan = pc.infer.WGANGP(
        model,
        {("x", "y", "z"): pc.nn.Critic(3, hidden=(64, 64), rngs=nnx.Rngs(1))},
        generator_optimizer=optax.adam(optax.cosine_decay_schedule(5e-4, steps), b1=0.5, b2=0.9),
        critic_optimizer=optax.adam(5e-4, b1=0.5, b2=0.9),
        batch_size=256,
    )
    data = _confounded(jax.random.key(0), 20000)
    result = gan.fit(data, steps, rng_key=jax.random.key(1), progress=False, chunk_size=500)

    n = 20000
    learned = pc.interventional(
        substitute(model, data=result.params), {"x": 1.0}, rng_key=jax.random.key(2), num_samples=n
    )["y"]
    true_do = _confounded(jax.random.key(3), n, do_x=1.0)["y"]
    # observational P(y | x = 1) in closed form: u | x=1 ~ N(1/2, 1/2)
    eps = jax.random.normal(jax.random.key(4), (n,))
    observational = np.tanh(1.0) + 0.75 + np.sqrt(0.09 + 2.25 * 0.5 + 0.25) * eps
    w_learned = pc.infer.wasserstein_1d(learned, true_do)
    w_observational = pc.infer.wasserstein_1d(observational, true_do)
    # W1 between the true do and observational laws is ~0.76; sampling error of W1 at
    # n = 20000 is ~0.02. The learned model must close at least half of that gap.
    assert w_observational > 0.6
    assert w_learned < 0.5 * w_observational


def _bars(key, d, noise=0.05):
    """8x8 images: class d in {0, 1, 2} is a bright bar on rows 2d+1 and 2d+2."""
    rows = jnp.arange(8)
    bar = ((rows[None, :] == 2 * d[:, None] + 1) | (rows[None, :] == 2 * d[:, None] + 2)).astype(
        jnp.float32
    )
    img = jnp.broadcast_to(bar[:, :, None, None], (d.shape[0], 8, 8, 1)) * 0.8 + 0.1
    return jnp.clip(img + noise * jax.random.normal(key, img.shape), 0.0, 1.0)


def _classify(images):
    """The class whose bar rows are brightest."""
    rows = images[..., 0].mean(-1)  # (n, 8)
    scores = jnp.stack([rows[:, 2 * d + 1] + rows[:, 2 * d + 2] for d in range(3)], -1)
    return jnp.argmax(scores, -1)


@pytest.fixture(scope="module")
def pretrained_bar_generator():
    """A conditional image generator P(image | class), trained here by regression."""
    gen = pc.nn.ConvGenerator(3, 4, image_shape=(8, 8, 1), channels=(16, 8), rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(gen)
    opt = optax.adam(3e-3)
    opt_state = opt.init(state)

    @jax.jit
    def step(state, opt_state, key):
        k1, k2, k3 = jax.random.split(key, 3)
        d = jax.random.randint(k1, (128,), 0, 3)
        target = _bars(k2, d)

        def loss(s):
            out = nnx.merge(graphdef, s)(pc.nn.one_hot(d, 3), jax.random.normal(k3, (128, 4)))
            return jnp.mean((out - target) ** 2)

        value, grads = jax.value_and_grad(loss)(state)
        updates, opt_state = opt.update(grads, opt_state, state)
        return optax.apply_updates(state, updates), opt_state, value

    for i in range(400):
        state, opt_state, value = step(state, opt_state, jax.random.key(i))
    nnx.update(gen, state)
    assert float(value) < 0.01
    return gen


@pytest.mark.slow
def test_frozen_pretrained_image_generator_stays_unchanged_and_draws_under_do(
    pretrained_bar_generator,
):
    frozen = pc.nn.Frozen(pretrained_bar_generator)
    before = [np.array(a, copy=True) for a in jax.tree.leaves(frozen.state)]
    gy = pc.nn.MLPGenerator(64, 1, hidden=(32,), rngs=nnx.Rngs(1))
    probs = jnp.array([0.5, 0.3, 0.2])

    def model():
        d = numpyro.sample("d", dist.Categorical(probs))
        image = pc.nn.sample("image", frozen, pc.nn.one_hot(d, 3), event_dims=(1,))
        pc.nn.sample("y", gy, image, event_dims=(3,))

    params = [n for n, s in trace(seed(model, 0)).get_trace().items() if s["type"] == "param"]
    assert params == ["y_net$params"]  # the frozen generator is no param site

    # data: y = brightness of the top half of the image (high for class 0) + noise
    k = jax.random.split(jax.random.key(0), 3)
    d = jax.random.choice(k[0], 3, (4000,), p=probs)
    images = _bars(k[1], d)
    y = 2.0 * images[:, :4].mean((1, 2, 3)) + 0.1 * jax.random.normal(k[2], (4000,))
    critic = pc.nn.ConvCritic(
        "image", (8, 8, 1), context_features=1, channels=(8, 16), rngs=nnx.Rngs(2)
    )
    gan = pc.infer.WGANGP(
        model,
        {("image", "y"): critic},
        generator_optimizer=optax.adam(1e-3, b1=0.5, b2=0.9),
        critic_optimizer=optax.adam(1e-3, b1=0.5, b2=0.9),
        batch_size=128,
    )
    result = gan.fit({"image": images, "y": y}, 600, rng_key=jax.random.key(3), progress=False)
    after = jax.tree.leaves(frozen.state)
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert list(result.params) == ["y_net$params"]

    learned = substitute(model, data=result.params)
    for cls in range(3):
        draws = pc.interventional(learned, {"d": cls}, rng_key=jax.random.key(4), num_samples=500)
        assert draws["image"].shape == (500, 8, 8, 1)
        assert float((_classify(draws["image"]) == cls).mean()) > 0.95
    # the trained mechanism of y follows the image: class 0 (bar in the top half) is bright
    y0 = pc.interventional(learned, {"d": 0}, rng_key=jax.random.key(5), num_samples=2000)["y"]
    y2 = pc.interventional(learned, {"d": 2}, rng_key=jax.random.key(5), num_samples=2000)["y"]
    truth0 = 2.0 * (0.8 * 2 / 4 + 0.1)  # 1.0
    truth2 = 2.0 * 0.1  # 0.2
    assert float(y0.mean()) > float(y2.mean()) + 0.4
    assert abs(float(y0.mean()) - truth0) < 0.25 and abs(float(y2.mean()) - truth2) < 0.25


def test_wgan_rejects_bad_critics_and_data():
    g = pc.nn.MLPGenerator(0, 1, hidden=(8,), rngs=nnx.Rngs(0))

    def model():
        pc.nn.sample("x", g)

    critic = pc.nn.Critic(1, hidden=(8,), rngs=nnx.Rngs(1))
    with pytest.raises(
        TrainingDataError, match=r"critics or conditions name sites \[.w.\].*sites are"
    ):
        pc.infer.WGANGP(model, {"w": critic})
    gan = pc.infer.WGANGP(model, {"x": critic}, batch_size=30)
    with pytest.raises(
        TrainingDataError, match=r"data has no values for the critics. or conditions. sites"
    ):
        gan.fit({"y": jnp.zeros(10)}, 1, rng_key=jax.random.key(0))
    with pytest.raises(TrainingDataError, match=r"data\['x'\] has shape \(10, 2\): expected"):
        gan.fit({"x": jnp.zeros((10, 2))}, 1, rng_key=jax.random.key(0))
    with pytest.raises(TrainingDataError, match="NaN or infinite"):
        gan.fit({"x": jnp.array([0.0, jnp.nan])}, 1, rng_key=jax.random.key(0))

    def frozen_only():
        pc.nn.sample("x", pc.nn.Frozen(g))

    with pytest.raises(TrainingDataError, match="no trainable parameters"):
        pc.infer.WGANGP(frozen_only, {"x": critic})
    with pytest.raises(ValueError, match="at least one critic"):
        pc.infer.WGANGP(model, {})


@pytest.mark.slow
def test_conditions_clamp_do_parents_to_data():
    """P(y | do(x)) matched with x clamped to data rows: the model's own prior for x
    (N(0, 1)) differs from the data's (Uniform(0, 2)) and must not matter."""
    g = pc.nn.MLPGenerator(1, 1, hidden=(32,), rngs=nnx.Rngs(0))

    def model():
        x = numpyro.sample("x", dist.Normal(0, 1))
        pc.nn.sample("y", g, x)

    k = jax.random.split(jax.random.key(0), 2)
    x = jax.random.uniform(k[0], (4000,), minval=0.0, maxval=2.0)
    data = {"x": x, "y": 2.0 * x + 0.2 * jax.random.normal(k[1], (4000,))}
    gan = pc.infer.WGANGP(
        model,
        {("x", "y"): pc.nn.Critic(2, hidden=(32,), rngs=nnx.Rngs(1))},
        conditions=("x",),
        generator_optimizer=optax.adam(optax.cosine_decay_schedule(2e-3, 2000), b1=0.5, b2=0.9),
        critic_optimizer=optax.adam(2e-3, b1=0.5, b2=0.9),
        batch_size=128,
    )
    result = gan.fit(data, 2000, rng_key=jax.random.key(1), progress=False, chunk_size=500)
    given = {"x": jnp.full((2000,), 1.5)}
    y = gan.sample(result.params, jax.random.key(2), 2000, given=given)["y"]
    # truth N(3, 0.2); the tolerance allows for an imperfect adversarial fit
    assert abs(float(y.mean()) - 3.0) < 0.2
    assert float(y.std()) < 0.5
    with pytest.raises(ValueError, match="this model is conditional"):
        gan.sample(result.params, jax.random.key(2), 10)
