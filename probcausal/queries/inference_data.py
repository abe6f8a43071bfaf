"""Query results as ``arviz.InferenceData``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from probcausal.handlers.do import unique_labels
from probcausal.queries.counterfactual import CounterfactualResult
from probcausal.queries.interventional import InterventionalResult

if TYPE_CHECKING:  # ArviZ (with SciPy and matplotlib) takes seconds to import: on first use
    import arviz as az

__all__ = ["to_inference_data"]


def _site_dims(name, info, world_dim_name) -> list[str]:
    """Dim names of a site's value: plate names for plate dims, else generic."""
    if info is None:
        return []
    batch_nd = len(info.shape) - info.event_dim
    plates = {dim: plate for plate, dim in info.plates}
    dims = []
    for i in range(len(info.shape)):
        j = i - batch_nd
        if i < batch_nd and j in plates:
            d = plates[j]
            d = f"{d}_plate" if d == world_dim_name else d
        elif i < batch_nd:
            d = f"{name}_dim_{i}"
        else:
            d = f"{name}_event_{i - batch_nd}"
        dims.append(d)
    return dims


def _noise_dims(name, info, shape) -> list[str]:
    """Dims of a site's noise: the site's plate dims, then ``<site>_noise_dim_k``
    for the noise's own trailing dims (Gumbel classes, event dims)."""
    dims = _site_dims(name, info, "world") if info is not None else []
    batch = len(info.batch_shape) if info is not None else 0
    named = dims[:batch] if tuple(shape[:batch]) == tuple(info.batch_shape) else []
    return named + [f"{name}_noise_dim_{k}" for k in range(len(shape) - len(named))]


def to_inference_data(result: Mapping, labels: Sequence[str] | None = None) -> az.InferenceData:
    """Convert a query result into ``arviz.InferenceData``.

    - ``posterior_predictive``: the query values, dims ``(chain, draw, world, ...)``
      for counterfactual results (``world`` labelled ``factual``, ``do(h=2.0)``,
      ...); plate dims are named after their plates;
    - ``posterior``: abducted noise (``<site>_noise``) and inferred latent sites;
    - ``observed_data``: the evidence.

    An interventional result goes to ``posterior_predictive`` with dims ``(chain,
    draw, ...)`` named after the plates (and a ``world`` dim labelled by its
    actions for a list of action dicts); a plain dict with a world axis needs its
    ``labels``.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> import probcausal as pc
    >>> def model():
    ...     x = numpyro.sample("x", dist.Normal(0, 1))
    ...     numpyro.sample("y", dist.Normal(x, 1))
    >>> cf = pc.counterfactual(model, {"y": 1.0}, {"x": 0.0},
    ...                        rng_key=jax.random.PRNGKey(0), num_samples=100)
    >>> idata = pc.to_inference_data(cf)
    >>> idata.posterior_predictive["y"].dims
    ('chain', 'draw', 'world')
    >>> idata.posterior_predictive["world"].values.tolist()
    ['factual', 'do(x=0.0)']
    """
    import arviz as az

    if isinstance(result, CounterfactualResult):
        world = "world" if "world" not in result.info else "world_dim"

        def dims_of(n):
            return _site_dims(n, result.info.get(n), world)

        worlds = result.worlds()
        groups = {
            "posterior_predictive": az.dict_to_dataset(
                {n: np.asarray(v)[None] for n, v in worlds.items()},
                coords={world: unique_labels(result.labels)},
                dims={n: [world] + dims_of(n) for n in worlds},
            )
        }
        # draws of an MCMC engine keep their chains, so ArviZ's R-hat and ESS see them
        chains = getattr(result, "chains", 1)

        def by_chain(v):
            v = np.asarray(v)
            return v.reshape((chains, v.shape[0] // chains) + v.shape[1:])

        post = {f"{n}_noise": by_chain(v) for n, v in result.noise.items()}
        post.update({n: by_chain(v) for n, v in result.latents.items()})
        groups["posterior"] = az.dict_to_dataset(
            post,
            dims={
                **{n: dims_of(n) for n in result.latents},
                **{
                    f"{n}_noise": _noise_dims(n, result.info.get(n), np.shape(v)[1:])
                    for n, v in result.noise.items()
                },
            },
        )
        stats = getattr(result, "diagnostics", {})
        if stats:
            import xarray as xr

            groups["sample_stats"] = xr.Dataset(
                {
                    f"{n}_{k}": (dims_of(n), np.asarray(d[k]))
                    for n, d in stats.items()
                    for k in ("r_hat", "ess")
                    if np.ndim(d[k]) == len(dims_of(n))
                }
            )
        if result.evidence:
            observed = {n: np.asarray(v) for n, v in result.evidence.items()}
            groups["observed_data"] = az.dict_to_dataset(
                observed,
                default_dims=[],
                dims={n: dims_of(n) for n, v in observed.items() if v.ndim == len(dims_of(n))},
            )
        return az.InferenceData(**groups)
    pp = {n: np.asarray(v)[None] for n, v in result.items()}
    coords, dims = None, None
    if isinstance(result, InterventionalResult):
        info = result.info
        lead = [] if result.single else ["world"]
        dims = {n: lead + _site_dims(n, info.get(n), "world") for n in pp}
        dims = {n: d for n, d in dims.items() if len(d) == pp[n].ndim - 2}
        if not result.single:
            coords = {"world": unique_labels(labels or result.labels)}
    elif labels is not None:
        coords = {"world": unique_labels(labels)}
        dims = {n: ["world"] for n in pp}
    return az.InferenceData(posterior_predictive=az.dict_to_dataset(pp, coords=coords, dims=dims))
