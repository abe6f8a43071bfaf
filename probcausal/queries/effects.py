"""Causal effects: ATE, CATE, ETT, mediation, probabilities of causation.

All contrasts are computed world against world on shared exogenous noise, so the
Monte Carlo error of a difference is that of the difference, not of two
independent means (for linear models, effects are exact). Every effect takes the
query keywords of :func:`~probcausal.counterfactual` (``rng_key``, ``num_samples``,
``method`` and the engine's options, ``model_args``, ``model_kwargs``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from probcausal.errors import UnsupportedQueryError
from probcausal.graph import as_names
from probcausal.handlers.do import WorldValue
from probcausal.queries._keywords import QueryKeywords, query_keywords
from probcausal.queries.counterfactual import run_counterfactual
from probcausal.queries.interventional import interventional

__all__ = [
    "ate",
    "cate",
    "ett",
    "mediation",
    "probability_of_necessity",
    "probability_of_necessity_and_sufficiency",
    "probability_of_sufficiency",
]


@query_keywords
def ate(
    model: Callable,
    treatment: str,
    outcome: str,
    treated: Any = 1.0,
    control: Any = 0.0,
    *,
    query: QueryKeywords,
) -> jax.Array:
    """Average treatment effect ``E[Y_{treated}] - E[Y_{control}]``.

    Averaged over samples and over the outcome's plate elements; an outcome with
    an event shape (a vector site, the one-hot value of a discrete neural site)
    keeps it: one effect per component (for a one-hot, the change in each class's
    probability). ``method`` and ``**engine_kwargs`` choose the abduction engine
    when the model holds ``obs=`` values (see :func:`interventional`).

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> import probcausal as pc
    >>> def model():
    ...     x = numpyro.sample("x", dist.Normal(0, 1))
    ...     numpyro.sample("y", dist.Normal(3 * x, 1))
    >>> round(float(pc.ate(model, "x", "y", rng_key=jax.random.PRNGKey(0))), 4)
    3.0
    """
    result = interventional(model, [{treatment: treated}, {treatment: control}], **query.forward())
    s = result[outcome]
    return _mean_effect(s[:, 0] - s[:, 1], result.info[outcome], per_unit=False)


def _mean_effect(d, site, per_unit: bool) -> jax.Array:
    """The mean of per-sample effects ``d`` (``(num_samples, *site shape)``) over the
    samples and, unless ``per_unit``, over the site's plate (batch) elements; its
    event dims are kept."""
    batch = jnp.ndim(d) - 1 - site.event_dim
    axes = (0,) if per_unit else tuple(range(1 + max(batch, 0)))
    return jnp.mean(d, axis=axes)


def _contrast(model, treatment, outcome, treated, control, evidence, query):
    """Per-sample effects ``Y_treated - Y_control`` given ``evidence``, and the
    outcome's site facts."""
    cf = run_counterfactual(model, evidence, [{treatment: treated}, {treatment: control}], query)
    y = cf[outcome]
    return y[:, 0] - y[:, 1], cf.info[outcome]


@query_keywords
def cate(
    model: Callable,
    treatment: str,
    outcome: str,
    treated: Any = 1.0,
    control: Any = 0.0,
    *,
    evidence: Mapping[str, Any],
    query: QueryKeywords,
) -> jax.Array:
    """Conditional average treatment effect ``E[Y_t - Y_c | evidence]``.

    ``evidence`` holds covariates (per unit, inside plates, for unit-level effects).
    Returns an array of the outcome's shape: the effect per unit (and per
    component of an event-shaped outcome).

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> import probcausal as pc
    >>> def model():
    ...     z = numpyro.sample("z", dist.Normal(0, 1))
    ...     t = numpyro.sample("t", dist.Normal(z, 1))
    ...     numpyro.sample("y", dist.Normal(t * (1 + z), 1))
    >>> float(pc.cate(model, "t", "y", evidence={"z": 2.0}, rng_key=jax.random.PRNGKey(0)))
    3.0
    """
    d, site = _contrast(model, treatment, outcome, treated, control, evidence, query)
    return _mean_effect(d, site, per_unit=True)


