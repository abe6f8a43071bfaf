"""Facts about a model's sites, read from one abstract (shape-only) run: family,
shape, support, plates, parents; and the latent ancestors of the evidence."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import jax
import numpy as np

from probcausal import mechanisms
from probcausal.compilation import CACHE_SIZE, gc_paused, model_state, split_static
from probcausal.errors import MissingMechanismError
from probcausal.graph import abstract_sites, graph_of_sites

__all__ = ["ModelSites", "SiteInfo", "info_for", "latent_ancestors", "model_info"]


@dataclass(frozen=True)
class SiteInfo:
    """Static facts about one sample site, read from an abstract trace."""

    name: str
    shape: tuple[int, ...]
    batch_shape: tuple[int, ...]
    event_dim: int
    family: type
    observed: bool
    discrete: bool
    support: tuple | None  # finite support values, when enumerable
    plate_dims: tuple[int, ...]
    plates: tuple[tuple[str, int], ...]  # (plate name, dim)
    exact: bool  # abduction is a deterministic inversion
    parents: frozenset = field(default_factory=frozenset)
    constraint: str = ""  # class name of the support constraint, e.g. "_Boolean"
    intervened: bool = False  # set by a `do` inside the model


class ModelSites(dict):
    """Site name -> :class:`SiteInfo` for the sample sites of a model, with the
    ``numpyro.deterministic`` sites in ``deterministic`` (name -> shape, parents)."""

    deterministic: dict


def model_info(model: Callable, args=(), kwargs=None) -> dict[str, SiteInfo]:
    """Site name -> :class:`SiteInfo`, from one abstract (shape-only) run of ``model``."""
    kwargs = kwargs or {}

    def describe(site) -> dict:
        fn = site["fn"]
        return dict(
            batch_shape=tuple(fn.batch_shape),
            event_dim=fn.event_dim,
            discrete=bool(fn.is_discrete),
            support=_finite_support(fn),
            plate_dims=tuple(f.dim for f in site["cond_indep_stack"]),
            plate_name_dims=tuple((f.name, f.dim) for f in site["cond_indep_stack"]),
            exact=_exact(fn),
            constraint=type(fn.support).__name__ if fn.support is not None else "",
        )

    deterministic: dict = {}
    sites = abstract_sites(model, args, kwargs, describe, deterministic)
    g = graph_of_sites(sites)
    out = ModelSites(
        {
            name: SiteInfo(
                name=name,
                shape=s["shape"],
                batch_shape=s["batch_shape"],
                event_dim=s["event_dim"],
                family=s["fn_type"],
                observed=s["observed"],
                discrete=s["discrete"],
                support=s["support"],
                plate_dims=s["plate_dims"],
                plates=s["plate_name_dims"],
                exact=s["exact"],
                parents=frozenset(g.predecessors(name)) if name in g else frozenset(),
                constraint=s["constraint"],
            )
            for name, s in sites.items()
        }
    )
    out.deterministic = {
        n: {"shape": d["shape"], "parents": frozenset(d["parents"]) & sites.keys()}
        for n, d in deterministic.items()
    }
    return out


def _finite_support(fn) -> tuple | None:
    """The values of an enumerable family's support; None when it has none or it
    depends on traced parameters. Read off the support constraint where its bounds
    are Python integers (no array op: each would compile a program of its own)."""
    if not getattr(fn, "has_enumerate_support", False):
        return None
    c = fn.support
    if type(c).__name__ == "_Boolean":
        return (0, 1)
    lo, hi = getattr(c, "lower_bound", None), getattr(c, "upper_bound", None)
    if type(c).__name__ == "_IntegerInterval" and type(lo) is int and type(hi) is int:
        return tuple(range(lo, hi + 1))
    try:
        with jax.ensure_compile_time_eval():
            values = np.unique(np.asarray(fn.enumerate_support(expand=False)))
        return tuple(values.tolist())
    except (jax.errors.ConcretizationTypeError, TypeError, NotImplementedError):
        # parameter-dependent support, or an event of several values (to_event)
        return None


def _exact(fn) -> bool:
    try:
        return mechanisms.is_exact(fn)
    except MissingMechanismError:  # reported with the site name when the worlds run
        return False


def latent_ancestors(info: Mapping[str, SiteInfo], evidence) -> list[str]:
    """Latent sites (not observed, not in evidence) that are ancestors of evidence."""
    observed = {n for n, s in info.items() if s.observed} | set(evidence)
    ancestors: set[str] = set()
    todo = list(observed)
    while todo:
        for p in info[todo.pop()].parents:
            if p not in ancestors:
                ancestors.add(p)
                todo.append(p)
    return [n for n in info if n in ancestors and n not in observed]


_INFO: OrderedDict = OrderedDict()


def info_for(model, args, kwargs, split=None, state=None) -> dict[str, SiteInfo]:
    """Cached :func:`~probcausal.infer.model_info` of ``model(*args, **kwargs)``
    (``split``: the caller's ``split_static`` of ``(args, kwargs)``, if it has one)."""
    if split is None:
        split = split_static((tuple(args), dict(kwargs)), numbers_dynamic=False)
    dyn, static_key, _ = split
    key = (
        model_state(model) if state is None else state,
        static_key,
        tuple((d.shape, d.dtype) for d in dyn),
    )
    try:
        if key in _INFO:
            return _INFO[key]
    except TypeError:
        return model_info(model, args, kwargs)
    with gc_paused():
        info = model_info(model, args, kwargs)
    _INFO[key] = info
    if len(_INFO) > CACHE_SIZE:
        _INFO.popitem(last=False)
    return info
