"""The causal graph of a NumPyro model, from data flow between its sites."""

from __future__ import annotations

from collections.abc import Callable

import jax
import networkx as nx
from numpyro.handlers import seed, trace
from numpyro.infer.inspect import get_model_relations

from probcausal.handlers._stack import isolated
from probcausal.mechanisms.base import _leaf

__all__ = ["graph"]


def abstract_sites(model: Callable, args=(), kwargs=None, describe=None) -> dict[str, dict]:
    """Site name -> what :func:`graph` needs of each sample site (``intervened``,
    ``observed``, ``fn_type``, ``shape``, ``plates``), plus ``describe(site)``'s
    entries, from one shape-only run of the model (``jax.eval_shape``): no array is
    computed and nothing is compiled, so the cost does not grow with plate sizes."""
    kwargs = kwargs or {}
    collected: dict[str, dict] = {}

    def run():
        tr = trace(seed(model, 0)).get_trace(*args, **kwargs)
        for name, site in tr.items():
            if site["type"] != "sample" or site["infer"].get("is_auxiliary"):
                continue
            collected[name] = dict(
                intervened=bool(site["infer"].get("intervened")),
                observed=bool(site["is_observed"]),
                fn_type=type(_leaf(site["fn"])),  # the family under plates, to_event
                shape=tuple(getattr(site["value"], "shape", ())),
                plates=tuple(f.name for f in site["cond_indep_stack"]),
                **(describe(site) if describe is not None else {}),
            )
        return 0

    with isolated():
        jax.eval_shape(run)
    return collected


def graph(model: Callable, *args, **kwargs) -> nx.DiGraph:
    """The causal graph of ``model(*args, **kwargs)`` as a ``networkx.DiGraph``.

    One node per sample site; an edge ``u -> v`` when ``v``'s distribution
    parameters depend on ``u``'s value (traced through deterministic code and
    ``numpyro.deterministic`` sites). Node attributes: ``observed`` (evidence given
    in the model by ``obs=`` or ``condition``), ``latent`` (not observed and not
    intervened), ``intervened``, ``distribution`` (class name), ``shape`` (the value
    shape) and ``plates`` (names of enclosing plates). An intervened site has no
    incoming edges.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> import probcausal as pc
    >>> def model():
    ...     x = numpyro.sample("x", dist.Normal(0, 1))
    ...     h = numpyro.sample("h", dist.Normal(0.5 * x, 1))
    ...     numpyro.sample("y", dist.Normal(0.7 * x + 0.4 * h, 1))
    >>> sorted(pc.graph(model).edges())
    [('h', 'y'), ('x', 'h'), ('x', 'y')]
    >>> sorted(pc.graph(pc.do(model, {"h": 2.0})).edges())  # x -> h is cut
    [('h', 'y'), ('x', 'y')]
    """
    return graph_of_sites(model, args, kwargs, abstract_sites(model, args, kwargs))


def graph_of_sites(model: Callable, args, kwargs, sites: dict[str, dict]) -> nx.DiGraph:
    """:func:`graph` from sites already read by :func:`abstract_sites` (callers that
    need more of each site read the model once)."""
    with isolated():
        rel = get_model_relations(model, model_args=args, model_kwargs=kwargs)
    deps = rel["sample_sample"]

    def parents(name, seen=()):
        out = set()
        for p in deps.get(name, ()):
            if p in sites:
                out.add(p)
            elif p not in seen:  # a deterministic site: look through it
                out |= parents(p, seen + (name,))
        return out

    g = nx.DiGraph()
    for name, site in sites.items():
        intervened = site["intervened"]
        observed = site["observed"] and not intervened
        g.add_node(
            name,
            observed=observed,
            latent=not observed and not intervened,
            intervened=intervened,
            distribution=rel["sample_dist"].get(name, site["fn_type"].__name__),
            shape=site["shape"],
            plates=site["plates"],
        )
    for name in sites:
        if not g.nodes[name]["intervened"]:
            for p in sorted(parents(name)):
                g.add_edge(p, name)
    return g
