"""Pretrained networks plugged into a model as constants."""

from __future__ import annotations

import jax
from flax import nnx

__all__ = ["Frozen", "with_params"]


def with_params(module: nnx.Module, params=None) -> nnx.Module:
    """A copy of ``module`` holding the trained ``params``: the pure dict that
    NumPyro's ``nnx_module(name, module)`` trains as the ``{name}$params`` site
    (``None``: the module's own weights). The module itself is left as it was.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from probcausal.nn import MLP, with_params
    >>> net = MLP(2, 1, hidden=(), rngs=nnx.Rngs(0))
    >>> trained = {"layers": {0: {"kernel": jnp.ones((2, 1)), "bias": jnp.zeros(1)}}}
    >>> with_params(net, trained)(jnp.array([[1.0, 2.0]])).tolist()
    [[3.0]]
    >>> bool((net.layers[0].kernel.value == 1.0).all())  # the original is untouched
    False
    """
    graphdef, own, other = nnx.split(module, nnx.Param, nnx.Not(nnx.Param))
    own = jax.tree.map(lambda a: jax.numpy.array(a, copy=True), own)  # buffers of its own
    if params is not None:
        nnx.replace_by_pure_dict(own, jax.tree.map(jax.numpy.asarray, params))
    return nnx.merge(graphdef, own, other, copy=True)


class Frozen:
    """A pretrained Flax NNX module used as a fixed mechanism.

    Its weights are captured once as constants: calling it inside a model creates
    no ``param`` site, gradients stop at it, and no trainer can update it.
    ``state`` holds the weights (for checks); attributes such as ``out_shape`` or
    ``noise_features`` are read from the wrapped module.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from probcausal.nn import Frozen, MLPGenerator
    >>> g = Frozen(MLPGenerator(2, 1, rngs=nnx.Rngs(0)))
    >>> g(jnp.ones((3, 2)), jnp.zeros((3, 1))).shape
    (3,)
    """

    def __init__(self, module: nnx.Module):
        if not isinstance(module, nnx.Module):
            raise TypeError(f"Frozen wraps a flax.nnx.Module, got {type(module).__name__}")
        graphdef, state = nnx.split(module)
        self.graphdef = graphdef
        self.state = jax.tree.map(lambda a: jax.numpy.array(a, copy=True), state)
        self._attributes = {
            k: getattr(module, k)
            for k in ("out_shape", "noise_features", "context_features")
            if hasattr(module, k)
        }

    def __getattr__(self, name):
        attributes = self.__dict__.get("_attributes", {})
        if name in attributes:
            return attributes[name]
        raise AttributeError(name)

    def __call__(self, *args, **kwargs):
        module = nnx.merge(self.graphdef, jax.lax.stop_gradient(self.state))
        return module(*args, **kwargs)
