"""``pc.discover``: causal structure from data in one forward pass of a trained
AVICI network."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pandas as pd
from flax import nnx

from probcausal.data.scm import standardize
from probcausal.errors import DiscoveryDataError
from probcausal.models.avici.io import PRETRAINED, load_avici, pretrained
from probcausal.models.avici.model import AVICI, edge_probabilities

__all__ = ["Discovery", "acyclic_projection", "discover", "predict"]


@dataclass
class Discovery:
    """The result of :func:`discover`.

    Attributes
    ----------
    probabilities : pandas.DataFrame
        Edge probabilities, row = cause, column = effect.
    graph : networkx.DiGraph
        The edges with probability above ``threshold`` (may contain cycles).
    dag : networkx.DiGraph
        An acyclic projection of ``graph``: its edges taken by decreasing
        probability, each kept unless it closes a cycle.
    threshold : float
    """

    probabilities: pd.DataFrame
    graph: nx.DiGraph
    dag: nx.DiGraph
    threshold: float

    @property
    def names(self) -> list[str]:
        return list(self.probabilities.columns)


def acyclic_projection(probabilities: pd.DataFrame, threshold: float = 0.5) -> nx.DiGraph:
    """Greedy maximum-probability DAG: edges above ``threshold`` by decreasing
    probability, each added unless it would close a cycle.

    Examples
    --------
    >>> import pandas as pd
    >>> from probcausal.models.avici import acyclic_projection
    >>> p = pd.DataFrame([[0, .9, .2], [.6, 0, .8], [.7, .1, 0]], index=list("abc"),
    ...                  columns=list("abc"))
    >>> sorted(acyclic_projection(p).edges)
    [('a', 'b'), ('b', 'c')]
    """
    names = list(probabilities.columns)
    dag = nx.DiGraph()
    dag.add_nodes_from(names)
    values = probabilities.to_numpy()
    rows, cols = np.nonzero(values > threshold)
    for k in np.argsort(-values[rows, cols], kind="stable"):
        u, v = names[rows[k]], names[cols[k]]
        if not nx.has_path(dag, v, u):
            dag.add_edge(u, v)
    return dag


_MIN_ROWS = 10


def _as_array(data, names):
    if isinstance(data, pd.DataFrame):
        return data.to_numpy(np.float32), list(map(str, data.columns))
    if isinstance(data, Mapping):
        keys = list(data)
        columns = [np.asarray(data[k], np.float32).reshape(-1) for k in keys]
        lengths = {len(c) for c in columns}
        if len(lengths) > 1:
            raise DiscoveryDataError(
                "the data columns differ in length: "
                f"{dict(zip(keys, map(len, columns), strict=True))}"
            )
        return np.stack(columns, axis=1), list(map(str, keys))
    array = np.asarray(data, np.float32)
    if array.ndim != 2:
        raise DiscoveryDataError(
            f"data must be a DataFrame, a dict of columns or an (n, d) array, got shape "
            f"{array.shape}"
        )
    if names is None:
        names = [f"x{j}" for j in range(array.shape[1])]
    return array, list(names)


def _indicator(interventions, n: int, names: list[str]) -> np.ndarray:
    d = len(names)
    if interventions is None:
        return np.zeros((n, d), np.float32)
    if isinstance(interventions, pd.DataFrame):
        interventions = interventions[names].to_numpy()
    array = np.asarray(interventions)
    if array.ndim == 2:
        if array.shape != (n, d):
            raise DiscoveryDataError(
                f"an intervention mask must have the data's shape {(n, d)}, got {array.shape}"
            )
        return array.astype(np.float32)
    if array.shape != (n,):
        raise DiscoveryDataError(
            "interventions must be an (n, d) mask or one target per row (a variable name, "
            f"an index, or None / -1 for an observational row); got shape {array.shape} "
            f"for {n} rows"
        )
    mask = np.zeros((n, d), np.float32)
    for r, target in enumerate(array.tolist()):
        if target is None or (isinstance(target, int | np.integer) and target < 0):
            continue
        if isinstance(target, str):
            if target not in names:
                raise DiscoveryDataError(f"row {r} names the target {target!r}, not one of {names}")
            target = names.index(target)
        mask[r, int(target)] = 1.0
    return mask


@functools.lru_cache(maxsize=8)
def _resolve_pretrained(name: str) -> AVICI:
    return pretrained(name)[0]


@functools.lru_cache(maxsize=16)
def _forward(graphdef):
    @jax.jit
    def run(state, inputs):
        return jax.vmap(lambda x: edge_probabilities(nnx.merge(graphdef, state)(x)))(inputs)

    return run


def predict(net: AVICI, inputs) -> jax.Array:
    """Edge probabilities ``(B, d, d)`` of a batch of AVICI inputs ``(B, n, d, 2)``,
    one compiled program per network structure and input shape."""
    graphdef, state = nnx.split(net)
    return _forward(graphdef)(state, jnp.asarray(inputs))


def discover(
    data,
    interventions=None,
    model: str | AVICI = "linear",
    *,
    names: Sequence[str] | None = None,
    threshold: float = 0.5,
    max_samples: int = 1000,
    rng_key: jax.Array | None = None,
) -> Discovery:
    """Edge probabilities of the causal graph behind ``data``, in one forward pass.

    Parameters
    ----------
    data : pandas.DataFrame, dict of columns or (n, d) array
        Observations, optionally with interventional rows. Each column is
        standardized.
    interventions : optional
        Which values were set by an intervention: an ``(n, d)`` 0/1 mask, or one
        target per row (a name, an index, or ``None``/``-1`` for observational rows).
    model : {"linear", "nonlinear"}, AVICI or path
        A shipped pretrained network, a trained :class:`AVICI`, or a ``.npz`` written
        by :func:`~probcausal.models.avici.save_avici`.
    names : sequence of str, optional
        Variable names for an array (default ``x0, x1, ...``).
    threshold : float
        Edges with a higher probability make up ``graph`` and ``dag``.
    max_samples : int
        Attention over samples costs ``n^2`` memory: a larger data set is split
        into random, nearly equal parts of at most this many rows, and their edge
        probabilities are averaged.
    rng_key : jax.Array, optional
        For that split (default key 0).

    Examples
    --------
    >>> import jax
    >>> import probcausal as pc
    >>> scm = pc.data.random_scm(jax.random.key(3), pc.data.Domain(num_variables=5))
    >>> data = scm.sample(jax.random.key(4), 300)
    >>> found = pc.discover(data, model="linear")
    >>> found.probabilities.shape, found.dag.number_of_nodes()
    ((5, 5), 5)
    """
    values, names = _as_array(data, names)
    n, d = values.shape
    if d < 2 or n < _MIN_ROWS:
        raise DiscoveryDataError(
            f"discover needs at least {_MIN_ROWS} rows and 2 variables, got data of shape "
            f"{(n, d)}: with fewer rows no dependence between variables can be told from "
            "chance (the shipped networks were trained on 200 to 1,000 rows)"
        )
    if not np.isfinite(values).all():
        bad = [names[j] for j in np.nonzero(~np.isfinite(values).all(0))[0]]
        raise DiscoveryDataError(
            f"the data hold NaN or infinite values in column(s) {bad}; drop or impute them"
        )
    mask = _indicator(interventions, n, names)
    if isinstance(model, str):
        if model not in PRETRAINED and not os.path.exists(model):
            import difflib

            close = difflib.get_close_matches(model, list(PRETRAINED), 1)
            raise ValueError(
                f"model {model!r} is neither a shipped network nor a file; the shipped "
                f"networks are {list(PRETRAINED)}"
                + (f" (did you mean {close[0]!r}?)" if close else "")
                + ", or pass the path of a network saved by pretrain."
            )
        net = _resolve_pretrained(model) if model in PRETRAINED else load_avici(model)[0]
    elif isinstance(model, AVICI):
        net = model
    else:
        raise TypeError(
            f"model must be 'linear', 'nonlinear', a path or an AVICI network, got {model!r}"
        )
    parts = math.ceil(n / max_samples)
    rng_key = jax.random.key(0) if rng_key is None else rng_key
    order = np.asarray(jax.random.permutation(rng_key, n)) if parts > 1 else np.arange(n)
    size = n // parts  # equal parts; at most parts - 1 rows are left out
    chunks = order[: size * parts].reshape(parts, size)
    x = np.asarray(standardize(jnp.asarray(values), axis=0))
    inputs = np.stack([x[chunks], mask[chunks]], axis=-1)  # (parts, size, d, 2)
    probs = np.asarray(predict(net, inputs)).mean(0)
    table = pd.DataFrame(probs, index=names, columns=names)
    graph = nx.DiGraph()
    graph.add_nodes_from(names)
    rows, cols = np.nonzero(probs > threshold)
    graph.add_edges_from((names[i], names[j]) for i, j in zip(rows, cols, strict=True))
    return Discovery(table, graph, acyclic_projection(table, threshold), threshold)
