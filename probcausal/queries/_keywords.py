"""The keywords every query and effect takes, written once.

A query function is written with a last keyword-only parameter ``query`` and
decorated with :func:`query_keywords`; its callers write the keywords as usual
(``rng_key=``, ``num_samples=``, ...), the function receives them as one
:class:`QueryKeywords`, and passes them on with ``**query.forward()``. Its
signature (``help()``, the API docs, argument errors) shows the keywords.
Keywords that are not query keywords are the abduction engine's options
(``engine_kwargs``), checked against the engines where they are used.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

import jax

__all__ = ["QueryKeywords", "query_keywords"]


@dataclass(frozen=True)
class QueryKeywords:
    """The query keywords of one call: the PRNG key, the number of samples, the
    abduction ``method`` and its options, the model's arguments."""

    rng_key: jax.Array
    num_samples: int = 1000
    method: str = "auto"
    model_args: tuple = ()
    model_kwargs: Mapping[str, Any] | None = None
    engine_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def forward(self) -> dict[str, Any]:
        """The keywords as a dict for ``**``, to call another query with them."""
        out = {n: getattr(self, n) for n in _NAMES}
        return {**out, **self.engine_kwargs}


# the signature the decorated functions show, from the fields above
_FIELDS = [f for f in fields(QueryKeywords) if f.name != "engine_kwargs"]
_NAMES = tuple(f.name for f in _FIELDS)
_PARAMETERS = tuple(
    inspect.Parameter(
        f.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=inspect.Parameter.empty if f.default is MISSING else f.default,
        annotation=f.type,
    )
    for f in _FIELDS
) + (inspect.Parameter("engine_kwargs", inspect.Parameter.VAR_KEYWORD),)


def query_keywords(fn: Callable) -> Callable:
    """Give ``fn(..., *, query)`` the query keywords: callers pass ``rng_key=``
    (required), ``num_samples=``, ``method=``, ``model_args=``, ``model_kwargs=``
    and engine options, and ``fn`` receives them as one :class:`QueryKeywords`."""
    own = inspect.signature(fn)
    if "query" not in own.parameters:
        raise TypeError(f"{fn.__qualname__} needs a keyword-only parameter `query`")
    params = [p for n, p in own.parameters.items() if n != "query"]
    clash = set(_NAMES).intersection(p.name for p in params)
    if clash:
        raise TypeError(f"{fn.__qualname__} redefines the query keywords {sorted(clash)}")

    @functools.wraps(fn)
    def with_keywords(*args, **kwargs):
        own_kw = {k: kwargs.pop(k) for k in [k for k in kwargs if k in own.parameters]}
        if "query" in own_kw:
            raise TypeError(f"{fn.__name__}() got an unexpected keyword argument 'query'")
        if "rng_key" not in kwargs:
            try:  # a wrong call in other ways is named first, as Python names it
                with_keywords.__signature__.bind_partial(*args, **own_kw, **kwargs)
            except TypeError as e:
                raise TypeError(f"{fn.__name__}(): {e}") from None
            raise TypeError(f"{fn.__name__}() missing required keyword-only argument: 'rng_key'")
        named = {k: kwargs.pop(k) for k in [k for k in kwargs if k in _NAMES]}
        return fn(*args, **own_kw, query=QueryKeywords(**named, engine_kwargs=kwargs))

    with_keywords.__signature__ = own.replace(parameters=params + list(_PARAMETERS))
    return with_keywords
