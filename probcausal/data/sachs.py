"""The Sachs et al. (2005) flow-cytometry data, shipped with the package (Apache-2.0,
from the ``cdt`` package; see ``sachs_data/README.md``)."""

from __future__ import annotations

from importlib import resources

import networkx as nx
import pandas as pd

__all__ = ["load_sachs"]


def load_sachs() -> tuple[pd.DataFrame, nx.DiGraph]:
    """The 7,466 pooled single-cell measurements of 11 proteins and the 18-edge
    consensus network as a ``networkx.DiGraph``.

    The consensus contains a cycle (PIP2 -> PIP3 -> plcg -> PIP2), so it is scored
    as a set of directed edges, not as a DAG. The rows pool observational and
    interventional conditions without labels.

    Examples
    --------
    >>> from probcausal.data import load_sachs
    >>> data, consensus = load_sachs()
    >>> data.shape, consensus.number_of_edges()
    ((7466, 11), 18)
    """
    root = resources.files("probcausal.data") / "sachs_data"
    with (root / "sachs.csv").open() as f:
        data = pd.read_csv(f)
    with (root / "consensus_edges.csv").open() as f:
        edges = pd.read_csv(f)
    graph = nx.DiGraph()
    graph.add_nodes_from(data.columns)
    graph.add_edges_from(zip(edges["Cause"], edges["Effect"], strict=True))
    return data, graph
