"""The `Mechanism` protocol and the registry of noise mechanisms.

Noise outsourcing rewrites a site ``x ~ D(theta)`` as ``x = apply(theta, u)`` with
``u`` drawn from a base distribution that does not depend on ``theta``. Sharing ``u``
between worlds is what makes counterfactuals well defined.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro.distributions.distribution import (
    ExpandedDistribution,
    Independent,
    MaskedDistribution,
)
from numpyro.distributions.transforms import AbsTransform

from probcausal.errors import MissingMechanismError

__all__ = [
    "Mechanism",
    "abduct",
    "apply",
    "is_exact",
    "unwrapped",
    "mechanism_for",
    "noise_shape",
    "possible",
    "register",
    "registered",
    "sample_noise",
]


class Mechanism:
    """Noise outsourcing for one distribution family.

    Subclasses implement three functions of a distribution instance ``fn``
    (its parameters are ``theta``):

    - ``sample_noise(key, shape, fn=None)``: draw the exogenous noise ``u`` from the
      family's fixed base distribution (``fn`` is passed for families whose base
      depends on a fixed shape parameter, like StudentT's ``df``);
    - ``apply(fn, u)``: the value ``x = f(theta, u)``;
    - ``abduct(key, fn, x)``: a draw of ``u`` from ``p(u | x, theta)``.

    ``noise_event_shape(fn)`` gives the trailing noise dims after the batch dims
    (the event shape for most families, ``(K,)`` for Gumbel-max over K classes).
    ``exact`` is True when ``abduct`` is a deterministic inversion.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import numpyro.distributions as dist
    >>> from probcausal import mechanisms
    >>> fn = dist.Normal(1.0, 2.0)
    >>> u = mechanisms.abduct(jax.random.PRNGKey(0), fn, jnp.array(5.0))
    >>> float(u), float(mechanisms.apply(fn, u))
    (2.0, 5.0)
    """

    exact: bool = True
    # True when ``sample_noise`` ignores ``fn``: the noise is a standard draw that
    # queries may make in bulk for all samples before the model runs
    standard_noise: bool = False

    def noise_event_shape(self, fn: dist.Distribution) -> tuple[int, ...]:
        return tuple(fn.event_shape)

    def sample_noise(
        self, key: jax.Array, shape: tuple[int, ...], fn: dist.Distribution | None = None
    ) -> jax.Array:
        raise NotImplementedError(f"{type(self).__name__} must implement sample_noise")

    def apply(self, fn: dist.Distribution, u: jax.Array) -> jax.Array:
        raise NotImplementedError(f"{type(self).__name__} must implement apply")

    def abduct(self, key: jax.Array | None, fn: dist.Distribution, x: jax.Array) -> jax.Array:
        raise NotImplementedError(f"{type(self).__name__} must implement abduct")

    def possible(self, fn: dist.Distribution, x: jax.Array) -> jax.Array | None:
        """Elementwise: whether ``x`` has positive probability (density) under
        ``fn`` beyond what its support and log density say; None to rely on those."""
        return None


_REGISTRY: dict[type, Mechanism] = {}


def register(family: type, mechanism: Mechanism) -> Mechanism:
    """Register ``mechanism`` as the noise mechanism of distribution class ``family``.

    Subclasses of ``family`` use it too unless they have their own.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import numpyro.distributions as dist
    >>> from probcausal import mechanisms
    >>> class Shifted(dist.Normal):
    ...     pass
    >>> _ = mechanisms.register(Shifted, mechanisms.LocationScale(jax.random.normal))
    >>> isinstance(mechanisms.mechanism_for(Shifted(0.0, 1.0)), mechanisms.LocationScale)
    True
    """
    if not isinstance(family, type):
        raise TypeError(f"`family` must be a distribution class, got {family!r}")
    if not isinstance(mechanism, Mechanism):
        raise TypeError(
            f"`mechanism` must be an instance of probcausal.mechanisms.Mechanism, got "
            f"{type(mechanism).__name__}"
        )
    _REGISTRY[family] = mechanism
    return mechanism


def registered() -> dict[type, Mechanism]:
    """A copy of the registry: distribution class -> mechanism."""
    return dict(_REGISTRY)


def standard_noise_mechanism(family: type) -> Mechanism | None:
    """The mechanism of distribution class ``family`` when its noise does not depend
    on the distribution's parameters (``Mechanism.standard_noise``), else None.

    Examples
    --------
    >>> import numpyro.distributions as dist
    >>> from probcausal import mechanisms
    >>> type(mechanisms.standard_noise_mechanism(dist.Normal)).__name__
    'LocationScale'
    >>> mechanisms.standard_noise_mechanism(dist.StudentT) is None  # noise needs df
    True
    """
    for cls in family.__mro__:
        if cls in _REGISTRY:
            m = _REGISTRY[cls]
            return m if m.standard_noise else None
    return None


def _family_name(fn: Any) -> str:
    return f"numpyro.distributions.{type(fn).__name__}"


def mechanism_for(fn: dist.Distribution, site: str | None = None) -> Mechanism:
    """The mechanism of the (unwrapped) distribution ``fn``.

    Raises :class:`~probcausal.errors.MissingMechanismError` naming ``site`` when the
    family has none.
    """
    for cls in type(fn).__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls]
    raise MissingMechanismError(site, _family_name(fn))


def unwrapped(fn: dist.Distribution):
    """The distribution under the wrappers that do not change the element-wise
    mechanism (expand, to_event, mask)."""
    while isinstance(fn, ExpandedDistribution | Independent | MaskedDistribution):
        fn = fn.base_dist
    return fn


def noise_shape(fn: dist.Distribution, site: str | None = None) -> tuple[int, ...]:
    """The shape of the exogenous noise of ``fn``: batch shape + noise event shape."""
    if isinstance(fn, ExpandedDistribution):
        base = noise_shape(fn.base_dist, site)
        return tuple(fn.batch_shape) + base[len(fn.base_dist.batch_shape) :]
    if isinstance(fn, Independent | MaskedDistribution):
        return noise_shape(fn.base_dist, site)
    if isinstance(fn, dist.TransformedDistribution):
        base = noise_shape(fn.base_dist, site)
        return tuple(fn.batch_shape) + base[len(fn.base_dist.batch_shape) :]
    return tuple(fn.batch_shape) + mechanism_for(fn, site).noise_event_shape(fn)


def sample_noise(
    key: jax.Array, fn: dist.Distribution, shape=None, site: str | None = None
) -> jax.Array:
    """Draw noise for ``fn`` (of ``noise_shape(fn)`` unless ``shape`` is given)."""
    shape = noise_shape(fn, site) if shape is None else tuple(shape)
    leaf = unwrapped(fn)
    if isinstance(leaf, dist.TransformedDistribution):
        return sample_noise(key, leaf.base_dist, shape, site)
    return mechanism_for(leaf, site).sample_noise(key, shape, leaf)


def apply(fn: dist.Distribution, u: jax.Array, site: str | None = None) -> jax.Array:
    """The value ``x = f(theta, u)`` of ``fn`` driven by noise ``u``."""
    leaf = unwrapped(fn)
    if isinstance(leaf, dist.TransformedDistribution):
        x = apply(leaf.base_dist, u, site)
        for t in leaf.transforms:
            x = t(x)
    else:
        x = mechanism_for(leaf, site).apply(leaf, u)
    if leaf is not fn:
        x = jnp.broadcast_to(x, jnp.broadcast_shapes(jnp.shape(x), fn.shape()))
    return x


def abduct(
    key: jax.Array | None, fn: dist.Distribution, x: jax.Array, site: str | None = None
) -> jax.Array:
    """A draw from ``p(u | x, theta)``: the noise that produced ``x`` under ``fn``."""
    leaf = unwrapped(fn)
    if isinstance(leaf, dist.TransformedDistribution):
        transforms = list(leaf.transforms)
        folded = bool(transforms) and isinstance(transforms[0], AbsTransform)
        for t in reversed(transforms[1:] if folded else transforms):
            x = t.inv(x)
        if folded:  # |y| = x has the preimages +x and -x, weighed by the base density
            if key is None:
                raise MissingMechanismError(site, "FoldedDistribution without a PRNG key")
            key, k_sign = jax.random.split(key)
            base = leaf.base_dist
            x = jnp.asarray(x)
            p_plus = jax.nn.sigmoid(base.log_prob(x) - base.log_prob(-x))
            plus = jax.random.uniform(k_sign, jnp.shape(p_plus)) < p_plus
            x = jnp.where(plus, x, -x)
        return abduct(key, leaf.base_dist, x, site)
    return mechanism_for(leaf, site).abduct(key, leaf, jnp.asarray(x))


def possible(fn: dist.Distribution, x: jax.Array, site: str | None = None) -> jax.Array:
    """Whether every element of ``x`` lies in ``fn``'s support and has positive
    probability (density) there: a traceable boolean scalar.

    Examples
    --------
    >>> import jax.numpy as jnp, numpyro.distributions as dist
    >>> from probcausal import mechanisms
    >>> bool(mechanisms.possible(dist.Bernoulli(probs=1.0), jnp.array(0)))
    False
    >>> bool(mechanisms.possible(dist.Uniform(0.0, 1.0), jnp.array(0.5)))
    True
    """
    x = jnp.asarray(x)
    ok = jnp.all(fn.support(x)) if fn.support is not None else jnp.bool_(True)
    import warnings

    with warnings.catch_warnings():  # NumPyro warns of out-of-support values eagerly
        warnings.simplefilter("ignore", UserWarning)
        ok = ok & jnp.all(fn.log_prob(x) > -jnp.inf)
    leaf = unwrapped(fn)
    if not isinstance(leaf, dist.TransformedDistribution):
        try:
            extra = mechanism_for(leaf, site).possible(leaf, x)
        except MissingMechanismError:
            extra = None
        if extra is not None:
            ok = ok & jnp.all(extra)
    return ok


def is_exact(fn: dist.Distribution, site: str | None = None) -> bool:
    """True when ``abduct`` is a deterministic inversion for ``fn``."""
    leaf = unwrapped(fn)
    if isinstance(leaf, dist.TransformedDistribution):
        if any(isinstance(t, AbsTransform) for t in leaf.transforms):
            return False  # a preimage is drawn
        return is_exact(leaf.base_dist, site)
    return mechanism_for(leaf, site).exact
