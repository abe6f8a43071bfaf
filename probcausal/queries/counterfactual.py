"""``counterfactual``: the third rung, by abduction, action and prediction."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from probcausal import mechanisms
from probcausal.compilation import compiled, gc_paused, model_state, signature, split_static
from probcausal.errors import AbductionError, NotGaussian
from probcausal.evidence import any_nonfinite, check_finite, known_finite, mark_finite
from probcausal.handlers.do import WorldValue, action_label, reads_value, unique_labels
from probcausal.infer.abduction import (
    R_HAT_SWITCH,
    check_engine_kwargs,
    choose_method,
    max_r_hat,
    posterior_latents,
    warn_unconverged,
)
from probcausal.queries import _recall
from probcausal.queries._keywords import QueryKeywords, query_keywords
from probcausal.queries._program import (
    action_dicts,
    check_sampling,
    noise_unread,
    raise_impossible,
    validate,
    validate_actions,
    world_program,
)
from probcausal.sites import info_for, latent_ancestors

__all__ = ["CounterfactualResult", "counterfactual"]


class CounterfactualResult(dict):
    """Counterfactual values: site -> array, a ``dict`` with the query's context.

    For a single action dict the arrays are ``(num_samples, *site_shape)``; for a
    list of action dicts ``(num_samples, num_worlds, *site_shape)``, one world per
    action dict. Attributes:

    - ``factual``: site -> ``(num_samples, *site_shape)`` factual-world values;
    - ``labels``: world labels, ``["factual", "do(h=2.0)", ...]``;
    - ``noise``: site -> abducted exogenous noise ``(num_samples, ...)``;
    - ``latents``: site -> posterior samples of the inferred latent sites;
    - ``evidence``: the evidence; ``method``: the abduction engine used;
    - ``chains``, ``diagnostics``: for MCMC engines the number of chains and, per
      latent site, split R-hat and effective sample size (``{"r_hat", "ess"}``);
    - ``info``: site -> :class:`~probcausal.infer.SiteInfo` (shapes, plates).
    """

    latents: dict
    evidence: dict
    method: str
    chains: int
    diagnostics: dict
    single: bool
    info: dict

    def __init__(self, values, *, factual_unobserved, noise_fn, num_samples, **context):
        super().__init__(values)
        self._factual_unobserved = factual_unobserved
        self._noise_fn = noise_fn
        self._noise = None
        self._num_samples = num_samples
        for name, value in context.items():
            setattr(self, name, value)

    def __repr__(self) -> str:
        """A short summary: sites with shapes, worlds, engine; not the arrays."""
        sites = ", ".join(f"{n}{tuple(v.shape)}" for n, v in self.items())
        extra = f", chains={self.chains}" if getattr(self, "chains", 1) > 1 else ""
        return (
            f"CounterfactualResult(method={self.method!r}, num_samples={self._num_samples}"
            f"{extra}, worlds={self.labels}, evidence={sorted(self.evidence)}, "
            f"sites=[{sites}])"
        )

    __str__ = __repr__

    def _repr_pretty_(self, p, cycle):  # IPython
        p.text(repr(self))

    @property
    def labels(self) -> list:
        """World labels, ``["factual", "do(h=2.0)", ...]``, unique (a repeated label
        gets ``#2``, ``#3``)."""
        return unique_labels(["factual"] + [action_label(a) for a in self._actions])

    @property
    def factual(self) -> dict:
        """site -> ``(num_samples, *site_shape)``: the factual world."""
        out = dict(self._factual_unobserved)
        for name, value in self.evidence.items():
            out[name] = jnp.broadcast_to(value, (self._num_samples,) + self.info[name].shape)
        return {n: out[n] for n in self}

    @property
    def noise(self) -> dict:
        """site -> abducted exogenous noise ``(num_samples, ...)`` (computed on first
        access by the same program and key, so it is the noise behind the values)."""
        if self._noise is None:
            self._noise = self._noise_fn()
        return self._noise

    def worlds(self) -> dict:
        """site -> ``(num_samples, num_worlds + 1, *shape)``, world 0 factual."""
        out = {}
        for name, value in self.items():
            cf = value[:, None] if self.single else value
            out[name] = jnp.concatenate([self.factual[name][:, None], cf], axis=1)
        return out


@query_keywords
def counterfactual(
    model: Callable,
    evidence: Mapping[str, Any],
    actions: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    query: QueryKeywords,
) -> CounterfactualResult:
    """Sample counterfactual values of every site given evidence and interventions.

    Abduction, action, prediction: the posterior over unobserved factual sites
    comes from the cheapest correct engine (see :mod:`probcausal.infer.abduction`);
    each site's noise is abducted from its factual value; the worlds are the model
    re-run with that noise under the actions. The whole query is one jitted,
    vectorized program, cached per structure.

    Parameters
    ----------
    model : callable
        A NumPyro model.
    evidence : dict
        Site -> observed value (the site's shape, or broadcastable to it).
    actions : dict or list of dict
        Interventions (see :class:`~probcausal.do`); a list gives one world each.
    rng_key : jax.Array
        PRNG key. The same key gives the same answer.
    num_samples : int
        Posterior draws.
    method : {"auto", "exact", "enumeration", "gaussian", "nuts", "svi", "gibbs", "rejection"}
        Abduction engine for latent ancestors of the evidence. ``"gaussian"`` is
        the exact conjugate posterior of a linear-Gaussian model (``"auto"`` tries
        it for Normal sites and falls back to ``"nuts"`` when the log density is
        not quadratic in the latents). ``"rejection"``
        keeps the prior runs that reproduce the evidence exactly: for evidence on
        deterministic sites (neural Gumbel-max sites), with ``max_draws``.
    model_args, model_kwargs
        Arguments of the model.
    **engine_kwargs
        ``num_warmup``, ``svi_steps``, ``svi_learning_rate``, ``guide`` (an
        autoguide, any guide, or an amortized :class:`~probcausal.nn.EncoderGuide`),
        ``guide_params`` (trained guide parameters: sample the guide, no fitting),
        ``progress_bar``, ``max_draws`` and ``atol`` (rejection).

    Returns
    -------
    CounterfactualResult
        A dict site -> ``(num_samples, *shape)`` (a ``world`` axis after the sample
        axis for a list of actions), with factual values, labels and noise.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> import probcausal as pc
    >>> def model():
    ...     x = numpyro.sample("x", dist.Normal(0, 1))
    ...     h = numpyro.sample("h", dist.Normal(0.5 * x, 1))
    ...     numpyro.sample("y", dist.Normal(0.7 * x + 0.4 * h, 1))
    >>> cf = pc.counterfactual(model, {"x": 0.5, "h": 1.0, "y": 1.5}, {"h": 2.0},
    ...                        rng_key=jax.random.PRNGKey(0), num_samples=4)
    >>> cf["y"].round(4).tolist()
    [1.9, 1.9, 1.9, 1.9]
    """
    return run_counterfactual(model, evidence, actions, query)


def _model_abduction(model, query: QueryKeywords) -> QueryKeywords:
    """The model's own abduction engine (``CausalModel(..., abduction=...)``) when
    the caller chose none; the caller's engine options win over the model's."""
    own = getattr(model, "abduction", None)
    if not own or query.method != "auto":
        return query
    options = {k: v for k, v in own.items() if k != "method"}
    return replace(query, method=own["method"], engine_kwargs={**options, **query.engine_kwargs})


def _reads_factual(action_list) -> bool:
    """Whether an action reads the factual world (``WorldValue(0)``)."""
    return any(isinstance(a, WorldValue) and a.world == 0 for w in action_list for a in w.values())


def _any_tracer(tree) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(tree))


