"""Exceptions raised by probcausal.

Every exception names what was wrong (a site, a shape, a plate, a family), where,
and how to fix it. Each class is documented in ``docs/errors.md`` and each message
is pinned by a test.
"""

from __future__ import annotations

__all__ = [
    "CyclicGraphError",
    "NotGaussian",
    "NotIdentifiableError",
    "PretrainedMechanismError",
    "AbductionError",
    "ConvergenceWarning",
    "DiscoveryDataError",
    "DeterministicEvidenceError",
    "EvidenceShapeError",
    "ImpossibleEvidenceError",
    "InterventionShapeError",
    "InvalidEvidenceError",
    "MissingMechanismError",
    "NotFittedError",
    "OutOfSupportError",
    "ProbcausalError",
    "SeedRequiredError",
    "TrainingDivergedError",
    "TrainingDataError",
    "EstimandDataError",
    "UnknownNodeError",
    "UnknownSiteError",
    "UnsupportedQueryError",
    "WorldDimError",
    "WorldInferenceError",
    "WorldShapeError",
]


class ProbcausalError(Exception):
    """Base class of every error raised by probcausal."""


class UnknownSiteError(ProbcausalError, ValueError):
    """An action or an evidence entry names a site the model does not have."""

    def __init__(self, kind: str, unknown, known, why: str = ""):
        self.unknown = sorted(unknown)
        self.known = sorted(known)
        super().__init__(
            f"{kind} name(s) {self.unknown} are not sample sites of the model"
            + (f": {why}. " if why else ". ")
            + f"The model's sites are {self.known}; check the spelling, or the "
            "model arguments that decide which sites exist."
        )


class EvidenceShapeError(ProbcausalError, ValueError):
    """Evidence for a site does not have the site's shape."""

    def __init__(self, site: str, got, expected):
        self.site = site
        super().__init__(
            f"evidence for site '{site}' has shape {tuple(got)}, but the site has shape "
            f"{tuple(expected)}. Pass one value per element of the site (reshape the "
            "array, or check the plate sizes given to the model)."
        )


class InterventionShapeError(ProbcausalError, ValueError):
    """An intervention value does not broadcast to the site it is applied to."""

    def __init__(self, site: str, got, expected, plates=(), hint: str = ""):
        self.site = site
        plate_txt = ""
        if plates:
            plate_txt = " inside plate(s) " + ", ".join(
                f"'{name}' (size {size}, dim {dim})" for name, size, dim in plates
            )
        super().__init__(
            f"intervention on site '{site}'{plate_txt} has shape {tuple(got)}, which does "
            f"not broadcast to the site's shape {tuple(expected)}. "
            + (hint or "Give one value per plate element, or a scalar for all of them.")
        )


class InvalidEvidenceError(ProbcausalError, ValueError):
    """Evidence holds NaN or infinite values."""

    def __init__(self, site: str, count: int):
        self.site = site
        super().__init__(
            f"evidence for site '{site}' holds {count} NaN or infinite value(s). "
            "Remove those units, or leave the site out of the evidence to treat it as "
            "unobserved."
        )


class ImpossibleEvidenceError(ProbcausalError, ValueError):
    """Evidence has probability zero under the model: a value outside its site's
    support, or one the site's distribution gives zero probability."""

    def __init__(self, site: str, value, reason: str, index=None):
        self.site = site
        self.value = value
        where = f" at index {tuple(index)}" if index is not None and len(index) else ""
        super().__init__(
            f"evidence for site '{site}'{where} is {value!r}, which {reason}, so the "
            "evidence is impossible under the model and no counterfactual is defined. "
            "Check the data (coding of classes, units, counts), or the model's "
            "parameters at that site."
        )


class OutOfSupportError(ProbcausalError, ValueError):
    """An intervention or evidence value lies outside the values its site can take
    (a class index past the last class, a non-integer count)."""

    def __init__(self, kind: str, site: str, value, support: str):
        self.site = site
        self.value = value
        super().__init__(
            f"{kind} value {value!r} for site '{site}' lies outside the site's support, "
            f"{support}. Give a value the site can take"
            + (" (class indices start at 0)." if "integers" in support or "{" in support else ".")
        )


