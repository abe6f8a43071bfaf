"""CausalVAE as a NumPyro program, its fit and its causal model.

The generative model, per image: exogenous noise ``ε ~ N(0, I)`` for the ``n``
concepts (and ``style_dim`` free latents); the concepts in standardized label
units from the causal layer ``z = f(z) + σ ∘ ε`` (:mod:`.layers`); the labels as
readings of the concepts, ``u ~ N(z, τ²)``; the image ``x ~ N(decoder(z, style),
σ_x²)``. The labels also fit the concept SCM directly, ``u_j ~ N(f_j(u), σ_j²)``
(the paper's label-SCM term), and the acyclicity ``H(A)`` of the mechanisms'
weighted adjacency is held at zero by an augmented Lagrangian whose multiplier
and penalty are updated every ``dual_every`` steps. The encoder ``q(ε | x)`` is
amortized; the ELBO's KL term is weighted by ``kl_weight`` and the label term by
``label_weight`` (the paper's α and β).

The concept graph is learned, never given at the truth: from the labels first
(:func:`~.discovery.learn_label_graph`), whose edges are the mechanisms' allowed
parents, with ``A`` started at zero and refined jointly with the images (an edge
whose weight stays below ``edge_threshold`` is dropped); ``graph="free"`` lets
every off-diagonal edge in and leaves the structure to the augmented Lagrangian
alone (the paper's objective, a baseline); an adjacency matrix fixes the support.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from flax import nnx
from numpyro import handlers
from numpyro.contrib.module import nnx_module
from numpyro.infer import SVI, Trace_ELBO

from probcausal.causal_model import CausalModel
from probcausal.errors import AbductionError, NotFittedError, TrainingDataError
from probcausal.infer.training import fit as run_fit
from probcausal.models.causal_vae.discovery import LabelGraph, learn_label_graph
from probcausal.models.causal_vae.layers import ConceptMechanisms, acyclicity, solve_concepts
from probcausal.nn import MLP, Encoder, with_params
from probcausal.queries import counterfactual

__all__ = ["CausalVAE", "causal_vae_model", "causal_vae_guide"]


class ImageDecoder(nnx.Module):
    """``(concepts, style) -> image`` in ``[0, 1]``: one MLP over every latent, or
    one MLP per part (a tuple of latent indices) whose logits are added to a
    learned background before the sigmoid, so that each part of the image is
    drawn from its own concepts. ``with_overlap`` also returns the sum of the
    parts' absolute logits per image (the penalty of ``part_sparsity``)."""

    def __init__(self, latent: int, image_shape, *, hidden, parts=None, rngs: nnx.Rngs):
        self.image_shape = tuple(image_shape)
        size = math.prod(image_shape)
        self.parts = None if parts is None else tuple(tuple(int(i) for i in p) for p in parts)
        if self.parts is None:
            self.net = MLP(latent, size, hidden=tuple(hidden), rngs=rngs)
        else:
            self.nets = nnx.List(
                [MLP(len(p), size, hidden=tuple(hidden), rngs=rngs) for p in self.parts]
            )
            self.background = nnx.Param(jnp.zeros((size,)))

    def __call__(self, z, with_overlap: bool = False):
        overlap = jnp.zeros(z.shape[:-1])
        if self.parts is None:
            logits = self.net(z)
        else:
            own = [net(z[..., list(p)]) for net, p in zip(self.nets, self.parts, strict=True)]
            logits = self.background.value + sum(own)
            overlap = sum(jnp.sum(jnp.abs(o), -1) for o in own)
        image = jax.nn.sigmoid(logits).reshape(z.shape[:-1] + self.image_shape)
        return (image, overlap) if with_overlap else image


