"""Discrete Bayesian networks in the Bayesian Interchange Format (BIF) as causal
models.

The reader is a small parser of its own: BIF's ``variable`` and ``probability``
blocks are a regular grammar, and a dependency such as pgmpy (with its PyTorch
and pyparsing stack) would be heavier than the format. Each network becomes a
:class:`~probcausal.CausalModel` whose sites are Categoricals over the CPTs, in
topological order, with class indices for states (``net.states[name]`` names
them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jax.numpy as jnp
import networkx as nx
import numpy as np
import numpyro
import numpyro.distributions as dist

from probcausal.causal_model import CausalModel

__all__ = ["BayesianNetwork", "bayesian_network", "read_bif", "NETWORKS"]

NETWORKS = ("asia", "sachs", "child", "alarm")

_VARIABLE = re.compile(
    r"variable\s+([^\s{]+)\s*\{[^}]*?type\s+discrete\s*\[\s*(\d+)\s*\]\s*\{([^}]*)\}", re.S
)
_PROBABILITY = re.compile(r"probability\s*\(\s*([^|)]+?)\s*(?:\|\s*([^)]*))?\)\s*\{([^}]*)\}", re.S)


@dataclass
class BayesianNetwork:
    """A discrete Bayesian network: states, parents and CPTs per variable.

    ``cpts[v]`` has shape ``(*parent cardinalities, cardinality of v)`` in the order
    of ``parents[v]``; ``order`` is topological.
    """

    states: dict[str, tuple[str, ...]]
    parents: dict[str, tuple[str, ...]]
    cpts: dict[str, np.ndarray]
    order: tuple[str, ...]

    def graph(self) -> nx.DiGraph:
        g = nx.DiGraph()
        g.add_nodes_from(self.order)
        g.add_edges_from((p, v) for v in self.order for p in self.parents[v])
        return g

    def index(self, variable: str, state: str) -> int:
        """The class index of ``state`` of ``variable``."""
        return self.states[variable].index(state)

    def causal_model(self):
        """The network as a :class:`~probcausal.CausalModel` of one unit: each
        variable a Categorical site over its CPT row given its parents' classes."""
        tables = {v: jnp.asarray(self.cpts[v], jnp.float32) for v in self.order}
        parents, order = self.parents, self.order

        def model():
            values = {}
            for v in order:
                row = tables[v][tuple(values[p] for p in parents[v])]
                values[v] = numpyro.sample(v, dist.Categorical(probs=row))
            return values

        model.__name__ = model.__qualname__ = "bayesian_network"
        return CausalModel(model)


def _names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def read_bif(source: str | Path) -> BayesianNetwork:
    """Read a BIF file (or BIF text) into a :class:`BayesianNetwork`.

    Examples
    --------
    >>> net = read_bif('''
    ... variable rain { type discrete [ 2 ] { no, yes }; }
    ... variable wet { type discrete [ 2 ] { no, yes }; }
    ... probability ( rain ) { table 0.8, 0.2; }
    ... probability ( wet | rain ) { (no) 0.9, 0.1; (yes) 0.2, 0.8; }
    ... ''')
    >>> net.order, net.cpts["wet"].tolist()
    (('rain', 'wet'), [[0.9, 0.1], [0.2, 0.8]])
    """
    text = str(source)
    if "\n" not in text and Path(text).exists():
        text = Path(text).read_text()
    text = re.sub(r"//[^\n]*", "", text)
    states = {}
    for name, card, values in _VARIABLE.findall(text):
        names = _names(values)
        if len(names) != int(card):
            raise ValueError(f"BIF variable {name!r} declares {card} states but names {names}")
        states[name] = names
    if not states:
        raise ValueError("no discrete `variable` block found: not a BIF network")
    parents, cpts = {}, {}
    for child, given, body in _PROBABILITY.findall(text):
        child = child.strip()
        if child not in states:
            raise ValueError(f"BIF probability block for undeclared variable {child!r}")
        pa = _names(given or "")
        parents[child] = pa
        shape = tuple(len(states[p]) for p in pa) + (len(states[child]),)
        table = np.full(shape, np.nan)
        if re.search(r"\btable\b", body):
            numbers = [float(x) for x in re.findall(r"[-+0-9.eE]+", body.split("table", 1)[1])]
            # BIF lists the table with the child's states outermost
            table = np.asarray(numbers).reshape((shape[-1],) + shape[:-1])
            table = np.moveaxis(table, 0, -1)
        else:
            for key, numbers in re.findall(r"\(([^)]*)\)\s*([^;]*);", body):
                idx = tuple(states[p].index(s) for p, s in zip(pa, _names(key), strict=True))
                table[idx] = [float(x) for x in numbers.replace(",", " ").split()]
        if np.isnan(table).any():
            raise ValueError(f"BIF CPT of {child!r} leaves parent configurations undefined")
        if not np.allclose(table.sum(-1), 1.0, atol=1e-3):
            raise ValueError(f"BIF CPT rows of {child!r} do not sum to 1")
        cpts[child] = table / table.sum(-1, keepdims=True)
    missing = sorted(set(states) - set(cpts))
    if missing:
        raise ValueError(f"BIF variables {missing} have no probability block")
    g = nx.DiGraph()
    g.add_nodes_from(states)
    g.add_edges_from((p, v) for v, pa in parents.items() for p in pa)
    order = tuple(nx.lexicographical_topological_sort(g, key=list(states).index))
    return BayesianNetwork(states, parents, cpts, order)


def bayesian_network(name: str) -> BayesianNetwork:
    """A shipped network: ``"asia"``, ``"sachs"``, ``"child"`` or ``"alarm"`` (see
    ``probcausal/data/bn/README.md`` for their sources).

    >>> net = bayesian_network("asia")
    >>> len(net.order), net.parents["either"]
    (8, ('lung', 'tub'))
    """
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; the shipped networks are {list(NETWORKS)}")
    return read_bif(resources.files("probcausal.data").joinpath(f"bn/{name}.bif").read_text())