class DeterministicEvidenceError(ProbcausalError, ValueError):
    """Evidence names a ``numpyro.deterministic`` site."""

    def __init__(self, site: str, inputs=()):
        self.site = site
        hint = f" (it is computed from {sorted(inputs)})" if inputs else ""
        super().__init__(
            f"site '{site}' is a numpyro.deterministic site{hint}: its value is a "
            "function of other sites and has no noise of its own, so it cannot be "
            "conditioned on directly. Observe the sample sites it is computed from, or "
            "make it a sample site with a noise distribution (for a measurement, "
            "`numpyro.sample(name, dist.Normal(value, sigma), obs=...)`)."
        )


class MissingMechanismError(ProbcausalError, TypeError):
    """A site's distribution family has no registered noise mechanism."""

    def __init__(self, site: str | None, family: str):
        self.site = site
        where = f"site '{site}' uses" if site else "got"
        super().__init__(
            f"{where} distribution family {family}, which has no noise mechanism, so its "
            "exogenous noise cannot be made explicit. Register one with "
            f"`probcausal.mechanisms.register({family}, MyMechanism())`, where MyMechanism "
            "subclasses `probcausal.mechanisms.Mechanism`."
        )


class WorldDimError(ProbcausalError, ValueError):
    """The world dimension collides with a plate of the model."""

    def __init__(self, site: str, world_dim: int, plate_dims):
        self.site = site
        super().__init__(
            f"site '{site}' sits in plates using dims {sorted(plate_dims)}, which reach the "
            f"world dimension {world_dim}. Pass `world_dim` further left (for example "
            f"world_dim={min(plate_dims) - 1}), or wrap the model, `TwinWorld(model)`, "
            "which allocates the world dimension automatically."
        )


class SeedRequiredError(ProbcausalError, ValueError):
    """A handler needs random numbers but no ``numpyro.handlers.seed`` is active."""

    def __init__(self, site: str, what: str):
        self.site = site
        super().__init__(
            f"site '{site}' needs a PRNG key to {what}, but no `numpyro.handlers.seed` "
            "handler is active. Wrap the model in `numpyro.handlers.seed(model, rng_seed=0)`, "
            "or use the query functions (`pc.counterfactual`, `pc.interventional`), which "
            "take `rng_key`."
        )


class AbductionError(ProbcausalError, ValueError):
    """The requested abduction engine cannot handle the model and evidence."""


class TrainingDivergedError(ProbcausalError, FloatingPointError):
    """A loss or a parameter became NaN or infinite during training.

    ``step`` is the first step at fault and ``last_checkpoint`` the last step
    saved before it (``None`` without checkpoints); ``fit(..., resume=True)``
    continues from that checkpoint.
    """

    def __init__(self, message: str, step: int, last_checkpoint: int | None):
        super().__init__(message)
        self.step = step
        self.last_checkpoint = last_checkpoint


class TrainingDataError(ProbcausalError, ValueError):
    """Training data do not match the model: a missing site, a shape, a length."""


class DiscoveryDataError(ProbcausalError, ValueError):
    """Data or intervention targets given to :func:`probcausal.discover` are
    malformed: a shape, a NaN, an unknown target."""


class UnsupportedQueryError(ProbcausalError, ValueError):
    """The question has no meaningful answer for this model (a probability of
    causation on a continuous outcome)."""


class UnknownNodeError(ProbcausalError, ValueError):
    """A graph query names a node the graph does not have."""

    def __init__(self, unknown, known):
        self.unknown = sorted(map(str, unknown))
        super().__init__(
            f"node(s) {self.unknown} are not in the graph; its nodes are "
            f"{sorted(map(str, known))}. Check the spelling, or add the node to the graph."
        )