def causal_vae_model(
    x,
    labels,
    dual,
    *,
    mechanisms,
    decoder,
    encoder,
    style_dim: int,
    kl_weight: float,
    label_weight: float,
    label_noise: float,
    scm_weight: float,
    sparsity: float,
    batch_size: int,
    part_sparsity: float = 0.0,
):
    """The training program: ``x`` ``(rows, *image)``, ``labels`` ``(rows, n)``
    standardized, ``dual = (λ, ρ)`` of the augmented Lagrangian.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> from flax import nnx
    >>> from numpyro import handlers
    >>> from probcausal.models.causal_vae.layers import ConceptMechanisms
    >>> from probcausal.models.causal_vae.model import ImageDecoder
    >>> mech = ConceptMechanisms(np.array([[0, 1], [0, 0]]), rngs=nnx.Rngs(0))
    >>> dec = ImageDecoder(2, (4, 4, 1), hidden=(8,), rngs=nnx.Rngs(1))
    >>> kw = dict(mechanisms=mech, decoder=dec, encoder=None, style_dim=0, kl_weight=0.3,
    ...           label_weight=10.0, label_noise=0.1, scm_weight=1.0, sparsity=1e-3,
    ...           batch_size=3)
    >>> x, u = jnp.full((5, 4, 4, 1), 0.5), jnp.zeros((5, 2))
    >>> tr = handlers.trace(handlers.seed(causal_vae_model, 0)).get_trace(x, u, (0.0, 1.0), **kw)
    >>> tr["eps"]["value"].shape, tr["x"]["value"].shape, tr["labels"]["is_observed"]
    ((3, 2), (3, 4, 4, 1), True)
    """
    n = labels.shape[-1]
    mech = nnx_module("mechanisms", mechanisms)
    dec = nnx_module("decoder", decoder)
    log_sigma = numpyro.param("log_sigma", jnp.full((n,), -1.0, labels.dtype))
    log_x_noise = numpyro.param("log_sigma_x", jnp.log(jnp.asarray(0.1, x.dtype)))
    sigma = jnp.exp(log_sigma)
    rows = x.shape[0]
    with numpyro.plate("rows", rows, subsample_size=min(batch_size, rows)) as idx:
        u = labels[idx]
        pred_u, a = mech(u)
        with handlers.scale(scale=scm_weight):
            numpyro.sample("label_scm", dist.Normal(pred_u, sigma).to_event(1), obs=u)
        with handlers.scale(scale=kl_weight):
            eps = numpyro.sample("eps", dist.Normal(0.0, 1.0).expand([n + style_dim]).to_event(1))
        z = solve_concepts(lambda v: mech(v), sigma * eps[..., :n], n)
        with handlers.scale(scale=label_weight):
            numpyro.sample("labels", dist.Normal(z, label_noise).to_event(1), obs=u)
        image, overlap = dec(jnp.concatenate([z, eps[..., n:]], -1), True)
        numpyro.factor("part_sparsity", -part_sparsity * overlap)
        numpyro.sample(
            "x", dist.Normal(image, jnp.exp(log_x_noise)).to_event(x.ndim - 1), obs=x[idx]
        )
    h = acyclicity(a)
    lam, rho = dual
    numpyro.factor("acyclicity", -(lam * h + 0.5 * rho * h**2) - sparsity * jnp.sum(jnp.abs(a)))


def causal_vae_guide(x, labels, dual, *, encoder, style_dim, kl_weight, batch_size, **_):
    """``q(ε | x)`` from the amortized encoder (the arguments of
    :func:`causal_vae_model`).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from numpyro import handlers
    >>> from probcausal.nn import Encoder
    >>> enc = Encoder(16, 2, hidden=(8,), rngs=nnx.Rngs(0))
    >>> x, u = jnp.full((5, 4, 4, 1), 0.5), jnp.zeros((5, 2))
    >>> tr = handlers.trace(handlers.seed(causal_vae_guide, 0)).get_trace(
    ...     x, u, (0.0, 1.0), encoder=enc, style_dim=0, kl_weight=0.3, batch_size=3)
    >>> tr["eps"]["value"].shape
    (3, 2)
    """
    enc = nnx_module("encoder", encoder)
    rows = x.shape[0]
    with numpyro.plate("rows", rows, subsample_size=min(batch_size, rows)) as idx:
        xi = x[idx]
        loc, scale = enc(xi.reshape(xi.shape[0], -1))
        with handlers.scale(scale=kl_weight):
            numpyro.sample("eps", dist.Normal(loc, scale).to_event(1))


