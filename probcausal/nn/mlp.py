"""Fully connected networks: the MLP, a generator x = G(context, u), a critic
and an encoder."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["MLP", "MLPGenerator", "Critic", "Encoder"]


class MLP(nnx.Module):
    """A multilayer perceptron ``in_features -> hidden... -> out_features``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from probcausal.nn import MLP
    >>> net = MLP(3, 2, hidden=(16,), rngs=nnx.Rngs(0))
    >>> net(jnp.ones((5, 3))).shape
    (5, 2)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        hidden: Sequence[int] = (64, 64),
        activation: Callable = nnx.leaky_relu,
        rngs: nnx.Rngs,
    ):
        sizes = [in_features, *hidden, out_features]
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        )
        self.activation = activation
        self.in_features = in_features
        self.out_features = out_features

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.layers[-1](x)


class MLPGenerator(nnx.Module):
    """A mechanism ``x = G(context, u)`` for a variable of shape ``out_shape``.

    ``context`` is the flattened, concatenated parents ``(..., context_features)``;
    ``u`` the site's own noise ``(..., noise_features)``. With ``num_classes`` the
    output is logits over the classes (see :func:`probcausal.nn.sample`);
    ``output`` maps the last layer (for example ``jax.nn.sigmoid`` for images with
    values in (0, 1)).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from probcausal.nn import MLPGenerator
    >>> g = MLPGenerator(2, 1, out_shape=(), rngs=nnx.Rngs(0))
    >>> g(jnp.ones((4, 2)), jnp.zeros((4, 1))).shape
    (4,)
    """

    def __init__(
        self,
        context_features: int,
        noise_features: int,
        *,
        out_shape: Sequence[int] = (),
        hidden: Sequence[int] = (64, 64),
        activation: Callable = nnx.leaky_relu,
        output: Callable | None = None,
        rngs: nnx.Rngs,
    ):
        self.output = output
        self.out_shape = tuple(out_shape)
        self.context_features = context_features
        self.noise_features = noise_features
        out = 1
        for s in self.out_shape:
            out *= s
        self.net = MLP(
            context_features + noise_features,
            out,
            hidden=hidden,
            activation=activation,
            rngs=rngs,
        )

    def __call__(self, context: jax.Array, noise: jax.Array) -> jax.Array:
        h = jnp.concatenate([context, noise], axis=-1)  # (..., C + K)
        out = self.net(h).reshape(h.shape[:-1] + self.out_shape)  # (..., *out_shape)
        return out if self.output is None else self.output(out)


class Critic(nnx.Module):
    """A Wasserstein critic: a scalar score per sample of a set of variables.

    Called with a dict ``site -> (batch, *event)``; the values are flattened and
    concatenated in sorted site order. Layer normalization, not batch
    normalization, so the gradient penalty stays per sample.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from probcausal.nn import Critic
    >>> critic = Critic(3, rngs=nnx.Rngs(0))
    >>> critic({"x": jnp.ones((8,)), "y": jnp.ones((8, 2))}).shape
    (8,)
    """

    def __init__(
        self,
        in_features: int,
        *,
        hidden: Sequence[int] = (128, 128),
        rngs: nnx.Rngs,
    ):
        self.in_features = in_features
        sizes = [in_features, *hidden]
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        )
        self.norms = nnx.List([nnx.LayerNorm(b, rngs=rngs) for b in hidden])
        self.out = nnx.Linear(sizes[-1], 1, rngs=rngs)

    def __call__(self, values: dict[str, jax.Array]) -> jax.Array:
        h = flatten_values(values)  # (batch, in_features)
        if h.shape[-1] != self.in_features:
            raise ValueError(
                f"critic expects {self.in_features} input features, got {h.shape[-1]} from "
                f"sites {sorted(values)}; build it with Critic({h.shape[-1]}, ...)"
            )
        for layer, norm in zip(self.layers, self.norms, strict=True):
            h = nnx.leaky_relu(norm(layer(h)))
        return self.out(h)[..., 0]


class Encoder(nnx.Module):
    """An amortized posterior ``q(u | inputs) = Normal(loc, scale)``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from probcausal.nn import Encoder
    >>> loc, scale = Encoder(3, 2, rngs=nnx.Rngs(0))(jnp.ones((5, 3)))
    >>> loc.shape, bool((scale > 0).all())
    ((5, 2), True)
    """

    def __init__(
        self,
        in_features: int,
        latent_features: int,
        *,
        hidden: Sequence[int] = (64, 64),
        rngs: nnx.Rngs,
    ):
        self.net = MLP(in_features, 2 * latent_features, hidden=hidden, rngs=rngs)
        self.latent_features = latent_features

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = self.net(x)  # (..., 2L)
        loc, raw = jnp.split(h, 2, axis=-1)
        return loc, jax.nn.softplus(raw) + 1e-4


def flatten_values(values: dict[str, jax.Array]) -> jax.Array:
    """Concatenate ``site -> (batch, *event)`` arrays into ``(batch, features)``,
    in sorted site order."""
    parts = []
    for name in sorted(values):
        v = jnp.asarray(values[name])
        parts.append(v.reshape(v.shape[:1] + (-1,)) if v.ndim > 1 else v[:, None])
    return jnp.concatenate(parts, axis=-1)