class EstimandDataError(ProbcausalError, ValueError):
    """Data given to ``Estimand.evaluate`` lack a variable or hold missing values."""


class NotFittedError(ProbcausalError, ValueError):
    """A research system was queried before ``fit``."""


class WorldShapeError(ProbcausalError, ValueError):
    """Model code mixed the batch ``world`` dimension of ``TwinWorld`` /
    ``MultiWorld`` into a site's event or plate dimensions."""

    def __init__(self, site: str, got=None, expected=None, world_dim: int = -1, cause=""):
        self.site = site
        shapes = (
            f"has batch shape {tuple(got[0])} and event shape {tuple(got[1])} under the "
            f"world handler, where the model without worlds gives batch shape "
            f"{tuple(expected[0])} and event shape {tuple(expected[1])}"
            if got is not None
            else f"fails under the world handler ({cause})"
        )
        subject = (
            f"site '{site}'" if got is not None else f"the model's code at or after site '{site}'"
        )
        super().__init__(
            f"{subject} {shapes}: the model's code mixed the world dimension (a batch "
            f"dimension at dim {world_dim}, left of every plate) into the site's event or "
            "plate dimensions, as `a * jnp.ones(2)` or `jnp.stack([a, -a])` do on a parent "
            "that carries it, and its counterfactuals would be wrong. Broadcast against "
            "batch dimensions (`a[..., None] * jnp.ones(2)`, `jnp.stack([a, -a], -1)`), or "
            "use the query functions (`pc.counterfactual`, `pc.interventional`), which run "
            "each world as a plain run of the model and need no such care."
        )


class ConvergenceWarning(UserWarning):
    """MCMC chains of an abduction disagree (split R-hat above 1.01)."""


class WorldInferenceError(ProbcausalError, ValueError):
    """MCMC or SVI was run on a model under ``TwinWorld`` / ``MultiWorld``."""

    def __init__(self, site: str):
        self.site = site
        super().__init__(
            f"an inference algorithm (MCMC or SVI) is initialising site '{site}' of a model "
            "under TwinWorld / MultiWorld: it would treat each site's world-batched value "
            "as one latent, with an improper density along the counterfactual worlds. Run "
            "inference on the observational model conditioned on the evidence, and ask "
            "counterfactual questions with `pc.counterfactual`, which abducts the noise "
            "itself."
        )


class CyclicGraphError(ProbcausalError, ValueError):
    """The directed part of a graph has a cycle."""

    def __init__(self, cycle):
        self.cycle = list(cycle)
        path = " -> ".join(str(u) for u, _ in self.cycle) + f" -> {self.cycle[0][0]}"
        super().__init__(
            f"the directed edges form a cycle: {path}. An ADMG must be acyclic; remove "
            "or reverse one of these edges (a feedback loop over time needs time-indexed "
            "variables)."
        )


class NotIdentifiableError(ProbcausalError, ValueError):
    """The causal query is not identifiable; ``hedge`` holds the two C-forests."""

    def __init__(self, treatment, outcome, forest, sub_forest):
        self.hedge = (set(forest), set(sub_forest))
        ys, xs = ", ".join(sorted(map(str, outcome))), ", ".join(sorted(map(str, treatment)))
        super().__init__(
            f"P({ys} | do({xs})) is not identifiable: the C-forests "
            f"F = {sorted(map(str, forest))} and "
            f"F' = {sorted(map(str, sub_forest))} form a hedge (both are districts with the "
            "same root set, F' inside F, and the treatment meets F but not F'). Measure a "
            "variable that breaks the confounding, or ask for a different query."
        )


class PretrainedMechanismError(ProbcausalError, ValueError):
    """A pretrained generator is offered for a variable that shares a latent
    confounder with another: P(v | pa(v)) is then not its mechanism."""


class NotGaussian(AbductionError):
    """The log density is not quadratic in the latent sites (the ``"gaussian"``
    engine cannot serve; ``method="auto"`` then runs another)."""