class CausalVAE:
    """CausalVAE: a VAE whose latent concepts follow a learned causal graph,
    supervised by concept labels, with ``do`` on concepts through the core.

    Parameters
    ----------
    concepts : sequence of str
        The names of the labelled concepts (the columns of ``labels``); they
        become the causal model's sites.
    graph : {"learn", "free"} or array
        ``"learn"``: the graph of the labels (:func:`learn_label_graph`), refined
        jointly; ``"free"``: every edge allowed, only the acyclicity constraint;
        an ``(n, n)`` 0/1 matrix: the allowed edges.
    mechanism : {"mlp", "linear"}
        The concepts' mechanisms: per-concept networks or the linear layer.
    style_dim : int
        Latent dimensions beside the concepts (roots, not labelled).
    hidden : sequence of int
        Hidden sizes of the encoder and decoder.
    kl_weight, label_weight : float
        α and β of the paper's loss.
    label_noise : float
        τ, the standard deviation of a label around its concept (standardized).
    steps_per_dual : int
        Steps between the augmented Lagrangian's multiplier updates.
    decoder_parts : None, "concepts" or sequence of sequences of str
        ``None``: one decoder network over every latent. Otherwise the image's
        logits are a sum of one network per part, each reading only its
        concepts: ``"concepts"`` gives each concept its own (the paper's
        separate decoders), a partition such as ``[("theta",), ("phi",),
        ("length", "mid")]`` groups the concepts that draw one object. When a
        concept is an exact function of its parents in the training images,
        only parts let ``do`` on it move its own object.
    part_sparsity : float
        With parts, the weight per pixel of an L1 penalty on each part's logits
        (against a shared background): a pixel is then drawn by one part, not
        by every part that could predict it. At 0 a part whose concepts
        determine another object's (the shadow determines the pendulum) draws
        some of it, and ``do`` on it moves that object too.
    pretrain_steps : int
        Steps of fitting the mechanisms to the labels alone before the joint fit
        (when the allowed graph is acyclic; ``graph="free"`` starts them cold).

    Examples
    --------
    >>> import jax, numpy as np
    >>> import probcausal as pc
    >>> from probcausal.data import pendulum_data
    >>> data = pendulum_data(size=16, stride=3)
    >>> m = pc.CausalVAE(data.names, hidden=(64,))
    >>> m = m.fit(data.x, data.labels, rng_key=jax.random.key(0), steps=200, progress=False)
    >>> m.adjacency(binary=True).tolist()
    [[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
    >>> sorted(m.graph().edges)[:2]
    [('phi', 'length'), ('phi', 'mid')]
    >>> m.encode(data.x[:3]).shape, m.decode(data.labels[:3]).shape
    ((3, 4), (3, 16, 16, 3))
    >>> cf = pc.counterfactual(m.causal_model(), {"x": data.x[:3]}, {"theta": 0.4},
    ...                        rng_key=jax.random.key(1), num_samples=2, model_kwargs={"n": 3})
    >>> cf["theta"].tolist()[0], cf["x"].shape
    ([0.4, 0.4, 0.4], (2, 3, 16, 16, 3))
    """

    def __init__(
        self,
        concepts: Sequence[str],
        *,
        graph="learn",
        mechanism: str = "mlp",
        style_dim: int = 0,
        hidden: Sequence[int] = (256, 256),
        mechanism_hidden: int = 32,
        kl_weight: float = 0.3,
        label_weight: float = 10.0,
        label_noise: float = 0.1,
        scm_weight: float = 1.0,
        sparsity: float = 1e-3,
        learning_rate: float = 1e-3,
        batch_size: int = 64,
        steps_per_dual: int = 250,
        edge_threshold: float = 0.1,
        pretrain_steps: int = 2000,
        decoder_parts=None,
        part_sparsity: float = 0.65,
    ):
        self.concepts = tuple(str(c) for c in concepts)
        if len(set(self.concepts)) != len(self.concepts) or len(self.concepts) < 1:
            raise ValueError(f"concepts must be distinct names, got {list(concepts)}")
        if "x" in self.concepts or "style" in self.concepts:
            raise ValueError("'x' and 'style' are the image's and the free latents' sites")
        if mechanism not in ("mlp", "linear"):
            raise ValueError(f"mechanism must be 'mlp' or 'linear', got {mechanism!r}")
        if isinstance(graph, str) and graph not in ("learn", "free"):
            raise ValueError(f"graph must be 'learn', 'free' or an adjacency, got {graph!r}")
        self.graph_option = graph
        self.mechanism = mechanism
        self.style_dim = int(style_dim)
        self.hidden = tuple(int(h) for h in hidden)
        self.mechanism_hidden = int(mechanism_hidden)
        self.kl_weight, self.label_weight = float(kl_weight), float(label_weight)
        self.label_noise, self.scm_weight = float(label_noise), float(scm_weight)
        self.sparsity, self.learning_rate = float(sparsity), float(learning_rate)
        self.batch_size, self.steps_per_dual = int(batch_size), int(steps_per_dual)
        self.edge_threshold = float(edge_threshold)
        self.pretrain_steps = int(pretrain_steps)
        self.decoder_parts = _check_parts(decoder_parts, self.concepts)
        self.part_sparsity = float(part_sparsity)
        self.label_graph: LabelGraph | None = None
        self.params = None
        self._causal = None

    # ------------------------------------------------------------- fitting
    def _check(self, x, labels):
        n = len(self.concepts)
        x = np.asarray(x, np.float32)
        labels = np.asarray(labels, np.float32)
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4:
            raise TrainingDataError(
                f"x has shape {x.shape}: give images (rows, height, width[, channels])"
            )
        if labels.shape != (x.shape[0], n):
            raise TrainingDataError(
                f"labels have shape {labels.shape}; with {x.shape[0]} images and concepts "
                f"{list(self.concepts)} they must be ({x.shape[0]}, {n})"
            )
        for name, arr in (("x", x), ("labels", labels)):
            bad = np.argwhere(~np.isfinite(arr))
            if bad.size:
                raise TrainingDataError(
                    f"{name} holds a non-finite value at row {bad[0][0]}: drop or impute it"
                )
        if x.shape[0] < 2:
            raise TrainingDataError("CausalVAE needs at least 2 images")
        std = labels.std(0)
        flat = [self.concepts[j] for j in np.flatnonzero(std < 1e-8)]
        if flat:
            raise TrainingDataError(f"the labels of {flat} are constant: nothing to learn")
        return x, labels

    def _parts(self):
        """The decoder's parts as tuples of latent indices (the style latents, if
        any, a part of their own), or ``None`` for one joint decoder."""
        if self.decoder_parts is None:
            return None
        n = len(self.concepts)
        style = [tuple(range(n, n + self.style_dim))] if self.style_dim else []
        if isinstance(self.decoder_parts, str):
            return [(j,) for j in range(n)] + style
        return [tuple(self.concepts.index(c) for c in part) for part in self.decoder_parts] + style

    def _mask(self, labels):
        n = len(self.concepts)
        option = self.graph_option
        if isinstance(option, str) and option == "learn":
            self.label_graph = learn_label_graph(labels)
            return self.label_graph.adjacency
        if isinstance(option, str):  # free
            return 1 - np.eye(n, dtype=np.int64)
        mask = np.asarray(option)
        if mask.shape != (n, n):
            raise TrainingDataError(
                f"graph has shape {mask.shape}; with {n} concepts it must be ({n}, {n})"
            )
        return (mask != 0).astype(np.int64)

    def fit(
        self,
        x,
        labels,
        *,
        rng_key: jax.Array,
        steps: int = 5000,
        progress: bool = True,
        checkpoint_dir=None,
        resume: bool = False,
    ) -> CausalVAE:
        """Fit to images ``x`` ``(rows, height, width[, channels])`` in ``[0, 1]``
        and their concept ``labels`` ``(rows, n)``. Returns ``self``. Bad data
        raise :class:`~probcausal.errors.TrainingDataError` before any training."""
        x, labels = self._check(x, labels)
        n = len(self.concepts)
        self.label_mean, self.label_std = labels.mean(0), labels.std(0)
        u = (labels - self.label_mean) / self.label_std
        mask = self._mask(labels)
        self.image_shape = x.shape[1:]
        k_nets, k_init, k_fit = jax.random.split(rng_key, 3)
        seed = int(jax.random.randint(k_nets, (), 0, 2**31 - 1))
        mechanisms = ConceptMechanisms(
            mask, hidden=self.mechanism_hidden, kind=self.mechanism, rngs=nnx.Rngs(seed)
        )
        log_sigma0 = jnp.full((n,), -1.0, jnp.float32)
        if _acyclic(mask):  # the mechanisms fitted to the labels first
            log_sigma0 = _pretrain_mechanisms(
                mechanisms, jnp.asarray(u), self.pretrain_steps, jax.random.fold_in(k_nets, 1)
            )
        latent = n + self.style_dim
        decoder = ImageDecoder(
            latent,
            self.image_shape,
            hidden=self.hidden,
            parts=self._parts(),
            rngs=nnx.Rngs(seed + 1),
        )
        encoder = Encoder(
            math.prod(self.image_shape), latent, hidden=self.hidden[::-1], rngs=nnx.Rngs(seed + 2)
        )
        kwargs = dict(
            mechanisms=mechanisms,
            decoder=decoder,
            encoder=encoder,
            style_dim=self.style_dim,
            kl_weight=self.kl_weight,
            label_weight=self.label_weight,
            label_noise=self.label_noise,
            scm_weight=self.scm_weight,
            sparsity=self.sparsity,
            batch_size=self.batch_size,
            part_sparsity=self.part_sparsity,
        )
        schedule = optax.cosine_decay_schedule(self.learning_rate, steps, alpha=0.01)
        svi = SVI(causal_vae_model, causal_vae_guide, optax.adam(schedule), Trace_ELBO())
        data = (jnp.asarray(x), jnp.asarray(u))
        dual0 = (jnp.float32(0.0), jnp.float32(1.0))
        state = svi.init(
            jax.random.key_data(k_init),
            *data,
            dual0,
            **kwargs,
            init_params={"log_sigma": log_sigma0},
        )
        every = self.steps_per_dual

        def step(carry, key, data):
            svi_state, lam, rho, h_last, i = carry
            svi_state, loss = svi.update(
                svi_state._replace(rng_key=jax.random.key_data(key)), *data, (lam, rho), **kwargs
            )
            a = _adjacency(svi.get_params(svi_state), mechanisms)
            h = acyclicity(a)
            # the augmented Lagrangian's dual step: λ += ρ h; ρ grows tenfold
            # (to 1e14) when h has not fallen below a quarter of its last value
            update = (i + 1) % every == 0
            rho_new = jnp.where(update & (h > 0.25 * h_last), jnp.minimum(rho * 10.0, 1e14), rho)
            lam = jnp.where(update, lam + rho_new * h, lam)
            h_last = jnp.where(update, h, h_last)
            carry = (svi_state, lam, rho_new, h_last, i + 1)
            return carry, {"loss": loss, "acyclicity": h}

        carry = (state, jnp.float32(0.0), jnp.float32(1.0), jnp.float32(1e30), jnp.int32(0))
        result = run_fit(
            step,
            carry,
            steps,
            rng_key=k_fit,
            data=data,
            progress=progress,
            description="CausalVAE",
            checkpoint_dir=None if checkpoint_dir is None else Path(checkpoint_dir),
            resume=resume,
            params_fn=lambda c: svi.get_params(c[0]),
        )
        self.params = jax.tree.map(np.asarray, result.params)
        self._nets = (mechanisms, decoder, encoder)
        self.history = {
            **result.metrics,
            "dual": tuple(float(v) for v in result.state[1:3]),
            "compile_seconds": result.compile_seconds,
            "steps_per_second": result.steps_per_second,
        }
        self._causal = None
        return self

    # ------------------------------------------------------------- reading
    def _require_fit(self):
        if self.params is None:
            raise NotFittedError("CausalVAE is not fitted: call m.fit(x, labels, rng_key=...)")

    def _module(self, which: str):
        module = self._nets[("mechanisms", "decoder", "encoder").index(which)]
        return with_params(module, self.params[f"{which}$params"])

    def _apply(self, which: str, *inputs):
        return self._module(which)(*inputs)

    def adjacency(self, *, binary: bool = False) -> np.ndarray:
        """The learned weighted adjacency ``A`` ``(n, n)`` (``A[i, j]``: the
        strength of ``concepts[i] -> concepts[j]``, signed for the linear
        mechanism); ``binary``: the edges whose ``|A|`` is above
        ``edge_threshold``."""
        self._require_fit()
        a = np.asarray(_adjacency(self.params, self._nets[0]))
        return (np.abs(a) > self.edge_threshold).astype(np.int64) if binary else a

    def graph(self) -> nx.DiGraph:
        """The learned concept graph (edges above ``edge_threshold``, attribute
        ``weight``)."""
        a = self.adjacency()
        g = nx.DiGraph()
        g.add_nodes_from(self.concepts)
        for i, j in zip(*np.nonzero(np.abs(a) > self.edge_threshold), strict=True):
            g.add_edge(self.concepts[i], self.concepts[j], weight=float(a[i, j]))
        return g

    @property
    def noise_scale(self) -> np.ndarray:
        """σ_j: each concept's exogenous scale (standardized units)."""
        self._require_fit()
        return np.exp(self.params["log_sigma"])

    def _order(self):
        return list(nx.topological_sort(self._pruned_graph()))

    def _pruned_graph(self):
        g = self.graph()
        if not nx.is_directed_acyclic_graph(g):
            raise TrainingDataError(
                f"the learned concept graph has a cycle ({nx.find_cycle(g)}): fit longer or "
                "raise edge_threshold"
            )
        return g

    def encode(self, x) -> np.ndarray:
        """The concepts of images ``x`` in label units ``(rows, n)``: the causal
        layer applied to the encoder's mean ``ε``."""
        self._require_fit()
        x = np.asarray(x, np.float32)
        if x.ndim == len(self.image_shape):
            x = x[None]
        if x.shape[1:] != self.image_shape and x.shape[1:] + (1,) == self.image_shape:
            x = x[..., None]
        loc, _ = self._apply("encoder", jnp.asarray(x.reshape(x.shape[0], -1)))
        z = solve_concepts(
            self._mechanism_fn(),
            jnp.asarray(self.noise_scale) * loc[:, : len(self.concepts)],
            len(self.concepts),
        )
        return np.asarray(z) * self.label_std + self.label_mean

    def _mechanism_fn(self):
        edges = jnp.asarray(self.adjacency(binary=True), jnp.float32)
        mech = self._module("mechanisms")
        mech.mask = mech.mask * edges  # the pruned graph
        return lambda z: mech(z)

    def decode(self, concepts, style=None) -> np.ndarray:
        """Images ``(rows, *image_shape)`` from concept values in label units."""
        self._require_fit()
        z = (jnp.asarray(concepts, jnp.float32) - self.label_mean) / self.label_std
        if self.style_dim:
            s = jnp.zeros(z.shape[:-1] + (self.style_dim,)) if style is None else style
            z = jnp.concatenate([z, jnp.asarray(s, jnp.float32)], -1)
        return np.asarray(self._apply("decoder", z))

    # ------------------------------------------------------------- causal model
    def causal_model(self) -> CausalModel:
        """The learned concept SCM and decoder as a :class:`probcausal.CausalModel`:
        scalar concept sites in label units in a causal order, ``style`` when
        ``style_dim > 0``, then the image ``x`` ``(*image_shape)``, under a plate of
        ``n`` units (keyword ``n``, default 1). It carries the encoder as its
        abduction engine, so ``pc.counterfactual(m.causal_model(), {"x": images},
        {"theta": c}, model_kwargs={"n": len(images)}, ...)`` abducts the concepts'
        noise in one forward pass, recomputes every descendant and decodes."""
        self._require_fit()
        if self._causal is None:
            fn, guide = self._programs()
            self._causal = CausalModel(
                fn, abduction={"method": "svi", "guide": guide, "guide_params": {}}
            )
        return self._causal

    def _programs(self):
        names, n = self.concepts, len(self.concepts)
        order = [names.index(c) for c in self._order()]
        mech = self._mechanism_fn()
        mean, std = jnp.asarray(self.label_mean), jnp.asarray(self.label_std)
        sigma = jnp.asarray(self.noise_scale)
        decode = lambda z: self._apply("decoder", z)  # noqa: E731
        encode = lambda h: self._apply("encoder", h)  # noqa: E731
        x_noise = float(np.exp(self.params["log_sigma_x"]))
        shape, style_dim = self.image_shape, self.style_dim

        def vector(values, batch):
            return jnp.stack([values.get(j, jnp.zeros(batch)) for j in range(n)], -1)

        def causal_vae_scm(n=1):
            with numpyro.plate("units", n):
                z = {}
                for j in order:
                    batch = jnp.broadcast_shapes(*(v.shape for v in z.values())) if z else ()
                    pred = mech(vector(z, batch))[0][..., j]
                    c = numpyro.sample(
                        names[j], dist.Normal(mean[j] + std[j] * pred, std[j] * sigma[j])
                    )
                    z[j] = (c - mean[j]) / std[j]
                batch = jnp.broadcast_shapes(*(v.shape for v in z.values()))
                latent = vector(z, batch)
                if style_dim:
                    style = numpyro.sample(
                        "style", dist.Normal(0.0, 1.0).expand([style_dim]).to_event(1)
                    )
                    latent = jnp.concatenate(
                        [latent, jnp.broadcast_to(style, batch + (style_dim,))], -1
                    )
                numpyro.sample("x", dist.Normal(decode(latent), x_noise).to_event(len(shape)))

        return causal_vae_scm, _EncoderAbduction(
            encode, mech, names, order, mean, std, sigma, shape, style_dim
        )

    def counterfactual(self, x, actions, *, rng_key: jax.Array, num_samples: int = 1):
        """:func:`probcausal.counterfactual` of images ``x`` ``(rows, *image)`` under
        ``do(actions)`` (concept -> a value or one per row, label units) on
        :meth:`causal_model`, abducted by the encoder. ``result["x"]`` is the
        counterfactual image of the SCM: the decoded counterfactual concepts plus
        the factual image's residual (``x``'s noise); ``m.decode`` of the concept
        values gives the decoded image alone."""
        x = np.asarray(x, np.float32).reshape((-1,) + self.image_shape)
        cf = counterfactual(
            self.causal_model(),
            {"x": jnp.asarray(x)},
            actions,
            rng_key=rng_key,
            num_samples=num_samples,
            model_kwargs={"n": x.shape[0]},
        )
        return cf


