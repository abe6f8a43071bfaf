"""Continuous families: location-scale, scale, uniform, quantile and Gaussian."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpyro.distributions as dist

from probcausal.mechanisms.base import Mechanism, register

__all__ = [
    "LocationScale",
    "MultivariateGaussian",
    "Quantile",
    "Scale",
    "StandardT",
    "UniformRange",
]


class LocationScale(Mechanism):
    """``x = loc + scale * u`` with ``u`` from the standard member of the family.

    ``standard`` draws the standard noise, e.g. ``jax.random.normal``.
    """

    standard_noise = True

    def __init__(self, standard: Callable[[jax.Array, tuple], jax.Array]):
        self.standard = standard

    def sample_noise(self, key, shape, fn=None):
        return self.standard(key, shape)

    def apply(self, fn, u):
        return fn.loc + fn.scale * u

    def abduct(self, key, fn, x):
        return (x - fn.loc) / fn.scale


class Scale(Mechanism):
    """``x = scale * u`` with ``u`` from the unit-scale member (``1/rate`` for rates)."""

    standard_noise = True

    def __init__(self, standard, scale: Callable[[dist.Distribution], jax.Array]):
        self.standard = standard
        self.scale = scale

    def sample_noise(self, key, shape, fn=None):
        return self.standard(key, shape)

    def apply(self, fn, u):
        return self.scale(fn) * u

    def abduct(self, key, fn, x):
        return x / self.scale(fn)


class UniformRange(Mechanism):
    """``x = low + (high - low) * u`` with ``u ~ U(0, 1)``."""

    standard_noise = True

    def sample_noise(self, key, shape, fn=None):
        return jax.random.uniform(key, shape)

    def apply(self, fn, u):
        return fn.low + (fn.high - fn.low) * u

    def abduct(self, key, fn, x):
        return (x - fn.low) / (fn.high - fn.low)


class StandardT(LocationScale):
    """StudentT: ``x = loc + scale * u`` with ``u`` standard-t with the site's ``df``.

    ``df`` is a shape parameter of the noise: it must not change between worlds.
    """

    standard_noise = False  # the noise depends on the site's ``df``

    def __init__(self):
        super().__init__(None)

    def sample_noise(self, key, shape, fn=None):
        return jax.random.t(key, jnp.broadcast_to(fn.df, shape), shape)


class Quantile(Mechanism):
    """``x = F^-1(u)`` with ``u ~ U(0, 1)``, for any continuous family with
    ``cdf`` and ``icdf``; register it for such a family."""

    standard_noise = True

    def sample_noise(self, key, shape, fn=None):
        return jax.random.uniform(key, shape)

    def apply(self, fn, u):
        return fn.icdf(u)

    def abduct(self, key, fn, x):
        return fn.cdf(x)


class MultivariateGaussian(Mechanism):
    """``x = loc + L u`` with ``u ~ N(0, I)`` and ``L`` the Cholesky factor."""

    standard_noise = True

    def sample_noise(self, key, shape, fn=None):
        return jax.random.normal(key, shape)

    def apply(self, fn, u):
        return fn.loc + jnp.einsum("...ij,...j->...i", fn.scale_tril, u)

    def abduct(self, key, fn, x):
        shape = jnp.broadcast_shapes(jnp.shape(x), fn.scale_tril.shape[:-1])
        L = jnp.broadcast_to(fn.scale_tril, shape + fn.scale_tril.shape[-1:])
        r = jnp.broadcast_to(x - fn.loc, shape)
        return jsl.solve_triangular(L, r[..., None], lower=True)[..., 0]


register(dist.Normal, LocationScale(jax.random.normal))
register(dist.Laplace, LocationScale(jax.random.laplace))
register(dist.Logistic, LocationScale(jax.random.logistic))
register(dist.Cauchy, LocationScale(jax.random.cauchy))
register(dist.Gumbel, LocationScale(jax.random.gumbel))
register(dist.StudentT, StandardT())
register(dist.Uniform, UniformRange())
register(dist.Exponential, Scale(jax.random.exponential, lambda fn: 1.0 / fn.rate))
register(dist.HalfNormal, Scale(lambda k, s: jnp.abs(jax.random.normal(k, s)), lambda fn: fn.scale))
register(dist.HalfCauchy, Scale(lambda k, s: jnp.abs(jax.random.cauchy(k, s)), lambda fn: fn.scale))
register(dist.MultivariateNormal, MultivariateGaussian())
