"""Gumbel-max mechanisms for Categorical and Bernoulli sites.

``x = argmax(logits + u)`` with i.i.d. standard Gumbel ``u``: counterfactually stable
(Oberst & Sontag, 2019). Abduction draws ``u`` from its posterior given the observed
argmax by top-down truncated-Gumbel sampling: the maximum ``logsumexp(logits) + G``
goes to the observed class, the others are Gumbels truncated below it. For two
classes (Bernoulli) the noise is the difference of the two Gumbels, a standard
logistic, abducted by truncation at the logit.
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

__all__ = ["GumbelMax", "posterior_gumbels", "posterior_logistic"]


def posterior_gumbels(
    key: jax.Array, logits: jax.Array, x: jax.Array, zero: jax.Array | None = None
) -> jax.Array:
    """Standard-Gumbel noise ``u`` drawn from ``p(u | argmax(logits + u) = x)``.

    ``zero`` marks classes of probability zero (by default the ``-inf`` logits):
    such a class never wins, whatever its noise, so the evidence says nothing
    about that noise, which keeps its prior.

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
    # one draw: the class noises and, last, the maximum's (a generator call each
    # would double the program)
    draw = jax.random.gumbel(key, shape[:-1] + (k + 1,))
    prior = draw[..., :k]
    top = jax.nn.logsumexp(logits, axis=-1, keepdims=True) + draw[..., k:]
    g = logits + prior
    truncated = -jnp.logaddexp(-top, -g)
    chosen = jax.nn.one_hot(jnp.broadcast_to(x, shape[:-1]), k, dtype=bool)
    u = jnp.where(chosen, top, truncated) - logits
    # a class of probability zero never wins, whatever its noise: the evidence says
    # nothing about that noise, which keeps its prior (-inf - -inf would be NaN)
    zero = jnp.isneginf(logits) if zero is None else jnp.broadcast_to(zero, shape)
    return jnp.where(zero, prior, u)


def posterior_logistic(key: jax.Array, logits: jax.Array, x: jax.Array) -> jax.Array:
    """Standard-logistic noise ``d`` drawn from ``p(d | 1[logits > d] = x)``: a
    logistic truncated to ``d < logits`` (``x = 1``) or ``d >= logits`` (``x = 0``),
    by its inverse CDF in log space (stable for large ``|logits|``).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> d = posterior_logistic(jax.random.PRNGKey(1), jnp.array([-3.0, 3.0]), jnp.array([1, 0]))
    >>> d.tolist()[0] < -3.0 < 3.0 <= d.tolist()[1]
    True
    """
    if key is None:
        raise SeedRequiredError("<gumbel-max>", "abduct its logistic noise")
    shape = jnp.broadcast_shapes(jnp.shape(logits), jnp.shape(x))
    u = jax.random.uniform(key, shape, minval=jnp.finfo(jnp.float32).tiny)
    one = jnp.asarray(x) == 1
    # the CDF value v of d lies in (0, sigmoid(l)) when x = 1, else in [sigmoid(l), 1)
    log_inside = jnp.log(u) + jnp.where(
        one, jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits)
    )  # log v when x = 1, log(1 - v) when x = 0
    log_outside = jnp.log(-jnp.expm1(log_inside))  # log(1 - v), or log v
    return jnp.where(one, log_inside - log_outside, log_outside - log_inside)


class GumbelMax(Mechanism):
    """Gumbel-max mechanism ``x = argmax(logits + u)``.

    ``binary=True`` is Bernoulli, the two-class case with logits ``[0, l]``:
    ``x = 1[l + u_1 > u_0] = 1[l > d]``, where ``d = u_0 - u_1`` is standard
    logistic. Every world's value depends on the Gumbel pair through ``d`` alone, so
    ``d`` is the noise: the same counterfactuals from one draw instead of two.
    """

    exact = False
    standard_noise = True

    def __init__(self, binary: bool):
        self.binary = binary

    def noise_event_shape(self, fn):
        return () if self.binary else (fn.logits.shape[-1],)

    def sample_noise(self, key, shape, fn=None):
        if self.binary:
            return jax.random.logistic(key, shape)
        return jax.random.gumbel(key, shape)

    def apply(self, fn, u):
        if self.binary:  # ties go to 0, as argmax([0, l] + u)'s
            return (fn.logits > u).astype(jnp.int32)
        return jnp.argmax(fn.logits + u, axis=-1).astype(jnp.int32)

    def abduct(self, key, fn, x):
        if self.binary:
            return posterior_logistic(key, fn.logits, x)
        return posterior_gumbels(key, fn.logits, x, _zero(fn))

    def possible(self, fn, x):
        """Whether ``x`` has positive probability: NumPyro clips the logits of a
        zero probability to a finite number, so the probabilities decide."""
        x = jnp.asarray(x, jnp.int32)
        if self.binary:
            if "probs" in fn.__dict__ or isinstance(fn, BernoulliProbs):
                p = fn.probs
                return jnp.where(x == 1, p > 0, p < 1)
            return jnp.where(x == 1, fn.logits > -jnp.inf, fn.logits < jnp.inf)
        zero = _zero(fn)
        k = zero.shape[-1]
        pick = jnp.take_along_axis(
            jnp.broadcast_to(zero, jnp.broadcast_shapes(zero.shape, x.shape + (k,))),
            jnp.clip(x, 0, k - 1)[..., None],
            axis=-1,
        )[..., 0]
        return ~pick


def _zero(fn) -> jax.Array:
    """Classes of probability zero of a Categorical."""
    if isinstance(fn, CategoricalProbs):
        return fn.probs <= 0
    return jnp.isneginf(fn.logits)


register(BernoulliProbs, GumbelMax(binary=True))
register(BernoulliLogits, GumbelMax(binary=True))
register(CategoricalProbs, GumbelMax(binary=False))
register(CategoricalLogits, GumbelMax(binary=False))