# key -> weak references to the evidence and argument arrays found possible
_POSSIBLE: dict = {}


def _possible_key(base_key, evidence, arg_dyn):
    arrays = [*evidence.values(), *arg_dyn]
    if not all(isinstance(a, jax.Array) for a in arrays):
        return None  # NumPy and Python values may change: checked every time
    try:
        return (base_key, tuple(map(id, arrays)))
    except TypeError:
        return None


def _known_possible(key) -> bool:
    if key is None:
        return False
    try:
        refs = _POSSIBLE.get(key)
    except TypeError:  # an unhashable static argument
        return False
    return refs is not None and all(r() is not None for r in refs)


def _mark_possible(key, evidence, arg_dyn) -> None:
    arrays = [*evidence.values(), *arg_dyn]
    try:
        _POSSIBLE[key] = tuple(
            weakref.ref(a, lambda _, key=key, d=_POSSIBLE: d.pop(key, None)) for a in arrays
        )
    except TypeError:
        pass


@dataclass
class _Query:
    """A validated counterfactual query: what every later step reads."""

    model: Callable
    info: dict
    evidence: dict
    actions: list
    single: bool
    args: tuple
    kwargs: dict
    arg_split: tuple  # split_static of (args, kwargs)
    state: tuple  # model_state(model)
    traced: bool  # the evidence is traced by an enclosing transformation
    check: bool  # NaN/inf in the evidence still to be checked, inside the program
    latents: list
    num_samples: int
    recalled: bool = False  # prepared by an earlier query on the same arrays, checked then


