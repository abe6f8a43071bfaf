"""SVI with neural mechanisms: learned mechanisms answer interventional queries;
subsampled plates; amortized encoder guides for abduction."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from flax import nnx
from numpyro.contrib.module import nnx_module
from numpyro.handlers import substitute

import probcausal as pc


def _nonlinear_data(key, n):
    kx, ky = jax.random.split(key)
    x = jax.random.normal(kx, (n,))
    y = jnp.sin(2 * x) + 0.5 * x**2 + 0.3 * jax.random.normal(ky, (n,))
    return x, y


@pytest.mark.slow
def test_learned_mlp_mechanism_answers_do_query():
    """x ~ N(0,1), y = sin(2x) + 0.5 x^2 + noise; E[y | do(x=1)] = sin 2 + 0.5."""
    x_obs, y_obs = _nonlinear_data(jax.random.key(0), 4000)
    net = pc.nn.MLP(1, 1, hidden=(64, 64), rngs=nnx.Rngs(0))

    def model(n, x=None, y=None, batch=None):
        f = nnx_module("f", net)
        sigma = numpyro.param("sigma", 1.0, constraint=dist.constraints.positive)
        with numpyro.plate("units", n, subsample_size=batch) as idx:
            xs = numpyro.sample("x", dist.Normal(0, 1), obs=None if x is None else x[idx])
            numpyro.sample(
                "y", dist.Normal(f(xs[..., None])[..., 0], sigma), obs=None if y is None else y[idx]
            )

    result = pc.infer.fit_svi(
        model,
        lambda *a, **k: None,
        optax.adam(optax.cosine_decay_schedule(3e-3, 3000)),
        3000,
        rng_key=jax.random.key(1),
        model_args=(4000,),
        model_kwargs={"x": x_obs, "y": y_obs, "batch": 512},
        progress=False,
    )
    assert result.losses.shape == (3000,)
    assert result.losses[-200:].mean() < result.losses[:200].mean()
    learned = substitute(model, data=result.params)
    draws = pc.interventional(
        learned, {"x": 1.0}, rng_key=jax.random.key(2), num_samples=1, model_args=(20000,)
    )
    truth = np.sin(2.0) + 0.5
    # sampling error of the mean: sigma / sqrt(20000) ~ 0.002
    assert abs(float(draws["y"].mean()) - truth) < 0.05
    assert abs(float(result.params["sigma"]) - 0.3) < 0.03
