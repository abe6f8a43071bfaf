"""The AVICI inference network (Lorch et al., 2022) in Flax NNX.

Input: a data set ``(n, d, 2)``, per variable its standardized values and an
intervention indicator. A linear embedding, then ``layers`` pairs of pre-norm
residual blocks (multi-head self-attention + a 4x feed-forward), the first of each
pair attending over the variables within every sample, the second over the samples
within every variable; a final norm and a max-pool over samples give one vector per
variable; edge logits are ``exp(t) <u_i, v_j> + b`` from two L2-normalized
projections, with the diagonal masked.

No positional information enters anywhere, so the network is exactly equivariant to
permuting the variables (the edge matrix permutes along) and invariant to
permuting the samples.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["AVICI", "blocked_attention", "edge_probabilities"]

#: logit of the diagonal (self-loops are not edges)
MASKED = -1e9


#: queries per block of :func:`blocked_attention`
QUERY_BLOCK = 128


def blocked_attention(query, key, value, *, mask=None, dropout_rate=0.0, **kwargs):
    """Flax's ``dot_product_attention``, over blocks of at most :data:`QUERY_BLOCK`
    queries at a time when the sequence is longer than two blocks.

    The same arithmetic; what changes is the memory: the attention weights of one
    block, ``(..., heads, block, length)``, instead of all ``length^2`` of them. Over
    the samples of a data set (``length = n``, a thousand and more) the full weights
    do not fit in the CPU's caches, and blocks run 1.5x faster there.
    """
    length = query.shape[-3]
    blocks = -(-length // QUERY_BLOCK)
    if blocks <= 2 or mask is not None or dropout_rate > 0 or kwargs.get("is_causal"):
        return nnx.dot_product_attention(
            query, key, value, mask=mask, dropout_rate=dropout_rate, **kwargs
        )
    kwargs.pop("module", None)  # sowing the weights needs them all at once
    size = -(-length // blocks)
    pad = [(0, 0)] * query.ndim
    pad[-3] = (0, blocks * size - length)
    q = jnp.pad(query, pad)  # padded queries are dropped below
    q = jnp.moveaxis(q.reshape(*q.shape[:-3], blocks, size, *q.shape[-2:]), -4, 0)
    out = jax.lax.map(lambda qb: nnx.dot_product_attention(qb, key, value, **kwargs), q)
    out = jnp.moveaxis(out, 0, -4)
    out = out.reshape(*out.shape[:-4], blocks * size, *out.shape[-2:])
    return out[..., :length, :, :]


class _Block(nnx.Module):
    """Pre-norm residual attention + feed-forward over the second-to-last axis."""

    def __init__(self, dim: int, heads: int, ffn_factor: int, *, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(dim, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(
            num_heads=heads,
            in_features=dim,
            qkv_features=dim,
            decode=False,
            attention_fn=blocked_attention,
            rngs=rngs,
        )
        self.norm2 = nnx.LayerNorm(dim, rngs=rngs)
        self.hidden = nnx.Linear(dim, ffn_factor * dim, rngs=rngs)
        self.out = nnx.Linear(ffn_factor * dim, dim, rngs=rngs)

    def __call__(self, h: jax.Array) -> jax.Array:
        z = self.norm1(h)
        h = h + self.attention(z, z, z)
        z = self.norm2(h)
        return h + self.out(jax.nn.gelu(self.hidden(z)))


class AVICI(nnx.Module):
    """Amortized causal structure learning: data set -> edge logits.

    Parameters
    ----------
    dim : int
        Width of the token representations.
    layers : int
        Number of (variable-axis, sample-axis) block pairs.
    heads : int
        Attention heads (``dim`` must be divisible by it).
    ffn_factor : int
        Hidden width of the feed-forward layers, in units of ``dim``.
    rngs : flax.nnx.Rngs

    Examples
    --------
    >>> import jax
    >>> from flax import nnx
    >>> from probcausal.models.avici import AVICI
    >>> net = AVICI(dim=16, layers=1, heads=2, rngs=nnx.Rngs(0))
    >>> net(jax.numpy.zeros((30, 4, 2))).shape
    (4, 4)
    """

    def __init__(
        self,
        *,
        dim: int = 64,
        layers: int = 4,
        heads: int = 4,
        ffn_factor: int = 4,
        rngs: nnx.Rngs,
    ):
        if dim % heads:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        # a tuple: static attributes of an NNX module must be hashable
        self._config = (
            ("dim", dim),
            ("layers", layers),
            ("heads", heads),
            ("ffn_factor", ffn_factor),
        )
        self.embed = nnx.Linear(2, dim, rngs=rngs)
        self.blocks = nnx.List(
            [_Block(dim, heads, ffn_factor, rngs=rngs) for _ in range(2 * layers)]
        )
        self.norm = nnx.LayerNorm(dim, rngs=rngs)
        self.u = nnx.Linear(dim, dim, rngs=rngs)
        self.v = nnx.Linear(dim, dim, rngs=rngs)
        self.log_temperature = nnx.Param(jnp.array(np.log(10.0), jnp.float32))
        self.bias = nnx.Param(jnp.array(-3.0, jnp.float32))

    @property
    def config(self) -> dict:
        """The constructor arguments (what :func:`save_avici` stores)."""
        return dict(self._config)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(..., n, d, 2)`` -> edge logits ``(..., d, d)``; ``[i, j]`` is ``i -> j``."""
        if x.ndim < 3 or x.shape[-1] != 2:
            raise ValueError(
                f"AVICI expects data of shape (..., n, d, 2) (values, intervention indicator), "
                f"got {x.shape}"
            )
        h = self.embed(x)  # (..., n, d, D)
        for i, block in enumerate(self.blocks):
            if i % 2 == 0:  # attend over the variables of each sample
                h = block(h)
            else:  # attend over the samples of each variable
                h = jnp.swapaxes(block(jnp.swapaxes(h, -2, -3)), -2, -3)
        h = self.norm(h).max(axis=-3)  # (..., d, D)
        u = _normalize(self.u(h))
        v = _normalize(self.v(h))
        logits = jnp.exp(self.log_temperature[...]) * jnp.einsum("...id,...jd->...ij", u, v)
        logits = logits + self.bias[...]
        d = logits.shape[-1]
        return jnp.where(jnp.eye(d, dtype=bool), MASKED, logits)


def _normalize(x: jax.Array) -> jax.Array:
    return x / jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True) + 1e-12)


def edge_probabilities(logits: jax.Array) -> jax.Array:
    """Sigmoid of the logits, exactly zero on the diagonal."""
    d = logits.shape[-1]
    return jnp.where(jnp.eye(d, dtype=bool), 0.0, jax.nn.sigmoid(logits))
