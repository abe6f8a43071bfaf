"""Amortized guides: an encoder maps observed values to the posterior of a
neural site's noise."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from flax import nnx
from numpyro.contrib.module import nnx_module

from probcausal.nn.sites import _context

__all__ = ["EncoderGuide"]


class EncoderGuide:
    """The guide ``q(latent | inputs) = Normal(encoder(inputs))`` for a noise site.

    ``inputs`` are read from the guide's keyword arguments when given there
    (NumPyro's usual ``guide(x=..., y=...)``) and otherwise from the values bound
    with :meth:`bind`. Train it once with :func:`~probcausal.infer.fit_svi` on
    data or simulations, then pass it with its trained parameters to
    ``pc.counterfactual(..., method="svi", guide=guide, guide_params=params)``:
    abduction is then one forward pass, no per-query fitting.

    Parameters
    ----------
    encoder : flax.nnx.Module
        Maps the flattened, concatenated inputs to ``(loc, scale)``, such as
        :class:`~probcausal.nn.Encoder`.
    inputs : sequence of str
        Observed sites the encoder reads.
    latent : str
        The latent site it proposes, for example ``"y_noise"``; its value is a
        vector (event dim 1).
    name : str
        Name of the encoder's ``param`` site (``{name}$params``).
    event_dims : sequence of int, optional
        Event dims of each input (default 0).
    """

    def __init__(
        self,
        encoder: nnx.Module,
        inputs: Sequence[str],
        latent: str,
        *,
        name: str = "encoder",
        event_dims: Sequence[int] | None = None,
        evidence: Mapping[str, Any] | None = None,
    ):
        self.encoder = encoder
        self.inputs = tuple(inputs)
        self.latent = latent
        self.name = name
        self.event_dims = tuple(event_dims) if event_dims is not None else (0,) * len(inputs)
        self.evidence = dict(evidence or {})

    def bind(self, evidence: Mapping[str, Any]) -> EncoderGuide:
        """The same guide reading its inputs from ``evidence``."""
        return EncoderGuide(
            self.encoder,
            self.inputs,
            self.latent,
            name=self.name,
            event_dims=self.event_dims,
            evidence=evidence,
        )

    def __call__(self, *args, **kwargs):
        values = []
        for n in self.inputs:
            v = kwargs.get(n)
            if v is None:
                if n not in self.evidence:
                    raise ValueError(
                        f"EncoderGuide for '{self.latent}' needs a value of '{n}': pass it as "
                        "a keyword argument or bind evidence with guide.bind({...})"
                    )
                v = self.evidence[n]
            values.append(v)
        flat = _context(f"guide of {self.latent}", values, self.event_dims)
        batch = jnp.broadcast_shapes(*(f.shape[:-1] for f in flat))
        context = jnp.concatenate([jnp.broadcast_to(f, batch + f.shape[-1:]) for f in flat], -1)
        loc, scale = nnx_module(self.name, self.encoder)(context)
        return numpyro.sample(self.latent, dist.Normal(loc, scale).to_event(1))
