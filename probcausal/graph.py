"""The causal graph of a NumPyro model, from data flow between its sites."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import networkx as nx
from jax import lax
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir
from numpyro.handlers import seed, trace
from numpyro.ops.provenance import track_deps_jaxpr, track_deps_rules
from numpyro.primitives import Messenger

from probcausal.handlers.scan import reach_into_scan
from probcausal.handlers.stack import isolated
from probcausal.mechanisms import unwrapped

__all__ = ["as_names", "graph"]

# Identity on a sample site's value that marks where the value enters the program.
# Provenance tracking through the jaxpr (NumPyro's ``track_deps_jaxpr``, with a
# rule registered for this primitive) then starts afresh at each site: what a
# distribution's log-density depends on, beyond the site itself, are its parents.
_site_value = Primitive("probcausal_site_value")
_site_value.def_impl(lambda x, *, name: x)
_site_value.def_abstract_eval(lambda x, *, name: x)
track_deps_rules[_site_value] = lambda eqn, _: [frozenset({eqn.params["name"]})]
# identity under outer transforms too (a query traced inside ``jit``, ``vmap``, ``grad``)
batching.primitive_batchers[_site_value] = lambda args, dims, name: (
    _site_value.bind(args[0], name=name),
    dims[0],
)
ad.deflinear2(_site_value, lambda ct, _, name: [ct])
mlir.register_lowering(_site_value, mlir.lower_fun(lambda x, name: x, multiple_results=False))


def _scan_deps(eqn, provenance_inputs):
    """Provenance through ``lax.scan``: the body's, with the carry's provenance
    grown to a fixed point (NumPyro's default rule unites the loop's inputs and
    misses the sites marked inside the body)."""
    jaxpr = eqn.params["jaxpr"].jaxpr
    n_consts, n_carry = eqn.params["num_consts"], eqn.params["num_carry"]
    consts = provenance_inputs[:n_consts]
    carry = provenance_inputs[n_consts : n_consts + n_carry]
    xs = provenance_inputs[n_consts + n_carry :]
    while True:
        out = track_deps_jaxpr(jaxpr, consts + carry + xs)
        grown = [c | o for c, o in zip(carry, out[:n_carry], strict=True)]
        if grown == carry:
            return out
        carry = grown


track_deps_rules[lax.scan_p] = _scan_deps


class _mark_sites(Messenger):
    """Pass every sample site's value through :data:`_site_value` (inside scan
    bodies too)."""

    def process_message(self, msg):
        reach_into_scan(self, msg)

    def step(self, i, length):
        return _mark_sites()

    def postprocess_message(self, msg):
        if msg["type"] == "sample" and not msg["infer"].get("is_auxiliary"):
            msg["value"] = _site_value.bind(jnp.asarray(msg["value"]), name=msg["name"])


def _dependence(site):
    """What ``site``'s provenance is read from: its log-density at its value (as
    NumPyro's ``get_model_relations`` reads it), else its distribution's leaves."""
    try:
        return site["fn"].log_prob(site["value"])
    except NotImplementedError:
        return jax.tree_util.tree_leaves(site["fn"])


def abstract_sites(
    model: Callable, args=(), kwargs=None, describe=None, deterministic: dict | None = None
) -> dict[str, dict]:
    """Site name -> what :func:`graph` needs of each sample site (``intervened``,
    ``observed``, ``fn_type``, ``shape``, ``plates``, ``parents``), plus
    ``describe(site)``'s entries, from one shape-only trace of the model
    (``jax.make_jaxpr``): no array is computed and nothing is compiled, so the cost
    does not grow with plate sizes.

    ``parents`` are the sample sites whose values the site's distribution depends
    on, through deterministic code and ``numpyro.deterministic`` sites. Given a
    dict ``deterministic``, it is filled with the ``numpyro.deterministic`` sites:
    name -> ``{"shape", "parents"}``.
    """
    kwargs = kwargs or {}
    collected: dict[str, dict] = {}

    def run():
        with _mark_sites():  # outermost: its postprocessing runs before the trace's copy
            tr = trace(seed(model, 0)).get_trace(*args, **kwargs)
        dependence = {}
        for name, site in tr.items():
            if site["type"] == "deterministic" and deterministic is not None:
                deterministic[name] = dict(shape=tuple(jnp.shape(site["value"])))
                dependence[name] = site["value"]
                continue
            if site["type"] != "sample" or site["infer"].get("is_auxiliary"):
                continue
            collected[name] = dict(
                intervened=bool(site["infer"].get("intervened")),
                observed=bool(site["is_observed"]),
                fn_type=type(unwrapped(site["fn"])),  # the family under plates, to_event
                shape=tuple(getattr(site["value"], "shape", ())),
                plates=tuple(f.name for f in site["cond_indep_stack"]),
                **(describe(site) if describe is not None else {}),
            )
            dependence[name] = _dependence(site)
        return dependence

    with isolated():
        closed, shapes = jax.make_jaxpr(run, return_shape=True)()
    provenance = jax.tree_util.tree_unflatten(
        jax.tree_util.tree_structure(shapes), track_deps_jaxpr(closed.jaxpr, [])
    )
    for name, site in [*collected.items(), *(deterministic or {}).items()]:
        deps = frozenset().union(*jax.tree_util.tree_leaves(provenance[name]))
        site["parents"] = deps - {name}
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
    return graph_of_sites(abstract_sites(model, args, kwargs))


def graph_of_sites(sites: dict[str, dict]) -> nx.DiGraph:
    """:func:`graph` from sites already read by :func:`abstract_sites` (callers that
    need more of each site read the model once)."""
    g = nx.DiGraph()
    for name, site in sites.items():
        intervened = site["intervened"]
        observed = site["observed"] and not intervened
        g.add_node(
            name,
            observed=observed,
            latent=not observed and not intervened,
            intervened=intervened,
            distribution=site["fn_type"].__name__,
            shape=site["shape"],
            plates=site["plates"],
        )
    for name, site in sites.items():
        if not site["intervened"]:
            for p in sorted(site["parents"] & sites.keys()):
                g.add_edge(p, name)
    return g


def as_names(x) -> list:
    """One node name, or an iterable of them, as a list of names."""
    return [x] if isinstance(x, str) else list(x)
