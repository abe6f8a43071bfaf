"""The pieces of BIOLS's objective: the latent SCM's weights from a node order,
the permutation posterior (Gumbel-Sinkhorn), and the collapsed likelihood of a
linear decoder (the latents integrated out exactly per intervention context).

Notation: ``W[i, j]`` is the weight of the edge ``z_i -> z_j``, so a row of latents
solves ``z = z W + e``; an intervention context is a target mask ``t`` (``d``
bools): the targets' incoming edges are cut and their noise is
``N(v_j, intervention_noise²)``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment

from probcausal.models.biols import linalg as la

__all__ = [
    "weights_from_order",
    "permutation_matrix",
    "sinkhorn",
    "hungarian",
    "gumbel_sinkhorn_sample",
    "context_moments",
    "collapsed_log_likelihood",
    "Projected",
    "project_data",
    "projected_log_likelihood",
    "prior_expected_log_likelihood",
    "posterior_latents",
]

_LOG_2PI = float(np.log(2 * np.pi))


def lower_indices(d: int):
    """The ``d (d - 1) / 2`` strictly lower-triangular positions, row-major."""
    return np.tril_indices(d, -1)


def weights_from_order(lower: jax.Array, perm: jax.Array, d: int) -> jax.Array:
    """``W = (P L Pᵀ)ᵀ`` for the strictly lower-triangular ``L`` whose entries are
    ``lower`` (row-major) and the permutation matrix ``perm`` (``perm[i, k] = 1``
    when node ``i`` sits at position ``k``): ``W[i, j] != 0`` only when ``i``
    comes before ``j``, so ``W`` is acyclic by construction."""
    rows, cols = lower_indices(d)
    L = jnp.zeros(lower.shape[:-1] + (d, d), lower.dtype).at[..., rows, cols].set(lower)
    return jnp.swapaxes(perm @ L @ jnp.swapaxes(perm, -1, -2), -1, -2)


def permutation_matrix(order) -> np.ndarray:
    """The matrix ``P`` of a node order (``order[k]`` is the node at position
    ``k``): ``P[order[k], k] = 1``."""
    order = np.asarray(order)
    d = order.shape[0]
    p = np.zeros((d, d), np.float32)
    p[order, np.arange(d)] = 1.0
    return p


def sinkhorn(log_alpha: jax.Array, iterations: int = 20) -> jax.Array:
    """Sinkhorn normalisation in log space: a doubly stochastic matrix close to
    ``softmax`` of ``log_alpha`` along both axes."""

    def body(la, _):
        la = la - jax.nn.logsumexp(la, axis=-1, keepdims=True)
        la = la - jax.nn.logsumexp(la, axis=-2, keepdims=True)
        return la, None

    la, _ = jax.lax.scan(body, log_alpha, None, length=iterations)
    return jnp.exp(la)


def _assign(scores):
    # non-finite scores (a diverging restart) would make SciPy raise inside the
    # callback; they get a finite assignment and the NaN reaches the loss instead
    scores = np.nan_to_num(np.asarray(scores, np.float64), nan=0.0, posinf=1e30, neginf=-1e30)
    out = np.zeros(scores.shape, np.float32)
    for idx in np.ndindex(scores.shape[:-2]):
        rows, cols = linear_sum_assignment(-scores[idx])
        out[idx + (rows, cols)] = 1.0
    return out


def hungarian(scores: jax.Array) -> jax.Array:
    """The permutation matrix of largest total score (Hungarian algorithm, run by
    SciPy on the host; jittable and vmappable)."""
    shape = jax.ShapeDtypeStruct(scores.shape, jnp.float32)
    return jax.pure_callback(_assign, shape, scores, vmap_method="expand_dims")


def gumbel_sinkhorn_sample(key, logits, temperature: float, iterations: int = 20):
    """A hard permutation drawn from the Gumbel-Sinkhorn distribution with the
    soft matrix's gradient (straight-through): ``hard + soft - stop_gradient(soft)``."""
    noisy = (logits + jax.random.gumbel(key, logits.shape)) / temperature
    soft = sinkhorn(noisy, iterations)
    hard = hungarian(jax.lax.stop_gradient(noisy))
    return hard + soft - jax.lax.stop_gradient(soft)


