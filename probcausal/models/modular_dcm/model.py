"""The Modular-DCM model: one neural generator per observed variable of an ADMG,
one shared noise per bidirected edge, trained module by module with WGAN-GP."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from flax import nnx
from numpyro.handlers import block, substitute

from probcausal import nn as pnn
from probcausal.causal_model import CausalModel
from probcausal.errors import NotFittedError, OutOfSupportError, TrainingDataError
from probcausal.identification import ADMG, NotIdentifiableError, identify
from probcausal.infer.adversarial import WGANGP
from probcausal.models.modular_dcm.order import TrainingModule, training_modules
from probcausal.queries import counterfactual, interventional

__all__ = ["Continuous", "Discrete", "Image", "ModularDCM"]


@dataclass(frozen=True)
class Continuous:
    """A real variable: a scalar per unit, or a vector of ``dim`` values."""

    dim: int = 1

    @property
    def shape(self):
        return () if self.dim == 1 else (self.dim,)

    @property
    def features(self):
        return self.dim


@dataclass(frozen=True)
class Discrete:
    """A categorical variable with ``num_classes`` values (integer labels in data)."""

    num_classes: int

    @property
    def shape(self):
        return (self.num_classes,)

    @property
    def features(self):
        return self.num_classes


@dataclass(frozen=True)
class Image:
    """An image variable of shape ``(height, width, channels)``, values in [0, 1]."""

    shape: tuple

    @property
    def features(self):
        h, w, c = self.shape
        return h * w * c


class _Featurized(nnx.Module):
    """A critic that sees ``features[site](value)`` in place of some sites' values."""

    def __init__(self, critic, features, shapes):
        self.critic = critic
        self.features = features
        self.shapes = shapes

    def __call__(self, values):
        out = {}
        for n, v in values.items():
            if n in self.features:
                lead = v.shape[: v.ndim - len(self.shapes[n])]
                f = self.features[n](v.reshape((-1, *self.shapes[n])))
                v = f.reshape(lead + f.shape[1:])
            out[n] = v
        return self.critic(out)


def _edge_name(u, v) -> str:
    a, b = sorted((str(u), str(v)))
    return f"U_{a}_{b}"


