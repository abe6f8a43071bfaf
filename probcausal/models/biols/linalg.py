"""Small dense linear algebra in plain JAX operations, for the BIOLS objective.

XLA's CPU backend runs batched LAPACK kernels (Cholesky, triangular solves, LU)
through a parallel batch map on its intra-op thread pool; inside a vmapped,
scanned training step on a machine with few cores that pool can wait on itself
for ever. The matrices here are ``d x d`` with ``d`` the number of latents (tens
at most), so the ``d``-step loops below cost little and lower to ordinary
fused XLA operations that cannot wedge.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = ["cholesky", "solve_lower", "cho_solve", "nilpotent_inverse"]


def cholesky(a: jax.Array) -> jax.Array:
    """The lower Cholesky factor of the symmetric positive-definite ``a``
    ``(..., d, d)``, column by column (NaN where ``a`` is not positive definite)."""
    d = a.shape[-1]
    rows = jnp.arange(d)

    def column(chol, j):
        s = a[..., :, j] - jnp.einsum("...ik,...k->...i", chol, chol[..., j, :])
        col = jnp.where(rows >= j, s / jnp.sqrt(s[..., j])[..., None], 0.0)
        return chol.at[..., :, j].set(col), None

    chol, _ = jax.lax.scan(column, jnp.zeros_like(a), rows)
    return chol


def solve_lower(chol: jax.Array, b: jax.Array) -> jax.Array:
    """``chol⁻¹ b`` for lower-triangular ``chol`` ``(..., d, d)`` and ``b``
    ``(..., d, m)``, by forward substitution."""
    d = chol.shape[-1]

    def row(x, j):
        r = b[..., j, :] - jnp.einsum("...k,...km->...m", chol[..., j, :], x)
        return x.at[..., j, :].set(r / chol[..., j, j][..., None]), None

    shape = jnp.broadcast_shapes(chol.shape[:-2], b.shape[:-2]) + b.shape[-2:]
    x, _ = jax.lax.scan(row, jnp.zeros(shape, b.dtype), jnp.arange(d))
    return x


def cho_solve(chol: jax.Array, b: jax.Array) -> jax.Array:
    """``(chol cholᵀ)⁻¹ b`` from the lower Cholesky factor ``chol``."""
    # (L Lᵀ)⁻¹ b = L⁻ᵀ (L⁻¹ b); L⁻ᵀ y by solving the reversed (lower) system
    y = solve_lower(chol, b)
    flip = jnp.flip(jnp.swapaxes(chol, -1, -2), axis=(-2, -1))
    return jnp.flip(solve_lower(flip, jnp.flip(y, axis=-2)), axis=-2)


def nilpotent_inverse(w: jax.Array) -> jax.Array:
    """``(I - w)⁻¹ = I + w + w² + ...`` for a nilpotent ``w`` ``(..., d, d)``
    (the weights of a DAG: ``w^d = 0``), as ``(I + w)(I + w²)(I + w⁴)...``."""
    d = w.shape[-1]
    eye = jnp.eye(d, dtype=w.dtype)
    out, power = eye + w, w
    for _ in range(max(0, math.ceil(math.log2(d)) - 1)):
        power = power @ power
        out = out @ (eye + power)
    return out