def context_moments(weights, noise_scale, context_targets, intervention_noise: float):
    """Per context ``k`` (target mask ``context_targets[k]``): ``M_k``, where a
    row of latents is ``z = e M_k`` for the noise row ``e``, and the latents'
    covariance ``S_k = M_kᵀ diag(σ_k²) M_k`` (``σ_k`` the noise scale, the
    intervention noise on the targets)."""
    t = context_targets.astype(weights.dtype)  # (K, d)
    cut = weights[None] * (1.0 - t)[:, None, :]  # the targets' incoming edges removed
    m = la.nilpotent_inverse(cut)  # (K, d, d): z = e M
    scale = jnp.where(context_targets, intervention_noise, noise_scale[None])
    cov = jnp.einsum("kai,ka,kaj->kij", m, scale**2, m)
    return m, cov


def _project(x, decoder, bias):
    """The least-squares latents ``ẑ = (x - b) Aᵀ (A Aᵀ)⁻¹``, the residual off the
    decoder's row space, and ``A Aᵀ``'s Cholesky factor."""
    gram = decoder @ decoder.T
    chol = jnp.linalg.cholesky(gram)
    r = x - bias
    zhat = jax.scipy.linalg.cho_solve((chol, True), decoder @ r.T).T
    return zhat, r - zhat @ decoder, chol


def collapsed_log_likelihood(
    x,
    context,
    context_targets,
    target_values,
    weights,
    noise_scale,
    decoder,
    bias,
    x_noise,
    intervention_noise: float = 0.1,
):
    """``sum_i log p(x_i | W, σ, A, b, σ_x)`` with every row's latents integrated
    out: in context ``k``, ``z ~ N(v M_k, S_k)`` (``v`` the row's target values,
    zero elsewhere) and ``x = z A + b + N(0, σ_x² I)``, so ``x`` is Gaussian with
    covariance ``Aᵀ S_k A + σ_x² I``.

    Computed stably in float32 by splitting ``x`` into its least-squares latents
    ``ẑ = z + N(0, σ_x² (A Aᵀ)⁻¹)`` and the residual off the decoder's row space
    (``N(0, σ_x²)`` in its ``D - d`` directions): no ``D x D`` matrix is formed.
    """
    n, dim = x.shape
    d = weights.shape[-1]
    zhat, resid, chol_gram = _project(x, decoder, bias)
    m, cov = context_moments(weights, noise_scale, context_targets, intervention_noise)
    gram_inv = jax.scipy.linalg.cho_solve((chol_gram, True), jnp.eye(d, dtype=zhat.dtype))
    total_cov = cov + x_noise**2 * gram_inv[None]  # (K, d, d): the covariance of ẑ
    chol = jnp.linalg.cholesky(total_cov)
    eye = jnp.broadcast_to(jnp.eye(d, dtype=zhat.dtype), chol.shape)
    chol_inv = jax.scipy.linalg.solve_triangular(chol, eye, lower=True)  # (K, d, d)
    mean = jnp.einsum("na,nab->nb", target_values, m[context])
    delta = zhat - mean
    white = jnp.einsum("nab,nb->na", chol_inv[context], delta)
    logdet = 2 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), -1)  # (K,)
    in_span = -0.5 * (jnp.sum(white**2) + jnp.sum(logdet[context]) + n * d * _LOG_2PI)
    return in_span + _off_span(jnp.sum(resid**2), n, dim, chol_gram, x_noise)