@dataclass
class _Posterior:
    """The abduction step's outcome: latent draws and how they were made."""

    values: dict
    method: str
    chains: int = 1
    diagnostics: dict = field(default_factory=dict)


def run_counterfactual(
    model, evidence, actions, query: QueryKeywords, summary: tuple | None = None
):
    """:func:`counterfactual`, or with ``summary=(fn, *static_args)`` the value of
    ``fn(values, *static_args)`` computed inside the compiled program (``fn`` a
    module-level function: it is part of the cache key), so that a query that only
    needs a statistic of the worlds never writes them out.

    The steps: validate the query, infer the latents (abduction), plan and compile
    the world program, run it and check the evidence, assemble the result."""
    query = _model_abduction(model, query)
    rng_key, num_samples = query.rng_key, query.num_samples
    check_sampling(rng_key, num_samples)
    check_engine_kwargs(query.engine_kwargs)
    recall_key = _recall.key_of(model, evidence, actions, query, summary)
    prepared, k_world = _recall.recall(recall_key), rng_key
    fresh = prepared is None  # prepared, traced and compiled here on a first query
    with gc_paused() if fresh else contextlib.nullcontext():
        if fresh:
            prepared, k_world = _prepare(model, evidence, actions, query, summary)
        q, post, key, build, program = prepared
        inputs = (k_world, q.evidence, post.values, key[2], q.arg_split[0])
        *out, (bad, possible) = program(*inputs)
    if not q.recalled:
        _check_finite(q, bad)
        if possible is not None:
            checks = partial(compiled, key[0] + ("checks",), partial(build, "checks"), jit=False)
            _check_possible(q, post, key[0], possible, lambda: checks()(*inputs))
        if not q.latents and not q.traced and known_finite(q.evidence):
            # checked now, and nothing random enters the checks (no latent ancestor)
            _recall.remember(recall_key, (replace(q, recalled=True), *prepared[1:]))
    if summary is not None:
        return out[0]
    cf, factual = out
    return CounterfactualResult(
        cf,
        factual_unobserved=factual,
        noise_fn=lambda: compiled(key[0] + ("noise",), lambda: build("noise"), jit=False)(*inputs),
        num_samples=num_samples,
        _actions=q.actions,
        latents=post.values,
        evidence=dict(q.evidence),
        method=post.method,
        chains=post.chains,
        diagnostics=post.diagnostics,
        single=q.single,
        info=q.info,
    )


