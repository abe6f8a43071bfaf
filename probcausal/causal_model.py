"""``@causal_model``: a NumPyro model with causal methods attached."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import networkx as nx

from probcausal.graph import graph
from probcausal.handlers import do
from probcausal.identification import ADMG, identify
from probcausal.queries import counterfactual, interventional

__all__ = ["CausalModel", "causal_model"]


class CausalModel:
    """A NumPyro model function with causal methods; still a valid NumPyro model.

    Calling it runs the model, so it works with ``MCMC``, ``SVI``, ``Predictive``
    and every handler. Methods: :meth:`graph`, :meth:`do`, :meth:`interventional`,
    :meth:`counterfactual`, :meth:`identify`.

    ``abduction`` gives the model its own default abduction engine: the
    ``method`` and engine options (such as an amortized ``guide`` with its
    ``guide_params``) that every counterfactual query on it uses when the caller
    passes no ``method``. A learned model with an encoder carries it this way, so
    ``pc.counterfactual(m.causal_model(), {"x": image}, ...)`` abducts with the
    encoder in one forward pass; a caller's ``method=`` overrides it.
    """

    def __init__(self, fn: Callable, *, abduction: Mapping[str, Any] | None = None):
        if not callable(fn):
            raise TypeError(f"causal_model needs a callable model, got {type(fn).__name__}")
        if abduction is not None and "method" not in abduction:
            raise TypeError(
                "abduction needs a 'method' (for example {'method': 'svi', 'guide': ..., "
                "'guide_params': {...}})"
            )
        self.fn = fn
        self.abduction = dict(abduction) if abduction is not None else None
        functools.update_wrapper(self, fn, updated=[])

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"CausalModel({getattr(self.fn, '__name__', repr(self.fn))})"

    def graph(self, *args, **kwargs) -> nx.DiGraph:
        """:func:`probcausal.graph` of this model with these arguments."""
        return graph(self, *args, **kwargs)

    def identify(
        self,
        treatment,
        outcome,
        given=None,
        *,
        hidden=(),
        model_args: tuple = (),
        model_kwargs: Mapping[str, Any] | None = None,
    ):
        """:func:`probcausal.identify` on this model's graph, with the sites in ``hidden``
        unobserved (they become bidirected edges by latent projection).

        Examples
        --------
        >>> import numpyro, numpyro.distributions as dist
        >>> import probcausal as pc
        >>> @pc.causal_model
        ... def smoking():
        ...     gene = numpyro.sample("gene", dist.Bernoulli(0.3))
        ...     smoke = numpyro.sample("smoke", dist.Bernoulli(0.2 + 0.5 * gene))
        ...     tar = numpyro.sample("tar", dist.Bernoulli(0.1 + 0.8 * smoke))
        ...     numpyro.sample("cancer", dist.Bernoulli(0.1 + 0.4 * tar + 0.3 * gene))
        >>> print(smoking.identify("smoke", "cancer", hidden=["gene"]))
        P(cancer | do(smoke)) = Σ_{tar} [P(tar | smoke)
            Σ_{smoke'} [P(smoke') P(cancer | smoke', tar)]]
        """
        graph = ADMG.from_model(self, *model_args, hidden=hidden, **dict(model_kwargs or {}))
        return identify(graph, treatment, outcome, given=given)

    def do(self, actions: Mapping[str, Any]) -> CausalModel:
        """The intervened model ``do(self, actions)``, itself a :class:`CausalModel`."""
        return CausalModel(do(self.fn, actions), abduction=self.abduction)

    def interventional(self, actions, **kwargs):
        """:func:`probcausal.interventional` on this model."""
        return interventional(self, actions, **kwargs)

    def counterfactual(self, evidence, actions, **kwargs):
        """:func:`probcausal.counterfactual` on this model."""
        return counterfactual(self, evidence, actions, **kwargs)


def causal_model(fn: Callable) -> CausalModel:
    """Decorate a NumPyro model function as a :class:`CausalModel`.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> import probcausal as pc
    >>> @pc.causal_model
    ... def encouragement():
    ...     x = numpyro.sample("x", dist.Normal(0, 1))
    ...     h = numpyro.sample("h", dist.Normal(0.5 * x, 1))
    ...     numpyro.sample("y", dist.Normal(0.7 * x + 0.4 * h, 1))
    >>> sorted(encouragement.graph().edges())
    [('h', 'y'), ('x', 'h'), ('x', 'y')]
    >>> cf = encouragement.counterfactual({"x": 0.5, "h": 1.0, "y": 1.5}, {"h": 2.0},
    ...                                   rng_key=jax.random.PRNGKey(0), num_samples=2)
    >>> cf["y"].round(4).tolist()
    [1.9, 1.9]
    """
    return CausalModel(fn)
