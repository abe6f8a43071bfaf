"""Latent linear-Gaussian SCMs seen through a decoder, with known interventions.

The design of Subramanian et al. (2022), "Learning Latent Structural Causal
Models": ``d`` latent variables ``z`` with a linear-Gaussian SCM on an
Erdős–Rényi DAG over a random node order (weights ``±U(0.5, 2)``, noise standard
deviations ``U(1, 2)``, ``z`` clipped to ``[-8, 8]``), observed as
``x = f(z) + N(0, 0.1²)`` in ``D`` dimensions, where ``f`` is a random linear
projection (``U(-5, 5)``), a random bias-free GELU MLP or the "chemdata" block
image renderer. Every row carries its intervention targets and values: an
observational block, then ``num_target_sets`` sets of 1 to ``d - 1`` targets,
each on ``rows_per_set`` rows, with ``z_j = v_ij + N(0, 0.1²)`` on a target, the
value ``v_ij`` drawn ``N(0, 2²)`` per row (``values="gaussian"``) or zero
(``values="zero"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from probcausal.data.graphs import sample_dag

__all__ = ["LatentSCMData", "latent_scm_data", "render_blocks", "PROJECTIONS", "VALUES"]

PROJECTIONS = ("linear", "mlp", "blocks")
VALUES = ("gaussian", "zero")
#: the standard deviation of a hard intervention's noise, ``z_j = v + N(0, 0.1²)``
INTERVENTION_NOISE = 0.1
CLIP = 8.0


class LatentSCMData(NamedTuple):
    """A simulated data set and the truth behind it.

    ``x`` ``(n, D)`` (or ``(n, 50, 50)`` images), ``z`` ``(n, d)``, ``targets``
    ``(n, d)`` bool, ``values`` ``(n, d)`` (zero where not a target), ``weights``
    ``(d, d)`` with ``weights[i, j]`` the edge ``z_i -> z_j``, ``noise_scale``
    ``(d,)``, ``order`` (a topological order), ``decoder`` the parameters of
    ``f`` and ``projection`` its kind, ``x_noise`` the observation noise."""

    x: np.ndarray
    z: np.ndarray
    targets: np.ndarray
    values: np.ndarray
    weights: np.ndarray
    noise_scale: np.ndarray
    order: np.ndarray
    decoder: Any
    projection: str
    x_noise: float

    @property
    def adjacency(self) -> np.ndarray:
        """``(d, d)`` 0/1, ``[i, j] = 1`` for the edge ``z_i -> z_j``."""
        return (self.weights != 0).astype(int)

    def decode(self, z) -> np.ndarray:
        """``f(z)``, the noise-free observation of latents ``z`` ``(..., d)``."""
        return np.asarray(_decode(self.projection, self.decoder, jnp.asarray(z)))

    def sample(self, rng_key, num_samples: int, actions: Mapping[int, float] | None = None):
        """``(z, x)``: ``num_samples`` draws of the generator under the hard
        intervention ``do(z_j = v)`` for ``{j: v}`` in ``actions`` (with the
        intervention noise), observational when ``actions`` is empty."""
        d = self.weights.shape[0]
        targets = np.zeros((num_samples, d), bool)
        values = np.zeros((num_samples, d), np.float32)
        for j, v in (actions or {}).items():
            targets[:, j], values[:, j] = True, v
        k_z, k_x = jax.random.split(rng_key)
        z = _simulate_z(k_z, self.weights, self.noise_scale, self.order, targets, values)
        x = self.decode(z)
        x = x + self.x_noise * np.asarray(jax.random.normal(k_x, x.shape))
        return np.asarray(z), x


def _simulate_z(key, weights, noise_scale, order, targets, values):
    n, d = targets.shape
    eps = np.asarray(jax.random.normal(key, (n, d)), np.float64)
    z = np.zeros((n, d))
    w = np.asarray(weights, np.float64)
    for j in np.asarray(order):
        natural = z @ w[:, j] + noise_scale[j] * eps[:, j]
        forced = values[:, j] + INTERVENTION_NOISE * eps[:, j]
        z[:, j] = np.clip(np.where(targets[:, j], forced, natural), -CLIP, CLIP)
    return z.astype(np.float32)


def render_blocks(z, size: int = 50, grid: int = 5):
    """The "chemdata" renderer: a ``size x size`` image cut into a ``grid x grid``
    array of cells; latent ``j`` fills cell ``j`` with intensity
    ``255 * (z_j / 16 + 0.5)`` (linear in ``z``), scaled here to ``[0, 1]`` by
    dividing by 255. ``z`` ``(..., d)`` with ``d <= grid²``."""
    z = jnp.asarray(z)
    d = z.shape[-1]
    if d > grid * grid:
        raise ValueError(f"{d} latents do not fit a {grid}x{grid} grid of cells")
    cell = size // grid
    masks = np.zeros((d, size, size), np.float32)
    for j in range(d):
        r, c = divmod(j, grid)
        masks[j, r * cell : (r + 1) * cell, c * cell : (c + 1) * cell] = 1.0
    intensity = z / 16.0 + 0.5
    return jnp.einsum("...j,jhw->...hw", intensity, masks)


def _decode(projection, decoder, z):
    if projection == "linear":
        return z @ decoder
    if projection == "mlp":
        h = z
        for i, w in enumerate(decoder):
            h = h @ w
            if i < len(decoder) - 1:
                h = jax.nn.gelu(h)
        return h
    return render_blocks(z)


def _random_decoder(key, projection, d, dim):
    if projection == "linear":
        return np.asarray(jax.random.uniform(key, (d, dim), minval=-5.0, maxval=5.0))
    if projection == "mlp":  # bias-free GELU MLP d -> D -> D, scaled to unit fan-in
        k1, k2 = jax.random.split(key)
        w1 = jax.random.normal(k1, (d, dim)) * np.sqrt(2.0 / d)
        w2 = jax.random.normal(k2, (dim, dim)) * np.sqrt(2.0 / dim)
        return [np.asarray(w1), np.asarray(w2)]
    return None


def latent_scm_data(
    rng_key: jax.Array,
    num_latents: int = 5,
    dim: int = 100,
    *,
    expected_degree: float = 1.0,
    projection: str = "linear",
    values: str = "gaussian",
    num_observational: int = 2000,
    num_target_sets: int = 20,
    rows_per_set: int = 100,
    x_noise: float = 0.1,
) -> LatentSCMData:
    """Simulate a latent linear-Gaussian SCM, its decoder and a data set with
    known interventions (see the module docstring).

    ``projection="blocks"`` renders 50x50 images (``dim`` is ignored). Every
    choice is drawn from ``rng_key``: the same key gives the same data.

    Examples
    --------
    >>> import jax
    >>> from probcausal.data import latent_scm_data
    >>> data = latent_scm_data(jax.random.key(0), num_latents=5, dim=100)
    >>> data.x.shape, data.targets.shape, int(data.targets[:2000].sum())
    ((4000, 100), (4000, 5), 0)
    >>> bool((data.values[~data.targets] == 0).all())
    True
    """
    d = int(num_latents)
    if d < 2:
        raise ValueError(f"num_latents={num_latents}: a latent SCM needs at least 2 latents")
    if projection not in PROJECTIONS:
        raise ValueError(f"projection={projection!r}: choose one of {PROJECTIONS}")
    if values not in VALUES:
        raise ValueError(f"values={values!r}: choose one of {VALUES}")
    keys = jax.random.split(rng_key, 8)
    # ER graph on a random order: an upper-triangular DAG, relabelled
    upper = np.asarray(sample_dag(keys[0], d, "er", expected_degree))
    perm = np.asarray(jax.random.permutation(keys[1], d))
    adjacency = np.zeros((d, d))
    adjacency[np.ix_(perm, perm)] = upper  # node perm[k] sits at position k
    magnitude = np.asarray(jax.random.uniform(keys[2], (d, d), minval=0.5, maxval=2.0))
    sign = np.where(np.asarray(jax.random.bernoulli(keys[3], 0.5, (d, d))), 1.0, -1.0)
    weights = (adjacency * magnitude * sign).astype(np.float32)
    noise_scale = np.asarray(jax.random.uniform(keys[4], (d,), minval=1.0, maxval=2.0))

    # the intervention design: an observational block, then the target sets
    rng = np.random.default_rng(np.asarray(jax.random.key_data(keys[5])).ravel().tolist())
    n = num_observational + num_target_sets * rows_per_set
    targets = np.zeros((n, d), bool)
    for s in range(num_target_sets):
        chosen = rng.choice(d, size=rng.integers(1, d), replace=False)
        rows = slice(
            num_observational + s * rows_per_set, num_observational + (s + 1) * rows_per_set
        )
        targets[rows, chosen] = True
    draws = 2.0 * np.asarray(jax.random.normal(keys[6], (n, d)))
    vals = np.where(targets, draws if values == "gaussian" else 0.0, 0.0).astype(np.float32)

    decoder = _random_decoder(keys[7], projection, d, dim)
    data = LatentSCMData(
        x=None,
        z=None,
        targets=targets,
        values=vals,
        weights=weights,
        noise_scale=noise_scale.astype(np.float32),
        order=perm,
        decoder=decoder,
        projection=projection,
        x_noise=float(x_noise),
    )
    k_z, k_x = jax.random.split(jax.random.fold_in(rng_key, 1))
    z = _simulate_z(k_z, weights, noise_scale, perm, targets, vals)
    x = data.decode(z)
    x = (x + x_noise * np.asarray(jax.random.normal(k_x, x.shape))).astype(np.float32)
    return data._replace(x=x, z=z)