class ModularDCM:
    """A deep causal generative model over an ADMG, learned module by module.

    Parameters
    ----------
    graph : ADMG
        The causal graph; each bidirected edge is a latent confounder, modelled as a
        noise vector shared by the generators of its two ends.
    variables : dict
        Variable -> :class:`Continuous`, :class:`Discrete` or :class:`Image`.
    noise_dim, confounder_dim : int
        Sizes of each variable's own noise and of each confounder's noise.
    hidden : tuple of int
        Hidden layers of the MLP generators.
    image_networks : {"conv", "mlp"}
        Generators and critics of image variables: convolutional
        (:class:`~probcausal.nn.ConvGenerator`, :class:`~probcausal.nn.ConvCritic`)
        or MLPs on the flattened pixels (cheaper for small images on a CPU).
    generators : dict, optional
        Variable -> a generator of your own, ``G(context, u)`` with
        ``context_features`` and ``noise_features`` attributes; the context is the
        parents' values (flattened, in the model's topological order) followed by
        the variable's confounder noises.
    seed : int
        Seed of the generators' initial weights.

    Examples
    --------
    >>> import probcausal as pc
    >>> from probcausal.models.modular_dcm import ModularDCM, Discrete
    >>> g = pc.ADMG(directed=[("D", "I"), ("I", "A")], bidirected=[("D", "A")])
    >>> dcm = ModularDCM(g, {"D": Discrete(3), "I": Discrete(2), "A": Discrete(2)})
    >>> [m.variables for m in dcm.modules()]
    [('I',), ('D', 'A')]
    """

    def __init__(
        self,
        graph: ADMG,
        variables: Mapping[str, Any],
        *,
        noise_dim: int = 4,
        confounder_dim: int = 4,
        hidden: tuple = (64, 64),
        image_networks: str = "conv",
        generators: Mapping[str, Any] | None = None,
        seed: int = 0,
    ):
        if image_networks not in ("conv", "mlp"):
            raise ValueError(f"image_networks must be 'conv' or 'mlp', got {image_networks!r}")
        self.image_networks = image_networks
        missing = [v for v in graph.nodes if v not in variables]
        if missing:
            raise ValueError(f"variables gives no type for {missing}; every node needs one")
        extra = sorted(map(str, set(generators or {}) - set(graph.nodes)))
        if extra:
            raise ValueError(f"generators names {extra}, which are no variables of the graph")
        self.graph = graph
        self.variables = dict(variables)
        self.order = graph.topological_order()
        self.confounder_dim = confounder_dim
        self.confounders = sorted({tuple(sorted((str(u), str(v)))) for u, v in graph.bi.edges})
        rngs = nnx.Rngs(seed)
        self.generators = {}
        for v in self.order:
            spec = self.variables[v]
            context = sum(self.variables[p].features for p in self._parents(v))
            context += confounder_dim * len(self._confounders_of(v))
            if generators and v in generators:
                gen = generators[v]
                size = getattr(gen, "context_features", context)
                if size != context:
                    raise ValueError(
                        f"the generator given for '{v}' takes context_features={size}, but "
                        f"'{v}' has {context} context features (its parents "
                        f"{self._parents(v)} and {len(self._confounders_of(v))} confounder "
                        f"noises of size {confounder_dim})"
                    )
            elif isinstance(spec, Image) and image_networks == "conv":
                gen = pnn.ConvGenerator(context, noise_dim, image_shape=spec.shape, rngs=rngs)
            elif isinstance(spec, Image):
                gen = pnn.MLPGenerator(
                    context,
                    noise_dim,
                    out_shape=spec.shape,
                    hidden=hidden,
                    output=jax.nn.sigmoid,
                    rngs=rngs,
                )
            else:
                gen = pnn.MLPGenerator(
                    context, noise_dim, out_shape=spec.shape, hidden=hidden, rngs=rngs
                )
            self.generators[v] = gen
        self.params: dict = {}  # written by fit
        self._trained = None  # the model with self.params, one object per fit
        #: per trained module: jit compile seconds and steady-state steps per second
        self.timings: dict = {}

    def _parents(self, v):
        index = {n: i for i, n in enumerate(self.order)}
        return sorted(self.graph.parents(v), key=index.__getitem__)

    def _confounders_of(self, v):
        return [e for e in self.confounders if str(v) in e]

    def model(self):
        """The causal model of one unit (a NumPyro program): confounder noises,
        then each variable from its generator."""
        shared = {
            e: numpyro.sample(
                _edge_name(*e), dist.Normal(jnp.zeros(self.confounder_dim), 1.0).to_event(1)
            )
            for e in self.confounders
        }
        values = {}
        for v in self.order:
            spec = self.variables[v]
            parents = [values[p] for p in self._parents(v)]
            dims = [len(self.variables[p].shape) for p in self._parents(v)]
            noises = [shared[e] for e in self._confounders_of(v)]
            values[v] = pnn.sample(
                v,
                self.generators[v],
                *parents,
                *noises,
                event_dims=(*dims, *(1,) * len(noises)),
                num_classes=spec.num_classes if isinstance(spec, Discrete) else None,
            )
        return values

    def generator(self, variable) -> nnx.Module:
        """The generator of ``variable`` as a Flax NNX module holding its trained
        weights (a copy: e.g. to plug it into another model, frozen)."""
        gen = self.generators[variable]
        if isinstance(gen, pnn.Frozen):
            return nnx.merge(gen.graphdef, gen.state)
        return pnn.with_params(gen, self.params.get(f"{variable}_net$params"))

    def modules(self, pretrained=()) -> list[TrainingModule]:
        """The training modules in order (see :func:`training_modules`)."""
        return training_modules(self.graph, pretrained)

    def encode(self, data: Mapping[str, Any], kind: str = "data") -> dict:
        """Data as the model's site values: discrete labels become one-hot.

        Labels of a discrete variable must be integers in ``0 .. num_classes - 1``
        (integral floats are accepted); anything else raises
        :class:`~probcausal.errors.TrainingDataError` (``kind="data"``) or
        :class:`~probcausal.errors.OutOfSupportError` (``kind="intervention"``).
        """
        if not isinstance(data, Mapping):
            raise TrainingDataError(
                f"{kind} must be a dict variable -> array, got {type(data).__name__}"
            )
        out = {}
        for v, a in data.items():
            spec = self.variables.get(v)
            if spec is None:
                raise TrainingDataError(
                    f"{kind} has '{v}', which is no variable of the graph; its variables are "
                    f"{sorted(map(str, self.variables))}"
                )
            if isinstance(spec, Discrete):
                a = _labels(v, a, spec.num_classes, kind)
                out[v] = pnn.one_hot(a, spec.num_classes)
            else:
                a = jnp.asarray(a)
                if kind == "data" and not bool(jnp.all(jnp.isfinite(a))):
                    count = int(jnp.sum(~jnp.isfinite(a)))
                    raise TrainingDataError(
                        f"data for '{v}' hold {count} NaN or infinite value(s); drop or "
                        "impute those rows before training"
                    )
                out[v] = a
        return out

    def _critic(self, sites, seed, pack=1, features=None):
        features = {s: f for s, f in (features or {}).items() if s in sites}
        if features:
            sizes = {}
            for s, f in features.items():
                probe = jnp.zeros((1, *self.variables[s].shape))
                sizes[s] = int(np.prod(jax.eval_shape(f, probe).shape[1:]))
            rest = sum(self.variables[s].features for s in sites if s not in features)
            critic = pnn.Critic(pack * (rest + sum(sizes.values())), rngs=nnx.Rngs(seed))
            shapes = {s: self.variables[s].shape for s in features}
            return _Featurized(critic, features, shapes)
        images = [s for s in sites if isinstance(self.variables[s], Image)]
        if len(images) > 1:
            raise NotImplementedError(f"one image per module, got {images}")
        rngs = nnx.Rngs(seed)
        if images and self.image_networks == "conv":
            if pack > 1:
                raise ValueError("pack > 1 needs MLP critics: pass image_networks='mlp'")
            rest = sum(self.variables[s].features for s in sites if s not in images)
            return pnn.ConvCritic(
                images[0], self.variables[images[0]].shape, context_features=rest, rngs=rngs
            )
        return pnn.Critic(pack * sum(self.variables[s].features for s in sites), rngs=rngs)

    def fit(
        self,
        data: Mapping[str, Any],
        *,
        steps: int,
        rng_key: jax.Array,
        pretrained: Mapping[str, nnx.Module] | None = None,
        batch_size: int = 256,
        n_critic: int = 5,
        pack: int = 1,
        critic_features: Mapping[str, Any] | None = None,
        learning_rate: float = 1e-4,
        checkpoint_dir: str | None = None,
        resume: bool = False,
        progress: bool = True,
        mesh=None,
        train=None,
    ) -> dict:
        """Train the modules in order, each by WGAN-GP for ``steps`` steps, matching
        ``P(matched | do(do_parents))`` with the do-parents clamped to data and the
        earlier modules frozen. ``pretrained`` maps variables (each its own
        c-component) to trained generators plugged in frozen.

        ``pack`` samples make one critic input (PacGAN, as the paper's critics;
        against mode dropping). ``critic_features`` maps variables (images) to
        fixed differentiable functions ``f(values (n, *shape)) -> (n, k)``: critics
        compare ``f(value)`` instead of the raw value, so a module downstream of a
        pretrained generator is matched on what its mechanisms read from the
        image (a classifier's probabilities, say), not on how realistic the
        pretrained images are. ``train`` limits training to the modules holding
        these variables (default: every module); the others keep their current
        parameters.

        Returns the metrics of each trained module, keyed by its variables.
        """
        pretrained = dict(pretrained or {})
        if train is not None:
            train = {train} if isinstance(train, str) else set(train)
            unknown = sorted(map(str, train - set(self.order)))
            if unknown:
                raise ValueError(f"train names {unknown}, which are no variables of the graph")
        for v, module in pretrained.items():
            self.generators[v] = pnn.Frozen(module)
        data = self.encode(data)
        missing = [v for v in self.order if v not in data and v not in pretrained]
        if missing:
            raise TrainingDataError(
                f"the data lack the variable(s) {missing} of the graph; every variable "
                "without a pretrained generator needs a column (n, *shape)"
            )
        self._trained = None  # the parameters change: queries rebuild the trained model

        # decaying steps let the adversarial game settle instead of oscillating;
        # the critic's optimizer counts n_critic updates per step
        def adam(updates):
            schedule = optax.cosine_decay_schedule(learning_rate, updates, alpha=0.05)
            return optax.adam(schedule, b1=0.5, b2=0.9)

        history = {}
        for i, module in enumerate(self.modules(pretrained)):
            if module.pretrained or (train is not None and not train & set(module.variables)):
                continue
            trainable = {f"{v}_net$params" for v in module.variables}
            others = [
                f"{v}_net$params"
                for v in self.order
                if f"{v}_net$params" not in trainable and v not in pretrained
            ]
            fixed = block(substitute(self.model, data=self.params), hide=others)
            sites = tuple(module.matches) + tuple(module.do_parents)
            gan = WGANGP(
                fixed,
                {sites: self._critic(sites, i, pack, critic_features)},
                conditions=tuple(module.do_parents),
                generator_optimizer=adam(steps),
                critic_optimizer=adam(steps * n_critic),
                n_critic=n_critic,
                batch_size=batch_size,
                pack=pack,
            )
            result = gan.fit(
                {s: data[s] for s in sites},
                steps,
                rng_key=jax.random.fold_in(rng_key, i),
                progress=progress,
                description=f"module {'+'.join(map(str, module.variables))}",
                checkpoint_dir=None
                if checkpoint_dir is None
                else os.path.join(os.path.abspath(checkpoint_dir), f"module_{i}"),
                resume=resume,
                mesh=mesh,
            )
            self.params.update(result.params)
            history[module.variables] = result.metrics
            self.timings[module.variables] = {
                "compile_seconds": result.compile_seconds,
                "steps_per_second": result.steps_per_second,
            }
        return history

    def interventional(
        self,
        actions: Mapping[str, Any],
        *,
        rng_key: jax.Array,
        num_samples: int = 1000,
        outcome=None,
        allow_unidentifiable: bool = False,
    ) -> dict:
        """Samples of the variables under ``do(actions)`` from the trained model.

        The query ``P(outcome | do(actions))`` (default outcome: every other
        variable) is first checked with :func:`probcausal.identify`; a
        non-identifiable one raises :class:`~probcausal.NotIdentifiableError`
        unless ``allow_unidentifiable=True``. Discrete values are integer labels.
        """
        self._check_query(actions, outcome, allow_unidentifiable)
        draws = interventional(
            self._trained_model(),
            self.encode(actions, kind="intervention"),
            rng_key=rng_key,
            num_samples=num_samples,
        )
        return self._labels(draws)

    def causal_model(self) -> CausalModel:
        """The trained model as a :class:`~probcausal.CausalModel` of one unit, for
        every core query: ``pc.interventional``, ``pc.counterfactual``, ``pc.ate``,
        ``pc.mediation``, ``pc.to_inference_data``. Its sites are the variables (a
        discrete one valued as a one-hot vector, :func:`probcausal.nn.one_hot`; act
        on it with one), each generator's noise and Gumbel sites, and the shared
        confounder noises. The core queries do not check identifiability: use
        :meth:`interventional` / :meth:`counterfactual` for that, and for labels."""
        return CausalModel(self._trained_model())

    def _trained_model(self):
        """The model with the trained parameters, the same object between fits so
        that queries reuse their compiled programs."""
        untrained = [v for v in self.order if not isinstance(self.generators.get(v), pnn.Frozen)]
        if untrained and not self.params:  # a partial fit (``train=``) may be queried
            raise NotFittedError(
                f"the mechanisms of {untrained} are not trained yet: call "
                "`m.fit(data, steps=..., rng_key=...)` before querying (or plug in "
                "trained generators with `fit(..., pretrained={...})`)"
            )
        if self._trained is None:
            self._trained = substitute(self.model, data=self.params)
        return self._trained

    def _check_query(self, actions, outcome, allow_unidentifiable):
        """Check ``P(outcome | do(actions))`` (default outcome: every other
        variable) with :func:`probcausal.identify`."""
        if outcome is None:
            outcome = [v for v in self.order if v not in actions]
        outcome = [outcome] if isinstance(outcome, str) else list(outcome)
        if not actions or allow_unidentifiable:
            return
        try:
            identify(self.graph, list(actions), outcome)
        except NotIdentifiableError as e:
            e.add_note(
                "The trained model would answer it arbitrarily; pass "
                "allow_unidentifiable=True to sample it anyway."
            )
            raise

    def _labels(self, draws):
        return {
            v: jnp.argmax(draws[v], -1) if isinstance(self.variables[v], Discrete) else draws[v]
            for v in self.order
            if v in draws
        }

    def counterfactual(
        self,
        evidence: Mapping[str, Any],
        actions: Mapping[str, Any],
        *,
        rng_key: jax.Array,
        num_samples: int = 1000,
        outcome=None,
        max_draws: int = 1_000_000,
        allow_unidentifiable: bool = False,
    ) -> dict:
        """Samples of the variables in the world ``do(actions)`` of units whose
        factual values match ``evidence`` (discrete variables, integer labels):
        :func:`probcausal.counterfactual` on the trained model, the posterior of
        the exogenous noise (own and shared) by rejection, both worlds sharing it.
        For example ``counterfactual({"D": 0}, {"D": 2}, ...)`` samples
        ``Y_{D=2} | D = 0`` (the effect of treatment on the treated).

        Counterfactual identification (ID*) is not checked: the interventional part
        ``P(outcome | do(actions))`` is, as a necessary condition. The answer is the
        true one when the counterfactual is identifiable (such as the effect of
        treatment on the treated in a front-door graph).
        """
        continuous = [v for v in evidence if not isinstance(self.variables.get(v), Discrete)]
        if continuous:
            raise ValueError(
                f"counterfactual evidence must be on discrete variables (matched exactly "
                f"by rejection); {continuous} are not discrete"
            )
        self._check_query(actions, outcome, allow_unidentifiable)
        cf = counterfactual(
            self._trained_model(),
            self.encode(evidence),
            self.encode(actions, kind="intervention"),
            rng_key=rng_key,
            num_samples=num_samples,
            method="rejection",
            max_draws=max_draws,
        )
        return self._labels(cf)


def _labels(name: str, labels, num_classes: int, kind: str) -> jax.Array:
    """Integer class labels of a discrete variable, checked."""
    a = np.asarray(labels)
    if a.dtype == bool:
        a = a.astype(np.int32)
    if not np.issubdtype(a.dtype, np.number):
        raise TrainingDataError(f"{kind} for '{name}' are {a.dtype} values, not class labels")
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(a) | (a != np.round(a)) | (a < 0) | (a >= num_classes)
    if bad.any():
        value = a.ravel()[int(np.argmax(bad.ravel()))]
        if kind == "intervention":
            raise OutOfSupportError(
                kind, name, value.item(), f"the integers 0, ..., {num_classes - 1}"
            )
        raise TrainingDataError(
            f"data for the discrete variable '{name}' hold {int(bad.sum())} value(s) that "
            f"are not class labels 0..{num_classes - 1} (the first: {value.item()!r}): NaN, "
            "negative, fractional or too large labels would become all-zero one-hot "
            "vectors and train silently. Recode the labels, or declare more classes."
        )
    return jnp.asarray(a.astype(np.int32))
