"""A causal model with an image variable: a pretrained (frozen) conditional image
generator as a mechanism, a learned neural mechanism downstream, images under do.

shape ~ Categorical (0: horizontal bar, 1: vertical bar, 2: cross)
brightness ~ Uniform(0.4, 1)
image = G(shape, brightness, u)       pretrained here, then frozen
score ~ Normal(f(image), sigma)       f an MLP learned by SVI from data

Run: ``python examples/neural_scm.py``; the figure goes to ``$PROBCAUSAL_OUT``
(default ``out/``).
"""

import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpyro
import numpyro.distributions as dist
import optax
from flax import nnx
from numpyro.contrib.module import nnx_module
from numpyro.handlers import substitute

import probcausal as pc

SIZE = 16


def draw_shapes(key, shape, brightness):
    """The true image mechanism: 16x16 shapes with pixel noise."""
    r = jnp.arange(SIZE)
    mid = (r >= 6) & (r <= 9)
    horizontal = jnp.broadcast_to(mid[:, None], (SIZE, SIZE))
    vertical = horizontal.T
    masks = jnp.stack([horizontal, vertical, horizontal | vertical]).astype(jnp.float32)
    img = masks[shape] * brightness[:, None, None]
    img = img + 0.03 * jax.random.normal(key, img.shape)
    return jnp.clip(img, 0.0, 1.0)[..., None]  # (n, 16, 16, 1)


def pretrain_generator(key, steps=150, batch=64):
    """P(image | shape, brightness): the 'pretrained model' we then freeze."""
    gen = pc.nn.ConvGenerator(4, 4, image_shape=(SIZE, SIZE, 1), rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(gen)
    opt = optax.adam(1e-2)
    opt_state = opt.init(state)

    @jax.jit
    def step(state, opt_state, key):
        k = jax.random.split(key, 4)
        shape = jax.random.randint(k[0], (batch,), 0, 3)
        brightness = jax.random.uniform(k[1], (batch,), minval=0.4, maxval=1.0)
        target = draw_shapes(k[2], shape, brightness)
        context = jnp.concatenate([pc.nn.one_hot(shape, 3), brightness[:, None]], -1)

        def loss(s):
            out = nnx.merge(graphdef, s)(context, jax.random.normal(k[3], (batch, 4)))
            return jnp.mean((out - target) ** 2)

        value, grads = jax.value_and_grad(loss)(state)
        updates, opt_state = opt.update(grads, opt_state, state)
        return optax.apply_updates(state, updates), opt_state, value

    for i in range(steps):
        state, opt_state, value = step(state, opt_state, jax.random.fold_in(key, i))
    print(f"pretrained image generator: mse {float(value):.4f}")
    nnx.update(gen, state)
    return pc.nn.Frozen(gen)


def main():
    out = os.environ.get("PROBCAUSAL_OUT", "out")
    os.makedirs(out, exist_ok=True)
    key = jax.random.key(0)
    generator = pretrain_generator(key)
    score_net = pc.nn.MLP(SIZE * SIZE, 1, hidden=(32,), rngs=nnx.Rngs(1))

    @pc.causal_model
    def model(n, data=None, batch=None):
        f = nnx_module("score_net", score_net)
        sigma = numpyro.param("sigma", 1.0, constraint=dist.constraints.positive)
        with numpyro.plate("units", n, subsample_size=batch) as idx:
            obs = {k: v[idx] for k, v in data.items()} if data else {}
            shape = numpyro.sample(
                "shape", dist.Categorical(jnp.array([0.5, 0.3, 0.2])), obs=obs.get("shape")
            )
            brightness = numpyro.sample(
                "brightness", dist.Uniform(0.4, 1.0), obs=obs.get("brightness")
            )
            image = pc.nn.sample(
                "image",
                generator,
                pc.nn.one_hot(shape, 3),
                brightness,
                event_dims=(1, 0),
            )
            loc = f(image.reshape(image.shape[:-3] + (-1,)))[..., 0]
            numpyro.sample("score", dist.Normal(loc, sigma), obs=obs.get("score"))

    print("graph:", sorted(model.graph(1).edges()))

    # data from the true process: the score is the bright area of the image
    k = jax.random.split(key, 4)
    n = 2000
    shape = jax.random.choice(k[0], 3, (n,), p=jnp.array([0.5, 0.3, 0.2]))
    brightness = jax.random.uniform(k[1], (n,), minval=0.4, maxval=1.0)
    score = 10 * draw_shapes(k[2], shape, brightness).mean((1, 2, 3)) + 0.1 * jax.random.normal(
        k[3], (n,)
    )
    data = {"shape": shape, "brightness": brightness, "score": score}

    # Learn the score mechanism by SVI, consistent with the frozen generator: the
    # images come from the generator (the image noise from its prior), the score
    # from data. The generator has no parameters to train.
    def guide(n, data=None, batch=None):
        with numpyro.plate("units", n, subsample_size=batch):
            numpyro.sample("image_noise", dist.Normal(jnp.zeros(4), 1.0).to_event(1))

    fitted = pc.infer.fit_svi(
        model,
        guide,
        optax.adam(5e-3),
        500,
        rng_key=k[0],
        model_args=(n,),
        model_kwargs={"data": data, "batch": 128},
        progress=False,
    )
    print("trained parameters:", sorted(fitted.params))
    learned = substitute(model, data=fitted.params)

    # images and scores under do(shape = s)
    fig, axes = plt.subplots(3, 6, figsize=(9, 4.8))
    for s in range(3):
        draws = pc.interventional(
            learned, {"shape": s}, rng_key=k[1], num_samples=1, model_args=(2000,)
        )
        truth = 10 * draw_shapes(k[2], jnp.full((2000,), s), draws["brightness"][0]).mean()
        print(
            f"E[score | do(shape={s})] = {float(draws['score'].mean()):.3f}"
            f"  (true mechanism: {float(truth):.3f})"
        )
        for j in range(6):
            axes[s, j].imshow(draws["image"][0, j, ..., 0], cmap="gray", vmin=0, vmax=1)
            axes[s, j].axis("off")
        axes[s, 0].set_title(f"do(shape={s})", fontsize=9, loc="left")
    fig.tight_layout()
    path = os.path.join(out, "neural_scm_do.png")
    fig.savefig(path, dpi=100)
    print("images under do:", path)


if __name__ == "__main__":
    main()
