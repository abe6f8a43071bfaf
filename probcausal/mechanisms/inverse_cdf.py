"""Inverse-CDF mechanisms for ordinal discrete families (Poisson, Binomial).

``x = min{k : F(k) >= u}`` with ``u ~ U(0, 1)``; abduction draws ``u`` uniformly in
the observed value's CDF interval ``(F(x - 1), F(x)]``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jax.scipy.special import betainc, gammaincc
from numpyro.distributions.discrete import BinomialLogits, BinomialProbs

from probcausal.errors import SeedRequiredError
from probcausal.mechanisms.base import Mechanism, register

__all__ = ["InverseCDF", "discrete_icdf"]

_BISECTION_STEPS = 40  # exact for supports up to 2**40


def discrete_icdf(cdf: Callable[[jax.Array], jax.Array], u: jax.Array, upper: jax.Array):
    """Smallest integer ``k`` in ``[0, upper]`` with ``cdf(k) >= u`` (integer bisection).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> cdf = lambda k: jnp.clip((k + 1) / 4, 0, 1)  # uniform on {0, 1, 2, 3}
    >>> discrete_icdf(cdf, jnp.array([0.1, 0.3, 0.99]), jnp.array(3.0)).tolist()
    [0.0, 1.0, 3.0]
    """
    u = jnp.minimum(u, cdf(upper))
    lo = jnp.full(jnp.shape(u), -1.0)
    hi = jnp.broadcast_to(upper, jnp.shape(u)).astype(lo.dtype)

    def body(_, carry):
        lo, hi = carry
        open_ = hi - lo > 1
        mid = jnp.floor((lo + hi) / 2)
        left = cdf(mid) >= u
        return jnp.where(open_ & ~left, mid, lo), jnp.where(open_ & left, mid, hi)

    _, hi = jax.lax.fori_loop(0, _BISECTION_STEPS, body, (lo, hi))
    return hi


class InverseCDF(Mechanism):
    """Inverse-CDF mechanism from a CDF ``cdf(fn, k)`` and a support bound ``upper(fn)``."""

    exact = False
    standard_noise = True

    def __init__(self, cdf, upper):
        self.cdf = cdf
        self.upper = upper

    def _F(self, fn, k):
        return jnp.where(k < 0, 0.0, self.cdf(fn, jnp.maximum(k, 0.0)))

    def sample_noise(self, key, shape, fn=None):
        return jax.random.uniform(key, shape)

    def apply(self, fn, u):
        k = discrete_icdf(lambda k: self._F(fn, k), u, self.upper(fn))
        return k.astype(jnp.int32)

    def abduct(self, key, fn, x):
        if key is None:
            raise SeedRequiredError("<inverse-cdf>", "abduct its uniform noise")
        x = jnp.asarray(x, jnp.float32)
        lo, hi = self._F(fn, x - 1.0), self._F(fn, x)
        v = jax.random.uniform(key, jnp.broadcast_shapes(lo.shape, hi.shape))
        return lo + v * (hi - lo)


def _poisson_cdf(fn, k):
    return gammaincc(k + 1.0, fn.rate)


def _poisson_upper(fn):
    return jnp.ceil(fn.rate + 20.0 * jnp.sqrt(fn.rate) + 40.0)


def _binomial_cdf(fn, k):
    n = jnp.asarray(fn.total_count, jnp.float32)
    inner = betainc(jnp.maximum(n - k, 1e-30), k + 1.0, 1.0 - fn.probs)
    return jnp.where(k >= n, 1.0, inner)


def _binomial_upper(fn):
    return jnp.asarray(fn.total_count, jnp.float32) + jnp.zeros_like(fn.probs)


register(dist.Poisson, InverseCDF(_poisson_cdf, _poisson_upper))
_binomial = InverseCDF(_binomial_cdf, _binomial_upper)
register(BinomialProbs, _binomial)
register(BinomialLogits, _binomial)
