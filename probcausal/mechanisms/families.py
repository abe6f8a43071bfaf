"""Mechanisms for the other common NumPyro families.

Continuous univariate families are coupled through their CDF: ``x = F^-1(u)``
with ``u ~ U(0, 1)`` (the monotone, comonotone coupling: a unit at its q-th
quantile in one world is at its q-th quantile in every world), abducted exactly
by ``u = F(x)``. Where NumPyro has no inverse CDF it is found by bisection on the
CDF. Discrete ordinal families use the inverse CDF of a uniform on their
integers, abducted by a uniform draw in the observed value's CDF interval.
Dirichlet goes through independent Gammas; a transform that is not one-to-one
(``FoldedDistribution``'s absolute value) is abducted over every preimage with
its weight.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.scipy.special import betainc, gammainc, gammaincc
from numpyro.distributions.discrete import GeometricLogits, GeometricProbs
from numpyro.distributions.truncated import (
    LeftTruncatedDistribution,
    RightTruncatedDistribution,
    TwoSidedTruncatedDistribution,
)

from probcausal.errors import SeedRequiredError
from probcausal.mechanisms.base import (
    Mechanism,
    abduct,
    apply,
    noise_shape,
    register,
    sample_noise,
)
from probcausal.mechanisms.gumbel_max import posterior_gumbels
from probcausal.mechanisms.inverse_cdf import InverseCDF, _binomial
from probcausal.mechanisms.location_scale import MultivariateGaussian, Quantile

__all__ = [
    "BisectionQuantile",
    "ClosedQuantile",
    "DirichletGammas",
    "MixtureGumbelMax",
    "SequentialBinomials",
    "ShiftedUniformInteger",
    "VonMisesAngle",
]

_BISECTIONS = 64


def bisect_quantile(cdf, u, lo, hi, steps: int = _BISECTIONS):
    """``x`` in ``[lo, hi]`` with ``cdf(x) = u`` for a continuous increasing ``cdf``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> x = bisect_quantile(lambda x: x**2, jnp.array(0.25), 0.0, 1.0)
    >>> round(float(x), 5)
    0.5
    """
    lo = jnp.broadcast_to(jnp.asarray(lo, jnp.result_type(float)), jnp.shape(u))
    hi = jnp.broadcast_to(jnp.asarray(hi, lo.dtype), jnp.shape(u))

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        below = cdf(mid) < u
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = jax.lax.fori_loop(0, steps, body, (lo, hi))
    return 0.5 * (lo + hi)


class BisectionQuantile(Mechanism):
    """``x = F^-1(u)`` by bisection on the family's ``cdf`` within ``bracket(fn)``
    (lower and upper bounds that hold every quantile a float32 ``u`` reaches)."""

    standard_noise = True

    def __init__(self, bracket):
        self.bracket = bracket

    def sample_noise(self, key, shape, fn=None):
        return jax.random.uniform(key, shape)

    def apply(self, fn, u):
        lo, hi = self.bracket(fn)
        u = jnp.broadcast_to(u, jnp.broadcast_shapes(jnp.shape(u), fn.batch_shape))
        return bisect_quantile(fn.cdf, u, lo, hi)

    def abduct(self, key, fn, x):
        return fn.cdf(x)


def _gamma_bracket(fn):
    c, r = fn.concentration, fn.rate
    # the 1 - 2^-24 quantile of Gamma(c) lies below c + 12 sqrt(c) + 30
    return jnp.zeros_like(c / r), (c + 12.0 * jnp.sqrt(c) + 30.0) / r


class ClosedQuantile(Mechanism):
    """``x = icdf(fn, u)``, ``u = cdf(fn, x)`` from closed forms."""

    standard_noise = True

    def __init__(self, icdf, cdf):
        self._icdf, self._cdf = icdf, cdf

    def sample_noise(self, key, shape, fn=None):
        return jax.random.uniform(key, shape)

    def apply(self, fn, u):
        return self._icdf(fn, u)

    def abduct(self, key, fn, x):
        return self._cdf(fn, x)


class ShiftedUniformInteger(Mechanism):
    """DiscreteUniform on ``low..high``: ``x = low + floor(u (high - low + 1))``."""

    exact = False
    standard_noise = True

    def sample_noise(self, key, shape, fn=None):
        return jax.random.uniform(key, shape)

    def apply(self, fn, u):
        n = fn.high - fn.low + 1
        return (fn.low + jnp.minimum(jnp.floor(u * n), n - 1)).astype(jnp.int32)

    def abduct(self, key, fn, x):
        if key is None:
            raise SeedRequiredError("<discrete-uniform>", "abduct its uniform noise")
        n = fn.high - fn.low + 1
        k = jnp.asarray(x, jnp.float32) - fn.low
        v = jax.random.uniform(key, jnp.broadcast_shapes(jnp.shape(k), jnp.shape(n)))
        return (k + v) / n


class DirichletGammas(Mechanism):
    """Dirichlet through independent Gammas: ``g_i = F^-1_{Gamma(a_i)}(u_i)``,
    ``x = g / sum(g)``. Abduction uses that the total ``S = sum(g)`` is
    independent of ``x`` and Gamma(sum a): it draws ``S`` and sets
    ``u_i = F_{Gamma(a_i)}(x_i S)``."""

    exact = False
    standard_noise = True

    def sample_noise(self, key, shape, fn=None):
        return jax.random.uniform(key, shape)

    def apply(self, fn, u):
        a = fn.concentration
        hi = a + 12.0 * jnp.sqrt(a) + 30.0
        u = jnp.broadcast_to(u, jnp.broadcast_shapes(jnp.shape(u), a.shape))
        g = bisect_quantile(lambda x: gammainc(a, x), u, jnp.zeros_like(hi), hi)
        g = jnp.maximum(g, jnp.finfo(g.dtype).tiny)
        return g / jnp.sum(g, axis=-1, keepdims=True)

    def abduct(self, key, fn, x):
        if key is None:
            raise SeedRequiredError("<dirichlet>", "abduct its Gamma total")
        a = fn.concentration
        shape = jnp.broadcast_shapes(jnp.shape(x), a.shape)
        total_a = jnp.broadcast_to(jnp.sum(a, axis=-1), shape[:-1])
        total = jax.random.gamma(key, total_a)  # one total per value, independent of x
        return gammainc(a, jnp.broadcast_to(x, shape) * total[..., None])


def _gamma_poisson_cdf(fn, k):
    p = fn.rate / (1.0 + fn.rate)  # success probability of the negative binomial
    return betainc(fn.concentration, k + 1.0, p)


def _gamma_poisson_upper(fn):
    return jnp.ceil(fn.mean + 20.0 * jnp.sqrt(fn.variance) + 40.0)


def _geometric_cdf(fn, k):
    return -jnp.expm1((k + 1.0) * jnp.log1p(-fn.probs))


def _geometric_upper(fn):
    # the 1 - 2^-24 quantile: (k + 1) log(1 - p) <= -17
    return jnp.ceil(17.0 / -jnp.log1p(-jnp.minimum(fn.probs, 1 - 1e-7)) + 1.0)


def _zip_cdf(fn, k):
    return fn.gate + (1.0 - fn.gate) * gammaincc(k + 1.0, fn.base_dist.rate)


def _zip_upper(fn):
    rate = fn.base_dist.rate
    return jnp.ceil(rate + 20.0 * jnp.sqrt(rate) + 40.0)


def _weibull_icdf(fn, u):
    return fn.scale * (-jnp.log1p(-u)) ** (1.0 / fn.concentration)


def _weibull_cdf(fn, x):
    return -jnp.expm1(-((x / fn.scale) ** fn.concentration))


def _kumaraswamy_icdf(fn, u):
    a, b = fn.concentration1, fn.concentration0
    return (-jnp.expm1(jnp.log1p(-u) / b)) ** (1.0 / a)


def _kumaraswamy_cdf(fn, x):
    a, b = fn.concentration1, fn.concentration0
    return -jnp.expm1(b * jnp.log1p(-(x**a)))


def _beta_binomial_cdf(fn, k):
    """P(X <= k) by summing the pmf up to the largest ``total_count`` (no closed
    form: a generalized hypergeometric function)."""
    n = jnp.asarray(fn.total_count, jnp.float32)
    k = jnp.asarray(k, jnp.float32)
    shape = jnp.broadcast_shapes(jnp.shape(k), tuple(fn.batch_shape))

    def body(j, acc):
        j = jnp.asarray(j, jnp.float32)
        p = jnp.exp(fn.log_prob(jnp.minimum(j, n)))
        return acc + jnp.where((j <= k) & (j <= n), p, 0.0)

    total = jax.lax.fori_loop(0, jnp.max(n).astype(jnp.int32) + 1, body, jnp.zeros(shape))
    return jnp.where(k >= n, 1.0, jnp.minimum(total, 1.0))


def _beta_binomial_upper(fn):
    return jnp.asarray(fn.total_count, jnp.float32) + jnp.zeros(fn.batch_shape)


class SequentialBinomials(Mechanism):
    """Multinomial as a chain of binomials: ``x_1 ~ Bin(n, p_1)``, ``x_j ~ Bin(n -
    x_1 - ... - x_{j-1}, p_j / (1 - p_1 - ... - p_{j-1}))``, each by the inverse CDF
    of its own uniform. The coupling is monotone class by class in the order of the
    classes: a unit whose count of class 1 is at its q-th quantile stays there."""

    exact = False
    standard_noise = True

    def sample_noise(self, key, shape, fn=None):
        return jax.random.uniform(key, shape)

    @staticmethod
    def _steps(fn):
        p = fn.probs
        before = jnp.cumsum(p, axis=-1) - p  # mass of the earlier classes
        q = jnp.clip(p / jnp.maximum(1.0 - before, 1e-30), 0.0, 1.0)
        return jnp.asarray(fn.total_count, jnp.float32), q

    def apply(self, fn, u):
        n, q = self._steps(fn)
        k = q.shape[-1]
        shape = jnp.broadcast_shapes(jnp.shape(u), q.shape)
        u, q = jnp.broadcast_to(u, shape), jnp.broadcast_to(q, shape)
        left = jnp.broadcast_to(n, shape[:-1])
        out = []
        for j in range(k):
            b = dist.BinomialProbs(q[..., j], total_count=left)
            last = j == k - 1
            xj = left if last else _binomial.apply(b, u[..., j]).astype(jnp.float32)
            out.append(xj)
            left = left - xj
        return jnp.stack(out, -1).astype(jnp.int32)

    def abduct(self, key, fn, x):
        if key is None:
            raise SeedRequiredError("<multinomial>", "abduct its uniform noise")
        n, q = self._steps(fn)
        x = jnp.asarray(x, jnp.float32)
        shape = jnp.broadcast_shapes(x.shape, q.shape)
        x, q = jnp.broadcast_to(x, shape), jnp.broadcast_to(q, shape)
        left = jnp.broadcast_to(n, shape[:-1])[..., None] - (jnp.cumsum(x, -1) - x)
        keys = jax.random.split(key, shape[-1])
        us = [
            _binomial.abduct(
                keys[j], dist.BinomialProbs(q[..., j], total_count=left[..., j]), x[..., j]
            )
            for j in range(shape[-1] - 1)
        ]
        # the last count is what is left: its noise says nothing, keeps its prior
        us.append(jax.random.uniform(keys[-1], shape[:-1]))
        return jnp.stack(us, -1)


class MixtureGumbelMax(Mechanism):
    """MixtureSameFamily: a Gumbel-max draw of the component, ``c = argmax(log w +
    g)``, and one noise per component, ``x = f_c(theta_c, z_c)``; the noise is ``g``
    (K Gumbels) followed by the K component noises, flattened.

    Abduction draws the component from its posterior ``p(c | x) ∝ w_c p_c(x)``, the
    Gumbels given that component (truncated Gumbels), that component's noise by its
    own abduction and the other components' noise from their prior (they did not
    produce ``x``). Counterfactually a unit keeps its component unless the mixing
    weights change enough to overturn its Gumbel-max, and keeps its quantile in the
    component it is in.
    """

    exact = False
    standard_noise = False

    @staticmethod
    def _parts(fn):
        comp = fn.component_distribution
        k = fn.mixture_size
        ev = noise_shape(comp)[len(comp.batch_shape) :]
        return comp, k, ev, int(np.prod(ev, dtype=np.int64))

    def noise_event_shape(self, fn):
        _, k, _, m = self._parts(fn)
        return (k + k * m,)

    def sample_noise(self, key, shape, fn=None):
        comp, k, ev, _ = self._parts(fn)
        lead = tuple(shape[:-1])
        k_g, k_z = jax.random.split(key)
        g = jax.random.gumbel(k_g, lead + (k,))
        z = sample_noise(k_z, comp, lead + (k,) + ev)
        return jnp.concatenate([g, jnp.reshape(z, lead + (-1,))], -1)

    def _split(self, fn, u):
        comp, k, ev, _ = self._parts(fn)
        lead = jnp.shape(u)[:-1]
        return u[..., :k], jnp.reshape(u[..., k:], lead + (k,) + ev)

    def apply(self, fn, u):
        g, z = self._split(fn, u)
        comp = fn.component_distribution
        c = jnp.argmax(fn.mixing_distribution.logits + g, axis=-1)
        xs = apply(comp, z)  # (..., K, *event)
        e = len(fn.event_shape)
        idx = jnp.reshape(c, c.shape + (1,) * (e + 1))
        return jnp.squeeze(jnp.take_along_axis(xs, idx, axis=-1 - e), -1 - e)

    def abduct(self, key, fn, x):
        if key is None:
            raise SeedRequiredError("<mixture>", "abduct its component and noise")
        comp, k, ev, _ = self._parts(fn)
        e = len(fn.event_shape)
        x = jnp.asarray(x)
        x_k = jnp.expand_dims(x, -1 - e)  # against every component
        logits = fn.mixing_distribution.logits
        k_c, k_g, k_z, k_p = jax.random.split(key, 4)
        post = logits + comp.log_prob(x_k)
        c = jax.random.categorical(k_c, post)
        g = posterior_gumbels(k_g, logits, c)
        z_all = abduct(k_z, comp, x_k)
        lead = jnp.shape(z_all)[: jnp.ndim(z_all) - len(ev) - 1]
        prior = sample_noise(k_p, comp, tuple(lead) + (k,) + ev)
        chosen = jax.nn.one_hot(c, k, dtype=bool).reshape(tuple(c.shape) + (k,) + (1,) * len(ev))
        z = jnp.where(chosen, z_all, prior)
        g = jnp.broadcast_to(g, tuple(lead) + (k,))
        return jnp.concatenate([g, jnp.reshape(z, tuple(lead) + (-1,))], -1)


_VM_TERMS = 128  # Fourier terms of the centred CDF: exact to float32 for kappa <= _VM_SERIES
_VM_SERIES = 400.0  # above it an expansion around the normal


def _bessel_ratios(kappa):
    """``I_n(kappa) / I_0(kappa)`` for ``n = 1.._VM_TERMS``: the ratios ``r_n =
    I_n / I_{n-1} = kappa / (2n + kappa r_{n+1})`` by backward recurrence (Miller),
    started at twice the number of terms, then their running product."""
    kappa = jnp.asarray(kappa, jnp.result_type(float))
    ns = jnp.arange(2 * _VM_TERMS, 0, -1, dtype=kappa.dtype)

    def step(r_next, n):
        r = kappa / (2.0 * n + kappa * r_next)
        return r, r

    _, rs = jax.lax.scan(step, jnp.zeros_like(kappa), ns)
    rs = rs[::-1][:_VM_TERMS]  # r_1 .. r_N along the first axis
    return jnp.cumprod(rs, axis=0)


def von_mises_centred_cdf(kappa, e):
    """P(E <= e) for ``E ~ VonMises(0, kappa)`` on ``[-pi, pi]``: ``(e + pi) / 2pi +
    (1/pi) sum_n I_n/I_0 sin(n e) / n`` for moderate ``kappa``; above ``_VM_SERIES``
    the normal law of ``2 sqrt(kappa) sin(e / 2)`` with its ``1 / kappa`` and ``1 /
    kappa^2`` corrections (error of order ``kappa^-3``).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> round(float(von_mises_centred_cdf(jnp.array(2.0), jnp.array(0.0))), 6)
    0.5
    """
    kappa, e = jnp.broadcast_arrays(jnp.asarray(kappa, jnp.result_type(float)), e)
    return _centred_cdf(kappa, _series_ratios(kappa), e)


def _series_ratios(kappa):
    """The Bessel ratios of the series, for the ``kappa`` it serves (the rest is
    clamped: the normal expansion serves them)."""
    return _bessel_ratios(jnp.minimum(kappa, _VM_SERIES))


def _centred_cdf(kappa, rho, e):
    """:func:`von_mises_centred_cdf` given ``rho = _series_ratios(kappa)``, so that a
    bisection on ``e`` computes the ratios once (``kappa``, ``e``: one shape)."""
    small = kappa <= _VM_SERIES
    n = jnp.arange(1, _VM_TERMS + 1, dtype=e.dtype).reshape((-1,) + (1,) * e.ndim)
    series = (e + jnp.pi) / (2 * jnp.pi) + jnp.sum(rho * jnp.sin(n * e) / n, 0) / jnp.pi
    # large kappa: z = 2 sqrt(kappa) sin(e / 2) is standard normal up to the factor
    # (1 - z^2 / 4 kappa)^(-1/2) = 1 + z^2 / 8 kappa + 3 z^4 / 128 kappa^2 + ...
    big = jnp.maximum(kappa, _VM_SERIES)
    z = 2.0 * jnp.sqrt(big) * jnp.sin(e / 2)
    pdf = jnp.exp(-0.5 * z**2) / jnp.sqrt(2 * jnp.pi)
    norm = 1.0 + 1.0 / (8 * big) + 9.0 / (128 * big**2)
    tail = z / (8 * big) + 3.0 * (z**3 + 3 * z) / (128 * big**2)
    normal = jax.scipy.special.ndtr(z) - pdf * tail / norm
    return jnp.clip(jnp.where(small, series, normal), 0.0, 1.0)


def _wrap(angle):
    return jnp.remainder(angle + jnp.pi, 2 * jnp.pi) - jnp.pi


class VonMisesAngle(Mechanism):
    """VonMises as a rotation of a centred angle: ``x = wrap(loc + e)``, ``e =
    F^-1_kappa(u)`` the centred VonMises(0, kappa) quantile on ``[-pi, pi]``
    (bisection on its CDF). Abduction is exact: ``u = F_kappa(wrap(x - loc))``.
    Counterfactually a unit keeps its angular offset quantile from the mean
    direction: a change of ``loc`` rotates every unit by the same angle, a change of
    ``kappa`` moves it towards or away from ``loc`` on its own side."""

    standard_noise = True

    def sample_noise(self, key, shape, fn=None):
        return jax.random.uniform(key, shape)

    def apply(self, fn, u):
        kappa = fn.concentration
        u = jnp.broadcast_to(u, jnp.broadcast_shapes(jnp.shape(u), fn.batch_shape))
        kappa = jnp.broadcast_to(jnp.asarray(kappa, u.dtype), u.shape)
        rho = _series_ratios(kappa)  # once, not at every bisection step
        e = bisect_quantile(lambda e: _centred_cdf(kappa, rho, e), u, -jnp.pi, jnp.pi)
        return _wrap(fn.loc + e)

    def abduct(self, key, fn, x):
        return von_mises_centred_cdf(fn.concentration, _wrap(jnp.asarray(x) - fn.loc))


register(dist.VonMises, VonMisesAngle())
register(dist.MixtureSameFamily, MixtureGumbelMax())
register(dist.BetaBinomial, InverseCDF(_beta_binomial_cdf, _beta_binomial_upper))
register(dist.MultinomialProbs, SequentialBinomials())
register(dist.MultinomialLogits, SequentialBinomials())
register(dist.Gamma, BisectionQuantile(_gamma_bracket))  # Chi2, InverseGamma (via Gamma)
register(
    dist.Beta,
    BisectionQuantile(
        lambda fn: (jnp.zeros_like(fn.concentration1), jnp.ones_like(fn.concentration1))
    ),
)
register(dist.Weibull, ClosedQuantile(_weibull_icdf, _weibull_cdf))
register(dist.Kumaraswamy, ClosedQuantile(_kumaraswamy_icdf, _kumaraswamy_cdf))
for _family in (
    LeftTruncatedDistribution,
    RightTruncatedDistribution,
    TwoSidedTruncatedDistribution,
    dist.AsymmetricLaplace,
):
    register(_family, Quantile())
register(dist.LowRankMultivariateNormal, MultivariateGaussian())
register(dist.GammaPoisson, InverseCDF(_gamma_poisson_cdf, _gamma_poisson_upper))
register(GeometricProbs, InverseCDF(_geometric_cdf, _geometric_upper))
register(GeometricLogits, InverseCDF(_geometric_cdf, _geometric_upper))
register(dist.ZeroInflatedPoisson, InverseCDF(_zip_cdf, _zip_upper))
register(dist.DiscreteUniform, ShiftedUniformInteger())
register(dist.Dirichlet, DirichletGammas())
