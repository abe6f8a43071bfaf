"""CausalVAE's causal layer: per-concept mechanism networks over masked parents,
the weighted adjacency they imply, the acyclicity function and the solve that
turns exogenous noise into concepts.

The mechanism of concept ``j`` is ``f_j(z) = MLP_j(z)`` whose first layer reads
only the allowed parents; its weighted adjacency is ``A[i, j] = ‖W¹_j[i, :]‖₂``,
the norm of the first-layer weights from concept ``i`` (as in NOTEARS-MLP,
Zheng et al., 2020), so ``A`` starts at zero with those weights. With
``kind="linear"`` the mechanism is ``f_j(z) = Σ_i A[i, j] z_i`` with ``A`` a free
matrix, and the causal layer is the paper's ``z = (I - Aᵀ)⁻¹ ε`` exactly.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["ConceptMechanisms", "acyclicity", "solve_concepts"]


def acyclicity(a: jax.Array) -> jax.Array:
    """``H(A) = tr((I + A∘A / n)ⁿ) - n``: zero exactly when the weighted graph
    ``A`` has no cycle (Yu et al., 2019), positive otherwise.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from probcausal.models.causal_vae.layers import acyclicity
    >>> float(acyclicity(jnp.array([[0.0, 1.0], [0.0, 0.0]])))
    0.0
    >>> float(acyclicity(jnp.array([[0.0, 1.0], [1.0, 0.0]]))) > 0
    True
    """
    n = a.shape[-1]
    b = a * a / n
    # tr((I + B)ⁿ) - n = Σ_k C(n, k) tr(Bᵏ), summed without the cancellation
    # against n that would leave float32 no digits below ~1e-6
    h, power = jnp.trace(b) * n, b
    for k in range(2, n + 1):
        power = power @ b
        h = h + math.comb(n, k) * jnp.trace(power)
    return h


class ConceptMechanisms(nnx.Module):
    """The mechanisms ``f_j`` of ``n`` concepts, each reading the concepts that
    ``mask[:, j]`` allows as parents; ``__call__(z) -> (f(z), A)``.

    Examples
    --------
    >>> import jax.numpy as jnp, numpy as np
    >>> from flax import nnx
    >>> from probcausal.models.causal_vae.layers import ConceptMechanisms
    >>> mech = ConceptMechanisms(np.array([[0, 1], [0, 0]]), rngs=nnx.Rngs(0))
    >>> pred, a = mech(jnp.ones((5, 2)))
    >>> pred.shape, a.tolist()  # the first layer starts at zero
    ((5, 2), [[0.0, 0.0], [0.0, 0.0]])
    """

    def __init__(self, mask, *, hidden: int = 32, kind: str = "mlp", rngs: nnx.Rngs):
        mask = np.asarray(mask, np.float32)
        n = mask.shape[0]
        if kind not in ("mlp", "linear"):
            raise ValueError(f"kind must be 'mlp' or 'linear', got {kind!r}")
        self.kind = kind
        self.mask = jnp.asarray(mask * (1 - np.eye(n, dtype=np.float32)))
        if kind == "linear":
            self.weights = nnx.Param(jnp.zeros((n, n)))
            return
        k1, k2 = jax.random.split(rngs.params())
        self.w1 = nnx.Param(jnp.zeros((n, n, hidden)))  # [j, i, h]: concept i into f_j
        self.b1 = nnx.Param(jax.random.normal(k1, (n, hidden)) * 0.5)
        self.w2 = nnx.Param(jax.random.normal(k2, (n, hidden)) / np.sqrt(hidden))
        self.b2 = nnx.Param(jnp.zeros((n,)))

    def adjacency(self) -> jax.Array:
        """The weighted adjacency ``A`` ``(n, n)``, ``A[i, j] > 0`` for ``i -> j``."""
        mask = self.mask
        if self.kind == "linear":
            return self.weights.value * mask
        w1 = self.w1.value * mask.T[:, :, None]
        return jnp.sqrt(jnp.sum(w1**2, -1) + 1e-12).T * mask

    def __call__(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        mask = self.mask
        if self.kind == "linear":
            a = self.weights.value * mask
            return z @ a, a
        w1 = self.w1.value * mask.T[:, :, None]
        h = jax.nn.gelu(jnp.einsum("...i,jih->...jh", z, w1) + self.b1.value)
        pred = jnp.einsum("...jh,jh->...j", h, self.w2.value) + self.b2.value
        return pred, self.adjacency()


def solve_concepts(mechanisms, exogenous: jax.Array, n: int) -> jax.Array:
    """The concepts ``z = f(z) + exogenous``: ``n`` fixed-point passes from
    ``z = exogenous``, exact for an acyclic ``A`` (each pass settles one more
    level of the graph, so descendants at every depth are recomputed).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from probcausal.models.causal_vae.layers import ConceptMechanisms, solve_concepts
    >>> chain = jnp.array([[0.0, 2.0, 0.0], [0.0, 0.0, 3.0], [0.0, 0.0, 0.0]])  # a -> b -> c
    >>> mech = ConceptMechanisms(chain != 0, kind="linear", rngs=nnx.Rngs(0))
    >>> mech.weights.value = chain
    >>> solve_concepts(mech, jnp.array([1.0, 0.0, 0.0]), 3).tolist()  # c = 3 (2 a)
    [1.0, 2.0, 6.0]
    """

    z = exogenous
    for _ in range(n):  # a Python loop: mechanisms may be NumPyro-bound modules
        z = mechanisms(z)[0] + exogenous
    return z