def _prepare(model, evidence, actions, query: QueryKeywords, summary):
    """The validated query, its posterior, plan and program, and the key of its
    worlds: what a query asked again on the same arrays recalls (``_recall``)."""
    q = _validate(model, evidence, actions, query.num_samples, query.model_args, query.model_kwargs)
    # split only when an engine needs its own key: a split is an eager dispatch
    k_post, k_world = jax.random.split(query.rng_key) if q.latents else (None, query.rng_key)
    post = _abduct(q, query.method, k_post, query.engine_kwargs)
    key, build = _plan(q, post, summary, k_world)
    program = compiled(key[0] + ("worlds",), lambda: build("worlds"), jit=False)
    return (q, post, key, build, program), k_world


def _validate(model, evidence, actions, num_samples, model_args, model_kwargs) -> _Query:
    """Check the evidence and actions against the model's sites (once, here), and
    settle how NaN/inf in the evidence is checked."""
    kwargs = dict(model_kwargs or {})
    args = tuple(model_args)
    action_list, single = action_dicts(actions)
    arg_split = split_static((args, kwargs), numbers_dynamic=False)
    state = model_state(model)
    info = info_for(model, args, kwargs, arg_split, state)
    # JAX arrays pass through validate unchanged, so a finiteness check is remembered
    traced = _any_tracer(evidence)
    rememberable = (
        not traced
        and isinstance(evidence, Mapping)
        and all(isinstance(v, jax.Array) for v in evidence.values())
    )
    evidence = validate(info, evidence, action_list)
    action_list = validate_actions(info, action_list)
    latents = latent_ancestors(info, evidence)
    # NaN/inf evidence is refused once per JAX array (they are immutable): checked
    # eagerly and remembered, so that the first and later queries on the same
    # evidence share one compiled program. Evidence converted from NumPy is new on
    # every query: its check is fused into the compiled program, which reads the
    # evidence anyway (unless an inference engine needs it checked first). Evidence
    # traced by an enclosing jit or vmap has no values to check: validate it before.
    check = not traced and not known_finite(evidence)
    if check and (latents or rememberable):
        check_finite(evidence)
        mark_finite(evidence)
        check = False
    if latents and (traced or _any_tracer((args, kwargs))):
        raise AbductionError(
            f"the latent site(s) {latents} need an inference engine, which decides on "
            "concrete values, but the evidence or the model arguments are traced (the "
            "query runs inside jax.jit, vmap or grad). Run this query outside the "
            "transformation; queries whose evidence fixes every noise term run inside."
        )
    return _Query(
        model,
        info,
        evidence,
        action_list,
        single,
        args,
        kwargs,
        arg_split,
        state,
        traced,
        check,
        latents,
        num_samples,
    )


def _abduct(q: _Query, requested: str, key, engine_kwargs) -> _Posterior:
    """The posterior of the latents by the chosen engine; with ``method="auto"``,
    NUTS when the Gaussian check fails and tempered SMC when the chains disagree."""
    method = choose_method(q.info, q.latents, requested, q.evidence)

    def infer(method):
        return posterior_latents(
            q.model,
            q.info,
            q.evidence,
            q.latents,
            method,
            rng_key=key,
            num_samples=q.num_samples,
            model_args=q.args,
            model_kwargs=q.kwargs,
            **engine_kwargs,
        )

    try:
        values = infer(method)
    except NotGaussian:
        if requested != "auto":
            raise
        method = "nuts"  # the static screen passed, the quadratic check did not
        values = infer(method)
    post = _Posterior(
        dict(values),
        getattr(values, "method", None) or method,
        getattr(values, "chains", 1),
        getattr(values, "diagnostics", {}),
    )
    if (
        post.diagnostics
        and requested == "auto"
        and post.method == "nuts"  # SMC moves continuous latents, summing discrete ones out
        and q.num_samples >= 50 * post.chains  # with fewer draws R-hat says little
        and max_r_hat(post.diagnostics) > R_HAT_SWITCH
    ):
        # the chains found different modes and cannot weigh them: tempered SMC can
        post = _Posterior(dict(infer("smc")), "smc")
    warn_unconverged(post.diagnostics, post.method)
    return post


