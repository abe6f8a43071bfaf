"""Neural sites: ``x = G(parents, u)`` as sample sites of a causal model."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from flax import nnx
from numpyro.contrib.module import nnx_module

__all__ = ["sample", "gumbel_softmax", "one_hot"]


def one_hot(labels, num_classes: int) -> jax.Array:
    """Integer class labels -> float one-hot vectors, the values of a discrete
    neural site (see ``num_classes`` of :func:`sample`)."""
    return jax.nn.one_hot(jnp.asarray(labels), num_classes)


def gumbel_softmax(
    logits: jax.Array, gumbels: jax.Array, temperature: float = 1.0, straight_through: bool = True
) -> jax.Array:
    """A relaxed one-hot sample from ``logits`` with the given Gumbel noise.

    With ``straight_through`` the value is the exact one-hot ``argmax(logits +
    gumbels)`` (the Gumbel-max draw, so counterfactually stable) and the gradient
    is that of the softmax relaxation.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from probcausal.nn import gumbel_softmax
    >>> gumbel_softmax(jnp.array([0.0, 2.0, 0.0]), jnp.zeros(3))
    Array([0., 1., 0.], dtype=float32)
    """
    soft = jax.nn.softmax((logits + gumbels) / temperature, axis=-1)
    if not straight_through:
        return soft
    hard = jax.nn.one_hot(jnp.argmax(soft, axis=-1), soft.shape[-1], dtype=soft.dtype)
    return hard + soft - jax.lax.stop_gradient(soft)


def _context(name: str, parents: Sequence, event_dims: Sequence[int]):
    """Flatten each parent's event dims and concatenate: (batch..., features)."""
    flat = []
    for i, (p, ed) in enumerate(zip(parents, event_dims, strict=True)):
        p = jnp.asarray(p, dtype=jnp.result_type(float))
        if p.ndim < ed:
            raise ValueError(
                f"neural site '{name}': parent {i} has shape {p.shape} but event_dims says "
                f"{ed} event dims"
            )
        batch = p.shape[: p.ndim - ed]
        flat.append(p.reshape(batch + (-1,)) if ed else p[..., None])
    return flat


def sample(
    name: str,
    net: Callable,
    *parents,
    event_dims: Sequence[int] | None = None,
    noise: dist.Distribution | None = None,
    obs_scale: float | None = None,
    num_classes: int | None = None,
    temperature: float = 1.0,
    straight_through: bool = True,
    obs=None,
) -> jax.Array:
    """A neural mechanism site ``name = net(parents, u)`` inside a NumPyro model.

    The exogenous noise ``u`` is an explicit latent site ``{name}_noise`` (standard
    normal of size ``net.noise_features`` unless ``noise`` is given), so the site
    works with :class:`~probcausal.do`, :class:`~probcausal.TwinWorld` and every
    query like any other: worlds share ``u``, and abduction infers it. Noise shared
    between several sites (a latent confounder) is just another latent parent.

    Parameters
    ----------
    name : str
        Site name.
    net : callable
        ``net(context, u)``: a Flax NNX module (its weights become a trainable
        ``param`` site ``{name}_net$params`` through
        :func:`numpyro.contrib.module.nnx_module`), a :class:`Frozen` pretrained
        module (constants, no ``param`` site), or any function.
    *parents : arrays
        Parent values; each is flattened over its event dims and all are
        concatenated into ``context``.
    event_dims : sequence of int, optional
        Event dims of each parent (default 0: one scalar per unit; 1 for vectors
        such as one-hot codes; 3 for images).
    noise : Distribution, optional
        Distribution of ``u`` with event shape ``(noise_features,)``.
    obs_scale : float, optional
        Gaussian observation noise on the output. Needed to condition on the
        site's value (abduction of ``u``); without it the site is a ``Delta``.
    num_classes : int, optional
        A discrete site: ``net`` returns logits, the value is a one-hot vector
        drawn by Gumbel-max with noise site ``{name}_gumbel`` (Gumbel-softmax
        gradients, straight-through unless ``straight_through=False``).
    obs : array, optional
        Observed value, as in :func:`numpyro.sample`.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> from flax import nnx
    >>> import probcausal as pc
    >>> g = pc.nn.MLPGenerator(1, 2, hidden=(8,), rngs=nnx.Rngs(0))
    >>> def model():
    ...     x = numpyro.sample("x", dist.Normal(0, 1))
    ...     return pc.nn.sample("y", g, x)
    >>> sorted(pc.graph(model).edges())
    [('x', 'y'), ('y_noise', 'y')]
    >>> draws = pc.interventional(model, {"x": 1.0}, rng_key=jax.random.key(0), num_samples=5)
    >>> draws["y"].shape
    (5,)
    """
    if event_dims is None:
        event_dims = (0,) * len(parents)
    if len(event_dims) != len(parents):
        raise ValueError(
            f"neural site '{name}': {len(parents)} parents but {len(event_dims)} event_dims"
        )
    if isinstance(net, nnx.Module):
        fn = nnx_module(f"{name}_net", net)
    else:
        fn = net
    if noise is None:
        k = getattr(net, "noise_features", None)
        if k is None:
            raise ValueError(
                f"neural site '{name}': cannot tell the noise size; give `noise=` or a net "
                "with a `noise_features` attribute"
            )
        noise = dist.Normal(jnp.zeros(k), 1.0).to_event(1)
    u = numpyro.sample(f"{name}_noise", noise)
    flat = _context(name, parents, event_dims)
    batch = jnp.broadcast_shapes(u.shape[:-1], *(f.shape[:-1] for f in flat))
    context = jnp.concatenate(
        [jnp.broadcast_to(f, batch + f.shape[-1:]) for f in flat]
        or [jnp.zeros(batch + (0,), u.dtype)],
        axis=-1,
    )
    expected = getattr(net, "context_features", None)
    if expected is not None and context.shape[-1] != expected:
        raise ValueError(
            f"neural site '{name}': its parents give {context.shape[-1]} context features "
            f"but the net takes context_features={expected}; check `event_dims` or the "
            "net's size"
        )
    value = fn(context, jnp.broadcast_to(u, batch + u.shape[-1:]))
    if num_classes is not None:
        if value.shape[-1] != num_classes:
            raise ValueError(
                f"neural site '{name}': the net returns {value.shape[-1]} logits, "
                f"num_classes={num_classes}"
            )
        g = numpyro.sample(f"{name}_gumbel", dist.Gumbel(jnp.zeros(num_classes), 1.0).to_event(1))
        value = gumbel_softmax(value, g, temperature, straight_through)
    event_dim = value.ndim - len(batch)
    if obs_scale is not None:
        return numpyro.sample(name, dist.Normal(value, obs_scale).to_event(event_dim), obs=obs)
    return numpyro.sample(name, dist.Delta(value, event_dim=event_dim), obs=obs)