def _check_parts(parts, concepts):
    if parts is None or (isinstance(parts, str) and parts == "concepts"):
        return parts
    if isinstance(parts, str):
        raise ValueError(
            f"decoder_parts must be None, 'concepts' or groups of concepts, got {parts!r}"
        )
    parts = [tuple(str(c) for c in p) for p in parts]
    flat = [c for p in parts for c in p]
    unknown = sorted(set(flat) - set(concepts))
    if unknown or sorted(flat) != sorted(concepts):
        raise ValueError(
            f"decoder_parts must split the concepts {list(concepts)} into groups, each "
            f"concept in one group; got {parts}" + (f" (unknown {unknown})" if unknown else "")
        )
    return parts


def _acyclic(mask) -> bool:
    return nx.is_directed_acyclic_graph(nx.DiGraph(np.asarray(mask)))


def _pretrain_mechanisms(mechanisms, u, steps: int, key):
    """Fit the mechanisms (in place) and the log noise scales to the labels alone,
    by maximum likelihood of ``u_j ~ N(f_j(u), σ_j²)`` (full batch, Adam); returns
    the log scales. The joint fit then starts from mechanisms that already
    explain the labels."""
    graph, params, other = nnx.split(mechanisms, nnx.Param, nnx.Not(nnx.Param))
    n = u.shape[-1]
    opt = optax.adam(optax.cosine_decay_schedule(1e-2, steps, alpha=0.05))

    def nll(p):
        params_, log_sigma = p
        pred, _ = nnx.merge(graph, params_, other)(u)
        return -jnp.mean(jnp.sum(dist.Normal(pred, jnp.exp(log_sigma)).log_prob(u), -1))

    def step(state, _, __):
        p, o = state
        loss, g = jax.value_and_grad(nll)(p)
        upd, o = opt.update(g, o, p)
        return (optax.apply_updates(p, upd), o), {"loss": loss}

    start = (params, jnp.zeros((n,), u.dtype))
    result = run_fit(
        step,
        (start, opt.init(start)),
        steps,
        rng_key=key,
        progress=False,
        description="CausalVAE (mechanisms on the labels)",
    )
    trained, log_sigma = result.state[0]
    nnx.update(mechanisms, trained)
    return log_sigma


