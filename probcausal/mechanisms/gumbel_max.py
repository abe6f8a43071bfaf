"""Gumbel-max mechanisms for Categorical and Bernoulli sites.

``x = argmax(logits + u)`` with i.i.d. standard Gumbel ``u``: counterfactually stable
(Oberst & Sontag, 2019). Abduction draws ``u`` from its posterior given the observed
argmax by top-down truncated-Gumbel sampling: the maximum ``logsumexp(logits) + G``
goes to the observed class, the others are Gumbels truncated below it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from numpyro.distributions.discrete import (
    BernoulliLogits,
    BernoulliProbs,
    CategoricalLogits,
    CategoricalProbs,
)

from probcausal.errors import SeedRequiredError
from probcausal.mechanisms.base import Mechanism, register

__all__ = ["GumbelMax", "posterior_gumbels"]


def posterior_gumbels(key: jax.Array, logits: jax.Array, x: jax.Array) -> jax.Array:
    """Standard-Gumbel noise ``u`` drawn from ``p(u | argmax(logits + u) = x)``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> logits = jnp.log(jnp.array([0.2, 0.5, 0.3]))
    >>> u = posterior_gumbels(jax.random.PRNGKey(1), logits, jnp.array(2))
    >>> int(jnp.argmax(logits + u))
    2
    """
    if key is None:
        raise SeedRequiredError("<gumbel-max>", "abduct its Gumbel noise")
    x = jnp.asarray(x, dtype=jnp.int32)
    k = logits.shape[-1]
    shape = jnp.broadcast_shapes(logits.shape, x.shape + (k,))
    logits = jnp.broadcast_to(logits, shape)
    k_top, k_rest = jax.random.split(key)
    top = jax.nn.logsumexp(logits, axis=-1, keepdims=True) + jax.random.gumbel(
        k_top, shape[:-1] + (1,)
    )
    g = logits + jax.random.gumbel(k_rest, shape)
    truncated = -jnp.logaddexp(-top, -g)
    chosen = jax.nn.one_hot(jnp.broadcast_to(x, shape[:-1]), k, dtype=bool)
    return jnp.where(chosen, top, truncated) - logits


class GumbelMax(Mechanism):
    """Gumbel-max mechanism; ``binary=True`` for Bernoulli (logits ``[0, l]``)."""

    exact = False
    standard_noise = True

    def __init__(self, binary: bool):
        self.binary = binary

    def _logits(self, fn):
        if self.binary:
            lg = fn.logits
            return jnp.stack([jnp.zeros_like(lg), lg], axis=-1)
        return fn.logits

    def noise_event_shape(self, fn):
        return (2,) if self.binary else (fn.logits.shape[-1],)

    def sample_noise(self, key, shape, fn=None):
        return jax.random.gumbel(key, shape)

    def apply(self, fn, u):
        if self.binary:  # argmax([0, l] + u) elementwise: ties go to 0, as argmax's
            return (fn.logits + u[..., 1] > u[..., 0]).astype(jnp.int32)
        return jnp.argmax(self._logits(fn) + u, axis=-1).astype(jnp.int32)

    def abduct(self, key, fn, x):
        return posterior_gumbels(key, self._logits(fn), x)


register(BernoulliProbs, GumbelMax(binary=True))
register(BernoulliLogits, GumbelMax(binary=True))
register(CategoricalProbs, GumbelMax(binary=False))
register(CategoricalLogits, GumbelMax(binary=False))