def _off_span(resid_ss, n, dim, chol_gram, x_noise):
    """The log-likelihood of the ``n`` rows' residuals off the decoder's row space
    (``N(0, σ_x²)`` in its ``D - d`` directions, total square ``resid_ss``), plus
    the change of variables ``x -> ẑ`` over the row space, ``|det A Aᵀ|^(1/2)``
    per row (``chol_gram`` the Cholesky factor of ``A Aᵀ``)."""
    d = chol_gram.shape[-1]
    jac = -jnp.sum(jnp.log(jnp.diagonal(chol_gram)))
    off = -0.5 * (resid_ss / x_noise**2 + n * (dim - d) * (_LOG_2PI + 2 * jnp.log(x_noise)))
    return off + n * jac


class Projected(NamedTuple):
    """A data set reduced for a decoder whose rows span a fixed ``d``-dimensional
    subspace with orthonormal basis ``basis`` ``(d, D)``: the coordinates
    ``coords = x basisᵀ`` ``(n, d)``, the mean of ``x`` off the subspace and the sum
    of squares about it, and per intervention context ``k`` the row count, the
    means of the coordinates and of the target values and their centred scatter
    matrices. The collapsed likelihood needs no more, so a step costs
    ``O(K d³)`` whatever the number of rows ``n`` and features ``D``."""

    coords: jax.Array
    off_mean: jax.Array
    off_ss: jax.Array
    basis: jax.Array
    count: jax.Array  # (K,)
    coords_mean: jax.Array  # (K, d)
    values_mean: jax.Array  # (K, d)
    coords_scatter: jax.Array  # (K, d, d): sum of (q - q̄)ᵀ (q - q̄)
    cross_scatter: jax.Array  # (K, d, d): sum of (v - v̄)ᵀ (q - q̄)
    values_scatter: jax.Array  # (K, d, d): sum of (v - v̄)ᵀ (v - v̄)

    @property
    def num_rows(self) -> int:
        return self.coords.shape[0]

    @property
    def dim(self) -> int:
        return self.basis.shape[1]


def project_data(x, basis, context, target_values, num_contexts: int) -> Projected:
    """:class:`Projected` statistics of ``x`` ``(n, D)`` for the orthonormal rows of
    ``basis``, the rows' contexts ``context`` ``(n,)`` (in ``0 .. num_contexts - 1``)
    and their target values ``(n, d)`` (zero off the targets)."""
    coords = x @ basis.T
    off = x - coords @ basis
    off_mean = off.mean(0)
    onehot = jax.nn.one_hot(context, num_contexts, dtype=x.dtype)  # (n, K)
    count = onehot.sum(0)
    q_mean = (onehot.T @ coords) / count[:, None]
    v_mean = (onehot.T @ target_values) / count[:, None]
    qc = coords - q_mean[context]
    vc = target_values - v_mean[context]
    return Projected(
        coords,
        off_mean,
        jnp.sum((off - off_mean) ** 2),
        basis,
        count,
        q_mean,
        v_mean,
        jnp.einsum("nk,na,nb->kab", onehot, qc, qc),
        jnp.einsum("nk,na,nb->kab", onehot, vc, qc),
        jnp.einsum("nk,na,nb->kab", onehot, vc, vc),
    )


def _off_span_residual(data: Projected, bias):
    """The sum of squares of ``x - b`` off the decoder's subspace, and ``β``, the
    coordinates of ``b`` in it."""
    beta = bias @ data.basis.T
    off_bias = bias - beta @ data.basis
    return data.off_ss + data.num_rows * jnp.sum((data.off_mean - off_bias) ** 2), beta


