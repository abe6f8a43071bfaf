"""Models shared by the tests."""

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist


def encouragement(n=None):
    """Pearl's encouragement design: x -> h -> y, x -> y (unit plate when n given)."""

    def body():
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        h = numpyro.sample("h", dist.Normal(0.5 * x, 1.0))
        return numpyro.sample("y", dist.Normal(0.7 * x + 0.4 * h, 1.0))

    if n is None:
        return body()
    with numpyro.plate("units", n):
        return body()


def partial():
    x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    return numpyro.sample("y", dist.Normal(2.0 * x, 1.0))


def binary():
    x = numpyro.sample("x", dist.Bernoulli(0.5))
    return numpyro.sample("y", dist.Bernoulli(jnp.where(x == 1, 1.0, 0.3)))


def mediation_model(a=2.0, b=3.0, c=0.5):
    x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    m = numpyro.sample("m", dist.Normal(a * x, 1.0))
    return numpyro.sample("y", dist.Normal(c * x + b * m, 1.0))
