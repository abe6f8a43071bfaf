"""Delta sites carry no noise: their value is their parameter."""

from __future__ import annotations

import jax.numpy as jnp
import numpyro.distributions as dist

from probcausal.mechanisms.base import Mechanism, register

__all__ = ["NoNoise"]


class NoNoise(Mechanism):
    """The mechanism of ``Delta``: ``x = v``; the noise is a dummy zero array."""

    standard_noise = True

    def sample_noise(self, key, shape, fn=None):
        return jnp.zeros(shape)

    def apply(self, fn, u):
        return jnp.broadcast_to(fn.v, jnp.broadcast_shapes(jnp.shape(fn.v), jnp.shape(u)))

    def abduct(self, key, fn, x):
        return jnp.zeros(jnp.broadcast_shapes(jnp.shape(x), fn.shape()))


register(dist.Delta, NoNoise())
