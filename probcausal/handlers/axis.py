"""World indexing, in one place: a site's values in several worlds, along a world
axis (the batch layout of :class:`~probcausal.TwinWorld` /
:class:`~probcausal.MultiWorld`), or stacked along a leading axis (the vmapped
worlds of the compiled queries)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

__all__ = ["WorldAxis", "world_stack"]


class WorldAxis:
    """``num_worlds`` worlds along ``axis`` (negative, counted from the right of a
    value: the world batch dim ``dim`` less the site's event dims)."""

    def __init__(self, num_worlds: int, axis: int):
        self.num_worlds, self.axis = num_worlds, axis
        # world index broadcastable against values: (num_worlds, 1, ..., 1)
        self.index = jnp.arange(num_worlds).reshape((num_worlds,) + (1,) * (-axis - 1))

    def has_world(self, a) -> bool:
        """Whether ``a`` differs between worlds (a world axis of size > 1)."""
        return jnp.ndim(a) >= -self.axis and jnp.shape(a)[self.axis] != 1

    def take(self, a, w: int):
        """World ``w`` of ``a`` (kept as an axis of size 1); ``a`` itself when it is
        the same in every world."""
        return jax.lax.index_in_dim(a, w, self.axis, keepdims=True) if self.has_world(a) else a

    def expand(self, a):
        """``a`` broadcast to every world."""
        a = jnp.asarray(a)
        axis = self.axis
        shape = (1,) * max(0, -axis - a.ndim) + a.shape
        shape = shape[:axis] + (self.num_worlds,) + (shape[axis + 1 :] if axis != -1 else ())
        return jnp.broadcast_to(a, jnp.broadcast_shapes(jnp.shape(a), shape))

    def put(self, value, w: int, v):
        """``value`` with world ``w`` replaced by ``v``."""
        return jnp.where(self.index == w, v, self.expand(value))

    def factual_mask(self, dim: int):
        """True in the factual world, along the batch dim ``dim`` of a density."""
        return jnp.arange(self.num_worlds).reshape((self.num_worlds,) + (1,) * (-dim - 1)) == 0


def world_stack(values: Sequence, shape: tuple[int, ...] | None = None) -> jax.Array:
    """Per-world values of one site as ``(num_worlds, *shape)`` (``shape``: the
    site's shape; by default the broadcast of the worlds' shapes)."""
    values = [jnp.asarray(v) for v in values]
    if shape is None:
        shape = jnp.broadcast_shapes(*(v.shape for v in values))
    return jnp.stack([jnp.broadcast_to(v, shape) for v in values])
