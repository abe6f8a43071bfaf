"""``observe``: evidence for the factual world."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
from numpyro.handlers import condition

from probcausal.evidence import check_finite

__all__ = ["observe"]


class observe(condition):
    """Condition sites on evidence; under a world handler, the factual world only.

    The same as ``numpyro.handlers.condition`` with eager validation: NaN or
    infinite evidence raises :class:`~probcausal.errors.InvalidEvidenceError`.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> from numpyro.handlers import seed
    >>> import probcausal as pc
    >>> def model():
    ...     return numpyro.sample("x", dist.Normal(0, 1))
    >>> float(seed(pc.observe(model, {"x": 0.3}), 0)())
    0.3...
    >>> pc.observe(model, {"x": float("nan")})
    Traceback (most recent call last):
    ...
    probcausal.errors.InvalidEvidenceError: evidence for site 'x' holds 1 NaN ...
    """

    def __init__(self, fn: Callable | None = None, data: Mapping[str, Any] | None = None):
        if not isinstance(data, Mapping):
            raise TypeError(f"`data` must be a dict site -> value, got {type(data).__name__}")
        check_finite(data)
        super().__init__(fn, data={k: jnp.asarray(v) for k, v in data.items()})
