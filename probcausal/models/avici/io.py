"""Saving and loading AVICI weights in a small, dependency-free format: one
compressed ``.npz`` with the network's configuration, its parameters in float16
(the shipped models are a few hundred kilobytes) and a free-form ``info`` dict
(what it was trained on)."""

from __future__ import annotations

import json
import os
from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from probcausal.models.avici.model import AVICI

__all__ = ["PRETRAINED", "load_avici", "pretrained", "save_avici"]

#: the models shipped in ``probcausal/models/avici/weights``
PRETRAINED = ("linear", "nonlinear")


def _key(path) -> str:
    return "/".join(str(getattr(p, "key", getattr(p, "idx", p))) for p in path)


def save_avici(net: AVICI, path: str | os.PathLike, info: dict | None = None) -> None:
    """Write ``net`` to ``path`` (``.npz``), parameters as float16."""
    leaves = jax.tree_util.tree_flatten_with_path(nnx.state(net, nnx.Param))[0]
    arrays = {"param/" + _key(p): np.asarray(v, np.float16) for p, v in leaves}
    meta = {"config": net.config, "info": info or {}}
    np.savez_compressed(path, __meta__=np.asarray(json.dumps(meta)), **arrays)


def load_avici(path: str | os.PathLike) -> tuple[AVICI, dict]:
    """Read a network written by :func:`save_avici`; returns ``(net, info)``."""
    with np.load(path) as f:
        meta = json.loads(str(f["__meta__"]))
        arrays = {k[len("param/") :]: f[k] for k in f.files if k.startswith("param/")}
    net = AVICI(**meta["config"], rngs=nnx.Rngs(0))
    state = nnx.state(net, nnx.Param)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
    missing = [_key(p) for p, _ in leaves if _key(p) not in arrays]
    if missing:
        raise ValueError(
            f"{path}: the file lacks parameters {missing[:5]}; it is not an AVICI "
            "checkpoint of this configuration"
        )
    values = [jnp.asarray(arrays[_key(p)], v.dtype) for p, v in leaves]
    nnx.update(net, jax.tree_util.tree_unflatten(treedef, values))
    return net, meta["info"]


def pretrained(name: str) -> tuple[AVICI, dict]:
    """A shipped model: ``"linear"`` (trained on linear SCMs) or ``"nonlinear"``
    (random-Fourier-feature mechanisms); returns ``(net, info)``, ``info`` saying
    what it was trained on and for how long."""
    if name not in PRETRAINED:
        raise ValueError(f"unknown pretrained AVICI model {name!r}; choose one of {PRETRAINED}")
    path = resources.files("probcausal.models.avici") / "weights" / f"{name}.npz"
    if not path.is_file():
        raise FileNotFoundError(
            f"the pretrained weights {name}.npz are not installed; train them with "
            "`python -m probcausal.models.avici.pretrain` or pass your own network"
        )
    with resources.as_file(path) as p:
        return load_avici(p)
