"""Random structural causal models written as probcausal causal models, and a
vectorized, jitted simulator of observational and interventional data sets.

A :class:`Domain` says what to draw: the graph prior, the mechanisms (linear or
random-Fourier-feature, GP-like), the noise (Gaussian, Laplace, Cauchy; additive or
heteroscedastic), and how many observational and interventional rows. Every data
set comes from running the NumPyro model of :func:`scm_model` under
:class:`probcausal.do`: an interventional row is the model under a perfect
intervention on one variable, so the simulator's data and
:func:`probcausal.interventional` on the same model agree by construction (and a
test checks it).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.handlers import seed, trace

from probcausal.causal_model import CausalModel
from probcausal.data.graphs import GRAPH_PRIORS, sample_dag
from probcausal.handlers import do

__all__ = [
    "Domain",
    "Datasets",
    "SCM",
    "SCMParams",
    "random_scm",
    "row_sampler",
    "sample_scm_params",
    "scm_model",
    "simulate",
    "standardize",
]

MECHANISMS = ("linear", "rff")
NOISES = {"gaussian": dist.Normal, "laplace": dist.Laplace, "cauchy": dist.Cauchy}


@dataclass(frozen=True)
class Domain:
    """A distribution over data sets: graphs, mechanisms, noise and sample sizes.

    Parameters
    ----------
    num_variables : int
        ``d``, the number of observed variables.
    graph : {"er", "sf", "sf_in"}
        The DAG prior (see :mod:`probcausal.data.graphs`).
    expected_degree : float
        Expected edges per node (in and out).
    mechanism : {"linear", "rff"}
        ``x_j = w_j . pa_j + b_j + noise``, weights ``±U(weight_range)``, bias
        ``U(-bias, bias)``; or a random-Fourier-feature function of the parents (a
        draw from a GP with a squared-exponential kernel, length scale
        ``U(lengthscale_range)``, output scale ``U(weight_range)``) plus ``b_j``.
    noise : {"gaussian", "laplace", "cauchy"}
        The noise family, scale ``U(noise_scale_range)`` per variable.
    heteroscedastic : bool
        Multiply the noise scale by ``softplus(g_j(pa_j)) / softplus(0)``, ``g_j`` a
        random-feature function of the parents.
    num_observations, num_interventions : int
        Observational rows, then interventional rows per data set.
    intervention_fraction : tuple of float
        Per data set, the share of the ``num_interventions`` rows that are actually
        intervened on is drawn from ``U(intervention_fraction)``; the rest are
        observational. ``(1.0, 1.0)`` keeps all of them.
    num_targets : int or None
        Interventional rows are split evenly over this many distinct, random
        targets (default: all variables).
    intervention_range : tuple of float
        A perfect intervention sets ``x_k = mean_k ± U(intervention_range) * std_k``,
        with ``mean_k, std_k`` from the data set's observational rows.
    num_features : int
        Random features per variable (``rff`` mechanisms, heteroscedastic noise).
    """

    num_variables: int = 20
    graph: str = "er"
    expected_degree: float = 2.0
    mechanism: str = "linear"
    noise: str = "gaussian"
    heteroscedastic: bool = False
    num_observations: int = 200
    num_interventions: int = 0
    intervention_fraction: tuple[float, float] = (1.0, 1.0)
    num_targets: int | None = None
    weight_range: tuple[float, float] = (1.0, 3.0)
    bias: float = 3.0
    noise_scale_range: tuple[float, float] = (0.2, 1.0)
    lengthscale_range: tuple[float, float] = (1.0, 2.0)
    intervention_range: tuple[float, float] = (1.0, 3.0)
    num_features: int = 32

    def __post_init__(self):
        if self.graph not in GRAPH_PRIORS:
            raise ValueError(f"unknown graph prior {self.graph!r}; choose one of {GRAPH_PRIORS}")
        if self.mechanism not in MECHANISMS:
            raise ValueError(f"unknown mechanism {self.mechanism!r}; choose one of {MECHANISMS}")
        if self.noise not in NOISES:
            raise ValueError(f"unknown noise {self.noise!r}; choose one of {tuple(NOISES)}")
        if self.num_variables < 2:
            raise ValueError(f"num_variables must be at least 2, got {self.num_variables}")
        if self.num_observations < 2:
            raise ValueError(
                f"num_observations must be at least 2 (they standardize the interventions), "
                f"got {self.num_observations}"
            )
        lo, hi = self.intervention_fraction
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(
                f"intervention_fraction must satisfy 0 <= lo <= hi <= 1, got {(lo, hi)}"
            )
        if self.num_targets is not None and not 1 <= self.num_targets <= self.num_variables:
            raise ValueError(
                f"num_targets must lie in [1, num_variables={self.num_variables}], "
                f"got {self.num_targets}"
            )

    @property
    def num_rows(self) -> int:
        return self.num_observations + self.num_interventions

    @property
    def features(self) -> int:
        return self.num_features if self.mechanism == "rff" or self.heteroscedastic else 0

    def replace(self, **changes) -> Domain:
        """A copy with some fields changed."""
        return replace(self, **changes)


class SCMParams(NamedTuple):
    """The parameters of one random SCM, in the causal order of its variables
    (``adjacency`` strictly upper triangular)."""

    adjacency: jax.Array  # (d, d), adjacency[i, j] = 1: i -> j
    weights: jax.Array  # (d, d) linear weights, zero off the graph (rff: unused)
    output_scale: jax.Array  # (d,) scale of the RFF mechanism (linear: unused)
    bias: jax.Array  # (d,)
    noise_scale: jax.Array  # (d,)
    omega: jax.Array  # (d, F, d) random frequencies per variable, divided by the length scale
    phase: jax.Array  # (d, F)
    coef: jax.Array  # (d, F) RFF output coefficients of the mechanism
    scale_coef: jax.Array  # (d, F) RFF coefficients of the heteroscedastic log-scale


def _signed_uniform(key, shape, low_high):
    k1, k2 = jax.random.split(key)
    magnitude = jax.random.uniform(k1, shape, minval=low_high[0], maxval=low_high[1])
    return jnp.where(jax.random.bernoulli(k2, 0.5, shape), magnitude, -magnitude)


def sample_scm_params(key: jax.Array, domain: Domain) -> SCMParams:
    """Draw one SCM of ``domain`` in causal order. Jittable, vmappable over ``key``."""
    d, f = domain.num_variables, domain.features
    keys = jax.random.split(key, 9)
    adjacency = sample_dag(keys[0], d, domain.graph, domain.expected_degree)
    k_w, k_s = jax.random.split(keys[1])
    weights = adjacency * _signed_uniform(k_w, (d, d), domain.weight_range)
    output_scale = jax.random.uniform(
        k_s, (d,), minval=domain.weight_range[0], maxval=domain.weight_range[1]
    )
    bias = jax.random.uniform(keys[2], (d,), minval=-domain.bias, maxval=domain.bias)
    lo, hi = domain.noise_scale_range
    noise_scale = jax.random.uniform(keys[3], (d,), minval=lo, maxval=hi)
    lengthscale = jax.random.uniform(
        keys[4], (d, 1, 1), minval=domain.lengthscale_range[0], maxval=domain.lengthscale_range[1]
    )
    omega = jax.random.normal(keys[5], (d, f, d)) / lengthscale
    omega = omega * adjacency.T[:, None, :]  # variable j only reads its parents
    phase = jax.random.uniform(keys[6], (d, f), maxval=2 * jnp.pi)
    coef = jax.random.normal(keys[7], (d, f))
    scale_coef = jax.random.normal(keys[8], (d, f))
    return SCMParams(
        adjacency, weights, output_scale, bias, noise_scale, omega, phase, coef, scale_coef
    )


def _features(params: SCMParams, j: int, x: jax.Array, idx) -> jax.Array:
    f = params.phase.shape[-1]
    return jnp.sqrt(2.0 / f) * jnp.cos(params.omega[j][:, idx] @ x + params.phase[j])


def scm_model(
    params: SCMParams,
    domain: Domain,
    *,
    names: Sequence[str] | None = None,
    order: Sequence[int] | None = None,
) -> CausalModel:
    """The one-unit NumPyro model of an SCM: one sample site per variable.

    ``names[j]`` names variable ``j`` of ``params`` (default ``x0 .. x{d-1}``) and
    ``order`` is the causal order the sites are drawn in (default ``0 .. d-1``, right
    for :func:`sample_scm_params`). Every site is ``loc(pa) + scale(pa) * noise``
    with a location-scale noise family, so abduction and counterfactuals work on it
    as on any model.
    """
    d = domain.num_variables
    names = tuple(names) if names is not None else tuple(f"x{j}" for j in range(d))
    order = tuple(order) if order is not None else tuple(range(d))
    noise = NOISES[domain.noise]
    softplus0 = float(np.log(2.0))

    concrete = not any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves(params))
    parents = (
        [np.nonzero(np.asarray(params.adjacency)[:, j])[0] for j in range(d)] if concrete else None
    )

    def inputs(values, j):
        """The parents' values of variable j: exactly the parents when the graph is
        known (so ``pc.graph`` reads the true edges), else all variables, masked by
        the weights (inside a vmapped simulator)."""
        if concrete:
            idx = parents[j]
            x = jnp.stack([values[i] for i in idx]) if len(idx) else jnp.zeros(0)
            return x, idx
        return jnp.stack(values), slice(None)

    def model():
        values = [jnp.float32(0.0)] * d
        for j in order:
            x, idx = inputs(values, j)
            has_parents = x.shape[0] > 0 if concrete else params.adjacency[:, j].sum() > 0
            # The random features feed both the GP-like location and the
            # heteroscedastic scale: compute them once per site.
            phi = _features(params, j, x, idx) if domain.features else None
            if domain.mechanism == "linear":
                loc = params.weights[idx, j] @ x + params.bias[j]
            else:
                f = phi @ params.coef[j]
                loc = jnp.where(has_parents, params.output_scale[j] * f, 0.0) + params.bias[j]
            scale = params.noise_scale[j]
            if domain.heteroscedastic:
                g = phi @ params.scale_coef[j]
                g = jnp.where(has_parents, g, 0.0)
                scale = scale * jax.nn.softplus(g) / softplus0
            values[j] = numpyro.sample(names[j], noise(loc, scale))

    model.__name__ = "random_scm"
    return CausalModel(model)


def row_sampler(params: SCMParams, domain: Domain):
    """The simulator's row function ``(key, target, value) -> (d,)``: one run of
    :func:`scm_model` (sites ``x0 .. x{d-1}`` in causal order) under ``do``, a
    perfect intervention ``x_target = value``, or none when ``target = -1``.
    Vmap it over rows."""
    d = domain.num_variables
    names = tuple(f"x{j}" for j in range(d))
    model = scm_model(params, domain, names=names)

    def row(key, target, value):
        actions = {
            names[j]: functools.partial(
                lambda natural, j: jnp.where(target == j, value, natural), j=j
            )
            for j in range(d)
        }
        tr = trace(seed(do(model, actions), key)).get_trace()
        return jnp.stack([tr[n]["value"] for n in names])

    return row


class Datasets(NamedTuple):
    """A batch of simulated data sets, variables in a random order.

    ``inputs`` ``(B, n, d, 2)``: standardized values and the intervention
    indicator (1 where the row's value was set by an intervention), the input of
    AVICI; ``values`` ``(B, n, d)`` the raw values; ``graphs`` ``(B, d, d)`` the true
    adjacency (``[i, j] = 1``: ``i -> j``); ``targets`` ``(B, n)`` the intervened
    variable of each row, ``-1`` for observational rows.
    """

    inputs: jax.Array
    values: jax.Array
    graphs: jax.Array
    targets: jax.Array


def standardize(values: jax.Array, axis: int = -2) -> jax.Array:
    """Zero mean, unit standard deviation along the rows (constant columns stay 0)."""
    mean = values.mean(axis, keepdims=True)
    std = values.std(axis, keepdims=True)
    return (values - mean) / jnp.where(std > 0, std, 1.0)


def _one_dataset(key: jax.Array, domain: Domain):
    d, n_obs, n_int = domain.num_variables, domain.num_observations, domain.num_interventions
    k_scm, k_obs, k_int, k_tgt, k_val, k_frac, k_perm = jax.random.split(key, 7)
    params = sample_scm_params(k_scm, domain)
    row = jax.vmap(row_sampler(params, domain))
    obs = row(jax.random.split(k_obs, n_obs), jnp.full(n_obs, -1), jnp.zeros(n_obs))
    if n_int:
        num_targets = domain.num_targets or d
        chosen = jax.random.permutation(k_tgt, d)[:num_targets]
        targets = chosen[jnp.arange(n_int) % num_targets]
        lo, hi = domain.intervention_fraction
        used = jnp.round(jax.random.uniform(k_frac, minval=lo, maxval=hi) * n_int)
        targets = jnp.where(jnp.arange(n_int) < used, targets, -1)
        mean, std = obs.mean(0), obs.std(0)
        # Cauchy data: the spread of the middle half is a stable scale
        if domain.noise == "cauchy":
            q1, q3 = jnp.percentile(obs, jnp.array([25.0, 75.0]), axis=0)
            mean, std = jnp.median(obs, 0), (q3 - q1) / 1.349
        shift = _signed_uniform(k_val, (n_int,), domain.intervention_range)
        safe = jnp.clip(targets, 0)
        values = mean[safe] + shift * jnp.maximum(std[safe], 1e-6)
        intervened = row(jax.random.split(k_int, n_int), targets, values)
        rows = jnp.concatenate([obs, intervened])
        all_targets = jnp.concatenate([jnp.full(n_obs, -1), targets])
    else:
        rows, all_targets = obs, jnp.full(n_obs, -1)
    # hide the causal order: relabel variables by a random permutation
    perm = jax.random.permutation(k_perm, d)
    rows = rows[:, perm]
    graph = params.adjacency[perm][:, perm]
    inverse = jnp.argsort(perm)
    all_targets = jnp.where(all_targets >= 0, inverse[jnp.clip(all_targets, 0)], -1)
    indicator = (all_targets[:, None] == jnp.arange(d)[None, :]).astype(rows.dtype)
    inputs = jnp.stack([standardize(rows, axis=0), indicator], axis=-1)
    return Datasets(inputs, rows, graph, all_targets)


@functools.lru_cache(maxsize=64)
def _compiled(domain: Domain, num_datasets: int):
    def run(key):
        return jax.vmap(lambda k: _one_dataset(k, domain))(jax.random.split(key, num_datasets))

    return jax.jit(run)


def simulate(key: jax.Array, domain: Domain, num_datasets: int) -> Datasets:
    """Draw ``num_datasets`` data sets of ``domain``: a fresh random SCM each.

    One jitted, vmapped program per ``(domain, num_datasets)``; inside a jitted
    function (a training step) it is traced inline.

    Examples
    --------
    >>> import jax
    >>> from probcausal.data import Domain, simulate
    >>> batch = simulate(jax.random.key(0), Domain(num_variables=5, num_observations=30,
    ...                                            num_interventions=10), num_datasets=4)
    >>> batch.inputs.shape, batch.graphs.shape
    ((4, 40, 5, 2), (4, 5, 5))
    >>> int(batch.inputs[0, :30, :, 1].sum()), int(batch.inputs[0, 30:, :, 1].sum())
    (0, 10)
    """
    if isinstance(key, jax.core.Tracer):
        return jax.vmap(lambda k: _one_dataset(k, domain))(jax.random.split(key, num_datasets))
    return _compiled(domain, int(num_datasets))(key)


@dataclass
class SCM:
    """One random SCM with named variables: its ``graph`` (a ``networkx.DiGraph``),
    its one-unit causal ``model`` (query it with :func:`probcausal.interventional`
    and friends) and :meth:`sample` for data."""

    params: SCMParams
    domain: Domain
    names: tuple[str, ...]
    order: tuple[int, ...]
    model: CausalModel
    graph: nx.DiGraph

    def sample(
        self, rng_key: jax.Array, num_samples: int, interventions: dict | None = None
    ) -> dict[str, np.ndarray]:
        """``num_samples`` rows of the model, under ``do(interventions)`` if given;
        returns site -> ``(num_samples,)``."""
        model = do(self.model, interventions) if interventions else self.model

        def one(key):
            tr = trace(seed(model, key)).get_trace()
            return {n: tr[n]["value"] for n in self.names}

        draws = jax.jit(jax.vmap(one))(jax.random.split(rng_key, num_samples))
        return {n: np.asarray(v) for n, v in draws.items()}

    def adjacency(self) -> np.ndarray:
        """The ``(d, d)`` adjacency in the order of ``names``."""
        return nx.to_numpy_array(self.graph, nodelist=list(self.names))


def random_scm(rng_key: jax.Array, domain: Domain, names: Sequence[str] | None = None) -> SCM:
    """One random SCM of ``domain`` with its variables in a random order, named
    ``names`` (default ``x0 .. x{d-1}``).

    Examples
    --------
    >>> import jax
    >>> import probcausal as pc
    >>> scm = pc.data.random_scm(jax.random.key(1), pc.data.Domain(num_variables=4))
    >>> sorted(scm.graph.nodes)
    ['x0', 'x1', 'x2', 'x3']
    >>> s = pc.interventional(scm.model, {"x0": 1.0}, rng_key=jax.random.key(2), num_samples=5)
    >>> s["x0"].tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0]
    """
    d = domain.num_variables
    names = tuple(names) if names is not None else tuple(f"x{j}" for j in range(d))
    if len(names) != d or len(set(names)) != d:
        raise ValueError(f"names must be {d} distinct strings, got {names!r}")
    k_scm, k_perm = jax.random.split(rng_key)
    params = jax.tree.map(np.asarray, sample_scm_params(k_scm, domain))
    perm = np.asarray(jax.random.permutation(k_perm, d))
    # variable j of params (causal position j) gets the name names[perm[j]]
    causal_names = tuple(names[p] for p in perm)
    model = scm_model(params, domain, names=causal_names)
    graph = nx.DiGraph()
    graph.add_nodes_from(names)
    rows, cols = np.nonzero(params.adjacency)
    graph.add_edges_from(
        (causal_names[i], causal_names[j]) for i, j in zip(rows, cols, strict=True)
    )
    order = tuple(int(p) for p in perm)
    return SCM(params, domain, names, order, model, graph)
