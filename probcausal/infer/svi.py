"""Stochastic variational inference with the shared training loop: neural
mechanisms (``numpyro.contrib.module``), amortized guides, subsampled plates."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpyro.distributions as dist
import numpyro.infer
from jax.sharding import Mesh
from numpyro.handlers import seed, trace

from probcausal.compilation import split_static
from probcausal.handlers.stack import isolated
from probcausal.infer.training import FitResult, data_mesh, fit, replicate, shard_batch

__all__ = ["fit_svi"]


def _place(tree, mesh):
    """Shard arrays whose leading axis splits evenly over the mesh; replicate the rest."""
    if mesh is None:
        return tree
    n = mesh.shape["data"]

    def put(a):
        if hasattr(a, "shape") and a.ndim >= 1 and a.shape[0] % n == 0:
            return shard_batch(a, mesh)
        return replicate(a, mesh) if hasattr(a, "shape") else a

    return jax.tree.map(put, tree)


def fit_svi(
    model: Callable,
    guide: Callable,
    optimizer,
    num_steps: int,
    *,
    rng_key: jax.Array,
    loss: numpyro.infer.elbo.ELBO | None = None,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
    init_params: Mapping[str, Any] | None = None,
    mesh: Mesh | str | None = None,
    **fit_kwargs,
) -> FitResult:
    """Fit ``model`` and ``guide`` by SVI with an optax optimizer.

    Neural sites (:func:`probcausal.nn.sample`, ``numpyro.contrib.module``) are
    ``param`` sites like any other; a plate with ``subsample_size`` gives
    minibatches. The loop is :func:`~probcausal.infer.fit`: progress bar,
    checkpoints and ``resume``, NaN detection; with ``mesh`` the arrays among the
    model arguments whose leading axis splits evenly are sharded over the devices.

    Returns
    -------
    FitResult
        ``params`` are the constrained parameters (for
        ``numpyro.handlers.substitute`` or ``Predictive``), ``losses`` the ELBO
        loss per step.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist, optax
    >>> from probcausal.infer import fit_svi
    >>> def model(y):
    ...     mu = numpyro.param("mu", 0.0)
    ...     with numpyro.plate("n", y.shape[0]):
    ...         numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
    >>> y = 2.0 + jax.random.normal(jax.random.key(1), (1000,))
    >>> r = fit_svi(model, lambda y: None, optax.adam(0.05), 500,
    ...             rng_key=jax.random.key(0), model_args=(y,), progress=False)
    >>> abs(float(r.params["mu"]) - float(y.mean())) < 1e-2
    True
    """
    kwargs = dict(model_kwargs or {})
    mesh = data_mesh(mesh)
    svi = numpyro.infer.SVI(model, guide, optimizer, loss or numpyro.infer.Trace_ELBO())
    key = (
        jax.random.key_data(rng_key)
        if jax.dtypes.issubdtype(rng_key.dtype, jax.dtypes.prng_key)
        else rng_key
    )
    # arrays travel as arguments of the jitted chunks; ints, strings and None stay static
    arrays, _, unpack = split_static((tuple(model_args), kwargs), numbers_dynamic=False)
    data = _place(arrays, mesh)

    with isolated():
        state = svi.init(
            jax.random.fold_in(key, -1 % 2**31),
            *model_args,
            init_params=dict(init_params) if init_params else None,
            **kwargs,
        )

    def step(state, key, data):
        args, kw = unpack(data)
        state, value = svi.update(state._replace(rng_key=key), *args, **kw)
        return state, {"loss": value}

    fit_kwargs.setdefault("description", "SVI")
    with isolated(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit(
            step,
            state,
            num_steps,
            rng_key=key,
            data=data,
            mesh=mesh,
            params_fn=svi.get_params,
            **fit_kwargs,
        )
    _rewarn(caught, _delta_sites(model, model_args, kwargs))
    return result


def _delta_sites(model, args, kwargs) -> set[str]:
    with isolated():
        tr = trace(seed(model, 0)).get_trace(*args, **kwargs)
    return {n for n, s in tr.items() if s["type"] == "sample" and isinstance(s["fn"], dist.Delta)}


def _rewarn(caught, deltas: set[str]):
    """Re-emit warnings, except NumPyro's "vars in model but not guide" when those
    vars are deterministic (Delta) sites such as neural mechanisms without
    observation noise: a guide has nothing to propose for them."""
    seen = set()
    for w in caught:
        text = str(w.message)
        m = re.match(r"Found vars in model but not guide: \{(.*)\}", text)
        if m and {v.strip().strip("'") for v in m.group(1).split(",")} <= deltas:
            continue
        if text not in seen:
            seen.add(text)
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