def _plan(q: _Query, post: _Posterior, summary, k_world):
    """The cache key and the builder of the world program. Returns ``((base_key,
    act_key, act_dyn), build)``; ``build(output)`` makes the program of the worlds
    (``"worlds"``), of their noise (``"noise"``) or of the per-site evidence checks
    (``"checks"``, run only when the evidence was found impossible)."""
    unread = noise_unread(q.info, q.actions)
    runs = _runs(q, unread)
    act_dyn, act_key, act_rebuild = split_static(q.actions, numbers_dynamic=True)
    arg_dyn, arg_key, arg_rebuild = q.arg_split
    base_key = (
        "counterfactual",
        q.state,
        act_key,
        arg_key,
        signature((q.evidence, post.values)),  # act_key, arg_key hold the rest
        runs,
        q.num_samples,
        q.single,
        summary,
        q.check,
    )

    def build(output: str):
        # the noise output shows every site's noise, in as many runs as that takes
        skip, n_runs = (frozenset(), _runs(q, frozenset())) if output == "noise" else (unread, runs)
        bulk = _bulk_noise(q, post, n_runs)
        counted: list = []
        one = world_program(
            q.model, q.info, arg_rebuild, act_rebuild, len(q.actions), counted, skip
        )
        shapes, needs_keys = {}, True
        if bulk:  # noise shapes, and whether any key is still drawn, shape-only
            lat_one = jax.tree_util.tree_map(lambda a: a[0], post.values)
            example = (k_world, q.evidence, lat_one, act_dyn, arg_dyn)
            _, noise, _ = jax.eval_shape(one, *example)
            shapes = {n: noise[n] for n in sorted(bulk)}
            counted.clear()  # count the keys the run takes with the bulk noise given
            jax.eval_shape(one, *example, shapes)
            needs_keys = bool(counted)
        undrawn = _unread(q, shapes, summary)
        batched = _batched(q, post, one, n_runs, shapes, undrawn, needs_keys, summary, output)
        if not shapes:
            return jax.jit(batched)
        return _chained(_bulk_draw(bulk, shapes, undrawn, n_runs), batched)

    return (base_key, act_key, act_dyn), build


def _runs(q: _Query, unread: frozenset) -> int:
    """How many runs of the world program the samples take: one when every site is
    observed and its noise is either a function of its value (an invertible
    mechanism) or read by no world, and no action draws a value (no sampling
    error); else one per sample."""
    draws = any(isinstance(a, dist.Distribution) for w in q.actions for a in w.values())
    exact = not draws and all(
        (n in q.evidence or s.observed) and (s.exact or n in unread) for n, s in q.info.items()
    )
    return 1 if exact else q.num_samples


def _bulk_noise(q: _Query, post: _Posterior, runs: int) -> dict:
    """Sites that draw their noise (no factual value) from a parameter-free standard
    distribution: they get it in one bulk draw for all samples, as drawing per
    sample from per-sample PRNG keys costs several times more (a key split per site
    and sample)."""
    if runs == 1:
        return {}
    bulk = {}
    for n, s in q.info.items():
        if n in q.evidence or n in post.values or s.observed:
            continue
        mech = mechanisms.standard_noise_mechanism(s.family)
        if mech is not None:
            bulk[n] = mech
    return bulk


def _unread(q: _Query, shapes: dict, summary) -> set:
    """Bulk-noise sites whose noise is never read: a summary reads the
    counterfactual worlds only, so a site that each of them sets (by a value, not a
    function of its own value) takes its natural value in the unread factual world
    alone."""
    return {
        n
        for n in shapes
        if summary is not None
        and not _reads_factual(q.actions)
        and all(n in a and not reads_value(a[n]) for a in q.actions)
    }


