"""``interventional``: the second rung, P(sites | do(actions))."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from probcausal.compilation import compiled, gc_paused, model_state, signature, split_static
from probcausal.handlers.do import action_label, unique_labels
from probcausal.infer.abduction import check_engine_kwargs
from probcausal.queries._keywords import QueryKeywords, query_keywords
from probcausal.queries._program import (
    action_dicts,
    check_sampling,
    plain_program,
    validate,
    validate_actions,
)
from probcausal.queries.counterfactual import run_counterfactual
from probcausal.sites import info_for

__all__ = ["InterventionalResult", "interventional"]


class InterventionalResult(dict):
    """Samples of ``do(model, actions)``: site -> ``(num_samples, *shape)`` (a
    ``world`` axis after the sample axis for a list of action dicts), a ``dict``
    with ``info`` (site facts: shapes, plates), ``labels`` (one per action dict)
    and ``single``."""

    def __init__(self, values, *, info, actions, single):
        super().__init__(values)
        self.info, self.single, self._actions = info, single, actions

    @property
    def labels(self) -> list[str]:
        """One label per action dict, ``["do(x=0.0)", ...]`` (unique)."""
        return unique_labels([action_label(a) for a in self._actions])

    def __repr__(self) -> str:
        sites = ", ".join(f"{n}{tuple(v.shape)}" for n, v in self.items())
        return f"InterventionalResult(worlds={self.labels}, sites=[{sites}])"

    __str__ = __repr__


@query_keywords
def interventional(
    model: Callable,
    actions: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    query: QueryKeywords,
) -> dict[str, jax.Array]:
    """Samples of every site of ``do(model, actions)``.

    Values the model receives through ``obs=`` are evidence about the factual
    world, as in every query: the intervened worlds are then computed from the
    noise abducted from them (``E[Y_x | obs]``, a counterfactual), with the
    abduction engine chosen as :func:`counterfactual` chooses it (``method`` and
    ``**engine_kwargs`` go to it). Without ``obs=`` sites this is plain
    ancestral sampling of the intervened model.

    One jitted, vectorized program per structure. With a list of action dicts the
    result has a ``world`` axis after the sample axis, one entry per action dict;
    all of them are drawn with the same key (common random numbers), so contrasts
    between them have low variance.

    Returns
    -------
    dict
        Site (sample and deterministic) -> ``(num_samples, *shape)``, or
        ``(num_samples, len(actions), *shape)`` for a list.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> import probcausal as pc
    >>> def model():
    ...     x = numpyro.sample("x", dist.Normal(0, 1))
    ...     numpyro.sample("y", dist.Normal(2 * x, 1))
    >>> s = pc.interventional(model, {"x": 1.0}, rng_key=jax.random.PRNGKey(0),
    ...                       num_samples=20000)
    >>> round(float(s["y"].mean()), 1)
    2.0
    """
    rng_key, num_samples = query.rng_key, query.num_samples
    check_sampling(rng_key, num_samples)
    check_engine_kwargs(query.engine_kwargs)
    kwargs = dict(query.model_kwargs or {})
    args = tuple(query.model_args)
    action_list, single = action_dicts(actions)
    state = model_state(model)
    info = info_for(model, args, kwargs, state=state)
    validate(info, {}, action_list)
    action_list = validate_actions(info, action_list)
    if any(s.observed and not s.intervened for s in info.values()):
        # values given through obs= are evidence about the factual world, in every
        # query: the intervened worlds share the noise abducted from them
        acts = action_list[0] if single else action_list
        result = run_counterfactual(model, {}, acts, query)
        return InterventionalResult(dict(result), info=info, actions=action_list, single=single)
    arg_dyn, arg_key, arg_rebuild = split_static((args, kwargs), numbers_dynamic=False)
    outs = []
    for a in action_list:
        act_dyn, act_key, act_rebuild = split_static(a, numbers_dynamic=True)
        cache_key = (
            "interventional",
            state,
            act_key,
            arg_key,
            signature((act_dyn, arg_dyn)),
            num_samples,
        )

        def build(act_rebuild=act_rebuild):
            one = plain_program(model, arg_rebuild, act_rebuild)

            def batched(key, act, argl):
                keys = jax.random.split(key, num_samples)
                return jax.vmap(one, in_axes=(0, None, None))(keys, act, argl)

            return batched

        with gc_paused():  # traced and compiled on a first query
            outs.append(compiled(cache_key, build)(rng_key, act_dyn, arg_dyn))
    if single:
        return InterventionalResult(outs[0], info=info, actions=action_list, single=True)
    stacked = {
        n: jnp.stack(
            [
                jnp.broadcast_to(o[n], jnp.broadcast_shapes(*(p[n].shape for p in outs)))
                for o in outs
            ],
            axis=1,
        )
        for n in outs[0]
    }
    return InterventionalResult(stacked, info=info, actions=action_list, single=False)