def _adjacency(params, mechanisms):
    return with_params(mechanisms, params["mechanisms$params"]).adjacency()


class _EncoderAbduction:
    """The amortized abduction of the concepts from an image: ``ε ~ q(ε | x)``
    pushed through the causal layer, each concept sampled in a causal order."""

    def __init__(
        self, encode, mech, names, order, mean, std, sigma, shape, style_dim, evidence=None
    ):
        self.args = (encode, mech, names, order, mean, std, sigma, shape, style_dim)
        self.evidence = dict(evidence or {})

    def bind(self, evidence):
        return _EncoderAbduction(*self.args, evidence=evidence)

    def __call__(self, *args, n=1, **kwargs):
        encode, mech, names, order, mean, std, sigma, shape, style_dim = self.args
        if "x" not in self.evidence:
            raise AbductionError(
                "the CausalVAE encoder abducts from an image: give the image 'x' as evidence, "
                "or pass method='nuts' to abduct from the concepts alone"
            )
        x = jnp.asarray(self.evidence["x"], jnp.float32)
        x = x.reshape((-1,) + tuple(shape))
        loc, scale = encode(x.reshape(x.shape[0], -1))
        k = len(names)
        with numpyro.plate("units", n):
            z = {}
            for j in order:
                vec = jnp.stack([z.get(i, jnp.zeros(x.shape[0])) for i in range(k)], -1)
                pred = mech(vec)[0][..., j]
                if names[j] in self.evidence:
                    c = jnp.asarray(self.evidence[names[j]], jnp.float32)
                else:
                    c = numpyro.sample(
                        names[j],
                        dist.Normal(
                            mean[j] + std[j] * (pred + sigma[j] * loc[:, j]),
                            std[j] * sigma[j] * scale[:, j],
                        ),
                    )
                z[j] = (c - mean[j]) / std[j]
            if style_dim:
                numpyro.sample("style", dist.Normal(loc[:, k:], scale[:, k:]).to_event(1))