def _bulk_draw(bulk: dict, shapes: dict, unread: set, runs: int):
    """The bulk noise draw of every site in ``shapes`` but the ``unread`` ones."""

    def draw(key):  # each site's stream is the same whether others are drawn or not
        key, k_bulk = jax.random.split(key)
        return key, {
            n: bulk[n]
            .sample_noise(jax.random.fold_in(k_bulk, i), (runs,) + s.shape)
            .astype(s.dtype)
            for i, (n, s) in enumerate(shapes.items())
            if n not in unread
        }

    return draw


def _batched(q: _Query, post: _Posterior, one, runs, shapes, unread, needs_keys, summary, output):
    """The world program over the samples (vmapped), with the evidence checks: one
    flag that the evidence is possible (a program's every output costs a few
    microseconds: the flag per site comes from the ``"checks"`` program, run on
    failure only), and NaN/inf when still unchecked."""
    lat_axis = 0 if post.values else None
    num_samples, single, check = q.num_samples, q.single, q.check

    def batched(key, ev, lat, act, argl, drawn=None):
        if unread:  # placeholders: XLA drops them with the factual world
            zeros = {n: jnp.zeros((runs,) + shapes[n].shape, shapes[n].dtype) for n in unread}
            drawn = {**drawn, **zeros}
        keys, key_axis = (jax.random.split(key, runs), 0) if needs_keys else (key, None)
        values, noise, checks = jax.vmap(
            one, in_axes=(key_axis, None, lat_axis, None, None, 0 if drawn else None)
        )(keys, ev, lat, act, argl, drawn)
        # evidence that is impossible under the model (outside a support, zero
        # likelihood): one flag per site, all samples
        possible = {n: jnp.all(c) for n, c in checks.items()}
        if output == "checks":
            return possible
        possible = jnp.all(jnp.stack(list(possible.values()))) if possible else None
        grow = lambda a: jnp.broadcast_to(a, (num_samples,) + a.shape[1:])  # noqa: E731
        if output == "noise":
            return jax.tree_util.tree_map(grow, noise)
        values = jax.tree_util.tree_map(grow, values)
        cf = {n: (v[:, 1] if single else v[:, 1:]) for n, v in values.items()}
        bad = (any_nonfinite(ev) if check else None, possible)
        if summary is not None:
            return summary[0](cf, *summary[1:]), bad
        factual = {n: v[:, 0] for n, v in values.items() if n not in ev}
        return cf, factual, bad

    return batched


def _chained(draw, batched):
    """The bulk draw as a program of its own, then the worlds: fused into the world
    program, XLA recomputes the noise transforms (the normal's inverse error
    function) for every world that reads them."""
    draw_jit, batched_jit = jax.jit(draw), jax.jit(batched)

    def chained(key, *rest):
        key, drawn = draw_jit(key)
        return batched_jit(key, *rest, drawn)

    return chained


def _check_finite(q: _Query, bad) -> None:
    """Raise on NaN/inf evidence found by the program (when it was still unchecked)."""
    if q.check:
        if bool(bad):
            check_finite(q.evidence)  # names the site and counts the bad values
        mark_finite(q.evidence)


def _check_possible(q: _Query, post: _Posterior, base_key, possible, per_site) -> None:
    """Raise on impossible evidence found by the program (``per_site()`` gives the
    flag of each site). Evidence found possible once stays so while the arrays it
    was read from are the same (JAX arrays are immutable) and nothing random enters
    the check (no latent ancestor): later queries on it skip reading the flag back."""
    if q.traced:
        return
    arg_dyn = q.arg_split[0]
    remember = None if q.latents else _possible_key(base_key, q.evidence, arg_dyn)
    if _known_possible(remember):
        return
    if not bool(possible):
        flags = {n: bool(v) for n, v in per_site().items()}
        raise_impossible(q.model, q.info, q.evidence, post.values, flags, q.args, q.kwargs)
    if remember is not None:
        _mark_possible(remember, q.evidence, arg_dyn)