@query_keywords
def ett(
    model: Callable,
    treatment: str,
    outcome: str,
    treated: Any = 1.0,
    control: Any = 0.0,
    *,
    evidence: Mapping[str, Any] | None = None,
    query: QueryKeywords,
) -> jax.Array:
    """Effect of treatment on the treated, ``E[Y_t - Y_c | T = t]``, averaged over
    the samples and the outcome's plate elements (event dims kept, as in :func:`ate`).

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> import probcausal as pc
    >>> def model():  # confounded: u -> t, u -> y; the effect of t grows with u
    ...     u = numpyro.sample("u", dist.Bernoulli(0.5))
    ...     t = numpyro.sample("t", dist.Bernoulli(0.2 + 0.6 * u))
    ...     numpyro.sample("y", dist.Normal(t * (1.0 + u), 0.1))
    >>> round(float(pc.ett(model, "t", "y", 1, 0, rng_key=jax.random.PRNGKey(0),
    ...                    num_samples=20000)), 1)  # 1 + P(u=1 | t=1) = 1.8
    1.8
    """
    ev = {treatment: treated, **dict(evidence or {})}
    d, site = _contrast(model, treatment, outcome, treated, control, ev, query)
    return _mean_effect(d, site, per_unit=False)


@query_keywords
def mediation(
    model: Callable,
    treatment: str,
    mediator: str | list[str],
    outcome: str,
    treated: Any = 1.0,
    control: Any = 0.0,
    *,
    evidence: Mapping[str, Any] | None = None,
    query: QueryKeywords,
) -> dict[str, jax.Array]:
    """Natural direct and indirect effects (Pearl 2001).

    - ``nde = E[Y_{t, M_c}] - E[Y_c]``: the treatment's effect with the mediator held
      at the value it would take under control;
    - ``nie = E[Y_t] - E[Y_{t, M_c}]``; ``total = E[Y_t] - E[Y_c] = nde + nie``.

    Four worlds in one program (factual, ``do(c)``, ``do(t)``, ``do(t, M=M_c)``): the
    nested counterfactual uses :class:`~probcausal.WorldValue`.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> import probcausal as pc
    >>> def model():
    ...     x = numpyro.sample("x", dist.Normal(0, 1))
    ...     m = numpyro.sample("m", dist.Normal(2.0 * x, 1))
    ...     numpyro.sample("y", dist.Normal(0.5 * x + 3.0 * m, 1))
    >>> fx = pc.mediation(model, "x", "m", "y", rng_key=jax.random.PRNGKey(0))
    >>> {k: round(float(v), 4) for k, v in fx.items()}
    {'nde': 0.5, 'nie': 6.0, 'total': 6.5}
    """
    mediators = as_names(mediator)
    actions = [
        {treatment: control},
        {treatment: treated},
        {treatment: treated, **{m: WorldValue(1) for m in mediators}},
    ]
    return run_counterfactual(
        model, dict(evidence or {}), actions, query, summary=(_natural_effects, outcome)
    )


def _natural_effects(values, outcome):
    """NDE, NIE and total effect from the worlds (do(c), do(t), do(t, M=M_c))."""
    y = values[outcome]
    y_c, y_t, y_tmc = y[:, 0], y[:, 1], y[:, 2]
    return {
        "nde": jnp.mean(y_tmc - y_c),
        "nie": jnp.mean(y_t - y_tmc),
        "total": jnp.mean(y_t - y_c),
    }


def _discrete_outcome(cf, outcome: str, query: str, value) -> None:
    site = cf.info.get(outcome)
    if site is None or not site.discrete:
        family = site.family.__name__ if site is not None else "numpyro.deterministic"
        raise UnsupportedQueryError(
            f"{query} asks whether the outcome '{outcome}' takes the value {value!r} in "
            f"a counterfactual world, but '{outcome}' is a continuous {family} site: "
            "the event has probability 0 or 1 whatever the model. Give the model a "
            "discrete outcome (a Bernoulli or Categorical site, or a thresholded Delta "
            "site such as numpyro.sample('high', dist.Delta((y > c).astype(jnp.int32)))), "
            "or ask pc.counterfactual for the outcome's distribution."
        )


