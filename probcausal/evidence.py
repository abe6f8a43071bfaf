"""Evidence checks shared by the handlers and the queries: NaN or infinite values
refused by name, each JAX array checked once (JAX arrays are immutable, so
repeated queries on the same evidence skip the pass over it)."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from probcausal.errors import InvalidEvidenceError

__all__ = [
    "any_nonfinite",
    "check_finite",
    "known_finite",
    "mark_finite",
    "nonfinite_counts",
    "raise_nonfinite",
]

# id -> weak reference of the jax arrays already found finite. JAX arrays are
# immutable, so one check per array is enough: repeated queries on the same
# evidence skip the pass over it. (NumPy arrays can change: they are not kept.)
_FINITE: dict[int, weakref.ref] = {}


def known_finite(evidence: Mapping[str, Any]) -> bool:
    """Whether every evidence value is a JAX array already found finite.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> evidence = {"y": jnp.ones(3)}
    >>> known_finite(evidence)
    False
    >>> mark_finite(evidence)
    >>> known_finite(evidence)
    True
    """
    for value in evidence.values():
        ref = _FINITE.get(id(value))
        if ref is None or ref() is not value:
            return False
    return True


def mark_finite(evidence: Mapping[str, Any]) -> None:
    """Remember the JAX arrays of ``evidence`` as checked finite."""
    for value in evidence.values():
        if isinstance(value, jax.Array) and not isinstance(value, jax.core.Tracer):
            key = id(value)
            _FINITE[key] = weakref.ref(value, lambda _, key=key, d=_FINITE: d.pop(key, None))


def any_nonfinite(evidence: Mapping[str, Any]) -> jax.Array:
    """Whether any evidence value is NaN or infinite (a cheap traceable reduction).

    ``sum(v * 0)`` is exactly 0 for finite values and NaN as soon as one value is
    NaN or infinite: one vectorized float reduction, where ``any(~isfinite(v))``
    materializes a boolean array and reduces it in several passes on the CPU.
    """
    flags = [
        jnp.isnan(jnp.sum(v * 0))
        for v in evidence.values()
        if jnp.issubdtype(jnp.result_type(v), jnp.inexact)
    ]
    return jnp.any(jnp.stack(flags)) if flags else jnp.zeros((), bool)


def nonfinite_counts(evidence: Mapping[str, Any]) -> dict[str, jax.Array]:
    """Site -> number of NaN or infinite values (a traceable reduction)."""
    return {
        name: jnp.sum(~jnp.isfinite(value))
        if jnp.issubdtype(jnp.result_type(value), jnp.inexact)
        else jnp.zeros((), jnp.int32)
        for name, value in evidence.items()
    }


def raise_nonfinite(counts: Mapping[str, Any]) -> None:
    """Raise :class:`~probcausal.errors.InvalidEvidenceError` for the first bad site."""
    for name, count in counts.items():
        if int(count):
            raise InvalidEvidenceError(name, int(count))


_jit_counts = jax.jit(nonfinite_counts)
_jit_any = jax.jit(any_nonfinite)


def _in_host_memory(value) -> bool:
    return not isinstance(value, jax.Array) or all(d.platform == "cpu" for d in value.devices())


def _host_nonfinite(value) -> int:
    """NaN and infinite values in an array held in host memory (NumPy, no compile)."""
    a = np.asarray(value)
    if not np.issubdtype(a.dtype, np.inexact):
        return 0
    with np.errstate(all="ignore"):  # inf - inf, or a large finite sum overflowing
        if np.isfinite(np.sum(a)):  # one pass; when it is not, count exactly
            return 0
    return int(np.sum(~np.isfinite(a)))


def check_finite(evidence: Mapping[str, Any]) -> None:
    """Raise :class:`~probcausal.errors.InvalidEvidenceError` on NaN or inf evidence.

    Arrays in host memory (NumPy, JAX on the CPU) are checked with NumPy, which
    compiles nothing; arrays on an accelerator on the device (one reduction, one
    small transfer; the bad values are counted only when there are any). Tracers
    (inside ``jit``) are skipped: validate eagerly, before compiling.
    """
    concrete = {n: v for n, v in evidence.items() if not isinstance(v, jax.core.Tracer)}
    host = {n: v for n, v in concrete.items() if _in_host_memory(v)}
    raise_nonfinite({n: _host_nonfinite(v) for n, v in host.items()})
    device = {n: v for n, v in concrete.items() if n not in host}
    if device and bool(_jit_any(device)):
        raise_nonfinite(jax.device_get(_jit_counts(device)))