def projected_log_likelihood(
    data: Projected,
    context_targets,
    weights,
    noise_scale,
    coef,
    bias,
    x_noise,
    intervention_noise: float = 0.1,
):
    """:func:`collapsed_log_likelihood` for the decoder ``A = coef @ data.basis``
    (``coef`` ``(d, d)``, invertible), from the :class:`Projected` statistics:
    equal to it, in ``O(K d³)``. Per context ``k``, the residuals
    ``r_i = ẑ_i - v_i M_k`` (``ẑ_i = (q_i - β) coef⁻¹``) enter only through their
    scatter ``Σ r_iᵀ r_i``, their centred scatter plus ``n_k r̄ᵀ r̄``."""
    d, n = coef.shape[0], data.num_rows
    resid_ss, beta = _off_span_residual(data, bias)
    m, cov = context_moments(weights, noise_scale, context_targets, intervention_noise)
    # plain-JAX factorizations (see .linalg): this runs vmapped inside the fit's scan
    chol_gram = la.cholesky(coef @ coef.T)
    gram_inv = la.cho_solve(chol_gram, jnp.eye(d, dtype=coef.dtype))
    inv_coef = coef.T @ gram_inv
    mean_r = (data.coords_mean - beta) @ inv_coef - jnp.einsum("ka,kab->kb", data.values_mean, m)
    vz = data.cross_scatter @ inv_coef  # (K, d, d): Σ (v - v̄)ᵀ (ẑ - z̄)
    mt_vz = jnp.swapaxes(m, -1, -2) @ vz
    scatter = (
        inv_coef.T @ data.coords_scatter @ inv_coef
        - mt_vz
        - jnp.swapaxes(mt_vz, -1, -2)
        + jnp.swapaxes(m, -1, -2) @ data.values_scatter @ m
        + data.count[:, None, None] * mean_r[:, :, None] * mean_r[:, None, :]
    )
    chol = la.cholesky(cov + x_noise**2 * gram_inv[None])  # ẑ's covariance
    solved = la.cho_solve(chol, scatter)
    quad = jnp.sum(jnp.trace(solved, axis1=-2, axis2=-1))
    logdet = 2 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), -1)  # (K,)
    in_span = -0.5 * (quad + jnp.sum(data.count * logdet) + n * d * _LOG_2PI)
    return in_span + _off_span(resid_ss, n, data.dim, chol_gram, x_noise)


def prior_expected_log_likelihood(
    key,
    data: Projected,
    context,
    context_targets,
    target_values,
    weights,
    noise_scale,
    coef,
    bias,
    x_noise,
    intervention_noise: float = 0.1,
):
    """The encoder-free objective: ``sum_i log p(x_i | z_i)`` with one draw of each
    row's latents from their prior under the row's interventions, independent of
    ``x_i`` (reparameterized, so unbiased for ``E_prior[log p(x | z)]``), for the
    decoder ``A = coef @ data.basis``. With zero-valued interventions no row's draw
    carries information about its ``x``: the baseline this objective is kept as."""
    n = data.num_rows
    m, _ = context_moments(weights, noise_scale, context_targets, intervention_noise)
    scale = jnp.where(context_targets, intervention_noise, noise_scale[None])[context]
    noise = target_values + scale * jax.random.normal(key, target_values.shape, coef.dtype)
    z = jnp.einsum("na,nab->nb", noise, m[context])
    resid_ss, beta = _off_span_residual(data, bias)
    resid_ss = resid_ss + jnp.sum((data.coords - beta - z @ coef) ** 2)
    return -0.5 * (resid_ss / x_noise**2 + n * data.dim * (_LOG_2PI + 2 * jnp.log(x_noise)))


def posterior_latents(
    x,
    context,
    context_targets,
    target_values,
    weights,
    noise_scale,
    decoder,
    bias,
    x_noise,
    intervention_noise: float = 0.1,
):
    """``E[z | x]`` per row under the linear-Gaussian model (exact)."""
    d = weights.shape[-1]
    m, cov = context_moments(weights, noise_scale, context_targets, intervention_noise)
    zhat, _, chol_gram = _project(x, decoder, bias)
    gram_inv = jax.scipy.linalg.cho_solve((chol_gram, True), jnp.eye(d, dtype=x.dtype))
    total = cov + x_noise**2 * gram_inv[None]
    gain = jnp.linalg.solve(total, cov)  # S (S + σ² G)⁻¹, transposed: both symmetric
    mean = jnp.einsum("na,nab->nb", target_values, m[context])
    return mean + jnp.einsum("na,nab->nb", zhat - mean, gain[context])