def _binary_query(model, outcome, evidence, actions, event, name, outcome_value, query):
    cf = run_counterfactual(model, evidence, actions, query)
    _discrete_outcome(cf, outcome, name, outcome_value)
    return jnp.mean(event(cf[outcome]))


@query_keywords
def probability_of_necessity(
    model: Callable,
    treatment: str,
    outcome: str,
    treated: Any = 1,
    control: Any = 0,
    outcome_value: Any = 1,
    *,
    evidence: Mapping[str, Any] | None = None,
    query: QueryKeywords,
) -> jax.Array:
    """``PN = P(Y_c != y | T = t, Y = y)``: would the outcome have failed to occur
    without the treatment, given that both occurred?

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> import probcausal as pc
    >>> def model():
    ...     x = numpyro.sample("x", dist.Bernoulli(0.5))
    ...     numpyro.sample("y", dist.Bernoulli(0.3 + 0.7 * x))
    >>> pn = pc.probability_of_necessity(model, "x", "y", rng_key=jax.random.PRNGKey(0),
    ...                                  num_samples=20000)
    >>> round(float(pn), 2)
    0.7
    """
    ev = {treatment: treated, outcome: outcome_value, **dict(evidence or {})}
    return _binary_query(
        model,
        outcome,
        ev,
        {treatment: control},
        lambda y: y != outcome_value,
        "probability_of_necessity",
        outcome_value,
        query,
    )


@query_keywords
def probability_of_sufficiency(
    model: Callable,
    treatment: str,
    outcome: str,
    treated: Any = 1,
    control: Any = 0,
    outcome_value: Any = 1,
    *,
    evidence: Mapping[str, Any] | None = None,
    query: QueryKeywords,
) -> jax.Array:
    """``PS = P(Y_t = y | T = c, Y = y')``, ``y' = 1 - y`` for a binary outcome:
    would the treatment have produced the outcome where neither occurred?

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> import probcausal as pc
    >>> def model():  # P(y | x=1) = 0.9, P(y | x=0) = 0.4: PS = 0.5 / 0.6
    ...     x = numpyro.sample("x", dist.Bernoulli(0.5))
    ...     numpyro.sample("y", dist.Bernoulli(0.4 + 0.5 * x))
    >>> ps = pc.probability_of_sufficiency(model, "x", "y", rng_key=jax.random.PRNGKey(0),
    ...                                    num_samples=20000)
    >>> abs(float(ps) - 0.5 / 0.6) < 0.02  # Monte Carlo: sd about 0.003
    True
    """
    ev = {treatment: control, outcome: 1 - outcome_value, **dict(evidence or {})}
    return _binary_query(
        model,
        outcome,
        ev,
        {treatment: treated},
        lambda y: y == outcome_value,
        "probability_of_sufficiency",
        outcome_value,
        query,
    )


@query_keywords
def probability_of_necessity_and_sufficiency(
    model: Callable,
    treatment: str,
    outcome: str,
    treated: Any = 1,
    control: Any = 0,
    outcome_value: Any = 1,
    *,
    evidence: Mapping[str, Any] | None = None,
    query: QueryKeywords,
) -> jax.Array:
    """``PNS = P(Y_t = y, Y_c != y)``: the outcome responds to the treatment.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> import probcausal as pc
    >>> def model():  # Gumbel-max is monotone here: PNS = 0.9 - 0.4
    ...     x = numpyro.sample("x", dist.Bernoulli(0.5))
    ...     numpyro.sample("y", dist.Bernoulli(0.4 + 0.5 * x))
    >>> pns = pc.probability_of_necessity_and_sufficiency(
    ...     model, "x", "y", rng_key=jax.random.PRNGKey(0), num_samples=20000)
    >>> round(float(pns), 2)
    0.5
    """
    cf = run_counterfactual(
        model, dict(evidence or {}), [{treatment: treated}, {treatment: control}], query
    )
    _discrete_outcome(cf, outcome, "probability_of_necessity_and_sufficiency", outcome_value)
    y = cf[outcome]
    return jnp.mean((y[:, 0] == outcome_value) & (y[:, 1] != outcome_value))
