"""Small convolutional networks for images of 8x8 to 32x32 pixels: a conditional
generator and a conditional critic."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from probcausal.nn.mlp import flatten_values

__all__ = ["ConvGenerator", "ConvCritic"]


def _check_image_shape(image_shape, levels: int, what: str) -> tuple[int, int, int]:
    if len(image_shape) != 3:
        raise ValueError(
            f"{what}: image_shape must be (height, width, channels), got {image_shape}"
        )
    h, w, c = (int(s) for s in image_shape)
    f = 2**levels
    if h % f or w % f:
        raise ValueError(
            f"{what}: image_shape {image_shape} must have height and width divisible by "
            f"{f} for {levels} resolution levels; pass fewer `channels` or pad the images"
        )
    return h, w, c


class ConvGenerator(nnx.Module):
    """An image mechanism ``image = G(context, u)`` with values in ``(0, 1)``.

    A dense layer maps ``[context, u]`` to a coarse feature map, then each entry of
    ``channels`` doubles the resolution with a transposed convolution; a last
    convolution gives ``image_shape = (H, W, C)``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from probcausal.nn import ConvGenerator
    >>> g = ConvGenerator(3, 8, image_shape=(16, 16, 1), rngs=nnx.Rngs(0))
    >>> g(jnp.ones((2, 3)), jnp.zeros((2, 8))).shape
    (2, 16, 16, 1)
    """

    def __init__(
        self,
        context_features: int,
        noise_features: int,
        *,
        image_shape: Sequence[int],
        channels: Sequence[int] = (64, 32),
        rngs: nnx.Rngs,
    ):
        h, w, c = _check_image_shape(image_shape, len(channels), "ConvGenerator")
        self.out_shape = (h, w, c)
        self.context_features = context_features
        self.noise_features = noise_features
        f = 2 ** len(channels)
        self.coarse = (h // f, w // f, channels[0])
        self.dense = nnx.Linear(
            context_features + noise_features, h // f * (w // f) * channels[0], rngs=rngs
        )
        outs = [*channels[1:], channels[-1]]
        self.ups = nnx.List(
            [
                nnx.ConvTranspose(a, b, kernel_size=(4, 4), strides=(2, 2), rngs=rngs)
                for a, b in zip(channels, outs, strict=True)
            ]
        )
        self.to_image = nnx.Conv(outs[-1], c, kernel_size=(3, 3), rngs=rngs)

    def __call__(self, context: jax.Array, noise: jax.Array) -> jax.Array:
        h = jnp.concatenate([context, noise], axis=-1)  # (..., C + K)
        batch = h.shape[:-1]
        h = nnx.leaky_relu(self.dense(h.reshape((-1, h.shape[-1]))))
        h = h.reshape((-1, *self.coarse))  # (B, h/f, w/f, ch0)
        for up in self.ups:
            h = nnx.leaky_relu(up(h))  # resolution x2
        img = jax.nn.sigmoid(self.to_image(h))  # (B, H, W, C)
        return img.reshape(batch + self.out_shape)


class ConvCritic(nnx.Module):
    """A Wasserstein critic for an image site and (optionally) other sites.

    Strided convolutions reduce the image named ``image_site``; the features are
    concatenated with the other sites' values (flattened, sorted by name) and
    scored by a dense head.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from probcausal.nn import ConvCritic
    >>> critic = ConvCritic("img", (8, 8, 1), context_features=2, rngs=nnx.Rngs(0))
    >>> critic({"img": jnp.zeros((4, 8, 8, 1)), "d": jnp.ones((4, 2))}).shape
    (4,)
    """

    def __init__(
        self,
        image_site: str,
        image_shape: Sequence[int],
        *,
        context_features: int = 0,
        channels: Sequence[int] = (32, 64),
        hidden: int = 128,
        rngs: nnx.Rngs,
    ):
        h, w, c = _check_image_shape(image_shape, len(channels), "ConvCritic")
        self.image_site = image_site
        self.image_shape = (h, w, c)
        self.context_features = context_features
        ins = [c, *channels[:-1]]
        self.downs = nnx.List(
            [
                nnx.Conv(a, b, kernel_size=(4, 4), strides=(2, 2), rngs=rngs)
                for a, b in zip(ins, channels, strict=True)
            ]
        )
        f = 2 ** len(channels)
        self.features = h // f * (w // f) * channels[-1]
        self.hidden = nnx.Linear(self.features + context_features, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, 1, rngs=rngs)

    def __call__(self, values: dict[str, jax.Array]) -> jax.Array:
        img = values[self.image_site]  # (B, H, W, C)
        if img.shape[1:] != self.image_shape:
            raise ValueError(
                f"ConvCritic: site '{self.image_site}' has shape {img.shape[1:]} per sample, "
                f"expected {self.image_shape}"
            )
        h = img
        for down in self.downs:
            h = nnx.leaky_relu(down(h))  # resolution /2
        h = h.reshape((h.shape[0], -1))
        rest = {k: v for k, v in values.items() if k != self.image_site}
        if rest:
            h = jnp.concatenate([h, flatten_values(rest)], axis=-1)
        if h.shape[-1] != self.features + self.context_features:
            raise ValueError(
                f"ConvCritic: the sites {sorted(rest)} give {h.shape[-1] - self.features} "
                f"context features, expected context_features={self.context_features}"
            )
        return self.out(nnx.leaky_relu(self.hidden(h)))[..., 0]
