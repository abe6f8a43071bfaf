"""BIOLS: Bayesian inference over a latent linear-Gaussian SCM and its decoder
from low-level data with known interventions (Subramanian et al., 2022)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import scipy.linalg
from jax.scipy.stats import norm
from numpyro.infer import SVI, Trace_ELBO

from probcausal.causal_model import CausalModel
from probcausal.errors import NotFittedError, TrainingDataError
from probcausal.infer.training import fit as run_fit
from probcausal.models.biols import likelihood as lik
from probcausal.models.biols.order import best_order

__all__ = ["BIOLS", "biols_guide", "biols_model"]

DECODERS = ("linear",)
OBJECTIVES = ("collapsed", "prior")


def biols_model(
    data: lik.Projected,
    context,
    context_targets,
    target_values,
    *,
    num_latents: int,
    scale=None,
    perm=None,
    order_temperature: float = 0.2,
    intervention_noise: float = 0.1,
    objective: str = "collapsed",
):
    """The BIOLS model as a NumPyro program: priors over the lower-triangular
    weights ``L`` (Laplace(0, 1)) and the log noise scales (Normal(0, 1)); the
    decoder ``A = T diag(scale) data.basis`` (``data`` the
    :class:`~.likelihood.Projected` statistics of ``x`` for an orthonormal basis of
    the decoder's row space, by default ``x``'s top-``d`` principal directions,
    ``scale`` the standard deviations along them), ``b`` and ``log σ_x`` are
    ``param`` sites. Each row's latents are integrated out
    (:func:`~.likelihood.projected_log_likelihood`), or, for
    ``objective="prior"``, drawn from their prior independently of ``x``
    (:func:`~.likelihood.prior_expected_log_likelihood`, the encoder-free
    baseline). ``perm`` is the known order's permutation matrix; ``None`` learns
    the order, drawing it from a Gumbel-Sinkhorn distribution over the
    ``order_logits`` parameter (hard Hungarian sample, straight-through gradient)."""
    d = num_latents
    dtype = data.coords.dtype
    lower = numpyro.sample("L", dist.Laplace(0.0, 1.0).expand([d * (d - 1) // 2]).to_event(1))
    log_sigma = numpyro.sample("log_sigma", dist.Normal(0.0, 1.0).expand([d]).to_event(1))
    scale = jnp.ones(d, dtype) if scale is None else scale
    coef = numpyro.param("T", jnp.eye(d, dtype=dtype)) * scale[None, :]
    bias = numpyro.param("b", jnp.zeros(data.dim, dtype))
    log_x_noise = numpyro.param("log_sigma_x", jnp.zeros((), dtype))
    if perm is None:
        logits = numpyro.param("order_logits", jnp.zeros((d, d), dtype))
        perm = lik.gumbel_sinkhorn_sample(numpyro.prng_key(), logits, order_temperature)
    weights = numpyro.deterministic("W", lik.weights_from_order(lower, perm, d))
    theta = (weights, jnp.exp(log_sigma), coef, bias, jnp.exp(log_x_noise), intervention_noise)
    rows = (data, context, context_targets, target_values)
    if objective == "prior":
        value = lik.prior_expected_log_likelihood(numpyro.prng_key(), *rows, *theta)
    else:
        value = lik.projected_log_likelihood(data, context_targets, *theta)
    numpyro.factor("x", value)


def biols_guide(*args, num_latents: int, init_scale: float = 0.05, **kwargs):
    """The mean-field Normal posterior over ``L`` and ``log_sigma`` (what
    ``AutoNormal(biols_model, init_loc_fn=init_to_median)`` builds: both priors'
    medians are zero), written out so that its set-up needs no gradient of the
    model (``AutoNormal`` compiles one to validate its starting point)."""
    d = num_latents
    dtype = args[0].coords.dtype
    for name, size in (("L", d * (d - 1) // 2), ("log_sigma", d)):
        loc = numpyro.param(f"{name}_auto_loc", jnp.zeros(size, dtype))
        scale = numpyro.param(
            f"{name}_auto_scale",
            jnp.full(size, init_scale, dtype),
            constraint=dist.constraints.softplus_positive,
        )
        numpyro.sample(name, dist.Normal(loc, scale).to_event(1))


def _principal_basis(x, d):
    """The top-``d`` principal directions of ``x`` ``(d, D)`` (orthonormal rows) and
    the standard deviation of ``x`` along each (so that ``T`` is of order one)."""
    centred = x - x.mean(0)
    _, s, vt = jnp.linalg.svd(centred, full_matrices=False)
    return vt[:d], s[:d] / jnp.sqrt(x.shape[0])


def _order_logits_init(z, targets, restarts, rng, strength: float = 3.0):
    """Starting logits of the order posterior, one set per restart: peaked at the
    best order of the starting latents ``z`` (:func:`~.order.best_order`) for the
    first restart, at random perturbations of it for the others."""
    d = z.shape[1]
    rank = np.argsort(best_order(z, targets))  # position of each node
    base = -strength * np.abs(rank[:, None] - np.arange(d)[None, :]).astype(np.float64)
    logits = base[None] + rng.normal(size=(restarts, d, d)) * strength / 2
    logits[0] = base
    return logits.astype(np.float32)


def _raw(keys):
    """SVI keeps raw ``uint32`` keys in its state."""
    return (
        jax.random.key_data(keys)
        if jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key)
        else keys
    )


class BIOLS:
    """Bayesian inference over a latent linear-Gaussian SCM.

    ``d`` latents ``z`` follow ``z = z W + e`` with ``W = (P L Pᵀ)ᵀ`` (acyclic by
    construction) and noise scales ``σ``; each data row has known hard
    interventions (targets and values, ``z_j = v + N(0, 0.1²)``); ``x = z A + b +
    N(0, σ_x² I)``. The posterior over ``L`` and ``log σ`` is mean-field Normal
    (SVI, :func:`~probcausal.infer.fit`); the latents are integrated out exactly
    per intervention context, which uses the variance changes that hard
    interventions cause, so zero-valued interventions are informative too. The
    decoder is a point estimate. ``restarts`` fits run side by side (vmapped) and
    the one of highest ELBO is kept.

    Parameters
    ----------
    num_latents : int
        ``d``.
    decoder : str
        ``"linear"``.
    order : sequence of int or None
        A known topological order of the latents (``order[k]`` is the latent at
        position ``k``), or ``None`` to learn it (Gumbel-Sinkhorn posterior).
    restarts : int
        Random restarts, fitted in one vectorized run.
    learning_rate : float
        Adam's learning rate (cosine-decayed to 5% over the run).
    intervention_noise : float
        The known standard deviation of an intervened latent about its value.
    order_temperature : float
        The Gumbel-Sinkhorn temperature of the order posterior.
    edge_threshold : float
        An edge is ``|W[i, j]|`` above this (for :meth:`edge_probabilities`).
    objective : str
        ``"collapsed"`` (the latents integrated out), or ``"prior"``: the
        encoder-free objective of the original code (each row's latents drawn from
        their prior), kept as a baseline; it fails with zero-valued interventions.

    Examples
    --------
    >>> import jax
    >>> import probcausal as pc
    >>> data = pc.data.latent_scm_data(jax.random.key(0), num_latents=3, dim=20,
    ...                                num_target_sets=6)
    >>> m = pc.BIOLS(num_latents=3, order=data.order, restarts=2)
    >>> m = m.fit(data.x, targets=data.targets, values=data.values,
    ...           rng_key=jax.random.key(1), steps=800, progress=False)
    >>> bool(((m.edge_probabilities() > 0.5) == (data.weights != 0)).all())
    True
    """

    def __init__(
        self,
        num_latents: int,
        decoder: str = "linear",
        *,
        order: Sequence[int] | None = None,
        restarts: int = 4,
        learning_rate: float = 0.02,
        intervention_noise: float = 0.1,
        order_temperature: float = 0.2,
        edge_threshold: float = 0.3,
        objective: str = "collapsed",
    ):
        if int(num_latents) < 2:
            raise ValueError(f"num_latents={num_latents}: BIOLS needs at least 2 latents")
        if decoder not in DECODERS:
            raise ValueError(f"decoder={decoder!r}: choose one of {DECODERS}")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective={objective!r}: choose one of {OBJECTIVES}")
        self.objective = objective
        self.num_latents = d = int(num_latents)
        if order is not None:
            order = np.asarray(order, int)
            if sorted(order.tolist()) != list(range(d)):
                raise ValueError(f"order={order.tolist()} is not a permutation of 0..{d - 1}")
        self.decoder, self.order = decoder, order
        self.restarts, self.learning_rate = int(restarts), float(learning_rate)
        self.intervention_noise = float(intervention_noise)
        self.order_temperature = float(order_temperature)
        self.edge_threshold = float(edge_threshold)
        self.params = None
        self.history = None
        self.event_shape = None
        self._causal = None

    # ---- data ----

    def _check(self, x, targets, values):
        d = self.num_latents
        x = np.asarray(x, np.float32)
        if x.ndim < 2:
            raise TrainingDataError(
                f"x has shape {x.shape}; BIOLS takes (rows, features) or (rows, *image_shape)"
            )
        if self.event_shape is not None and x.shape[1:] != self.event_shape:
            raise TrainingDataError(
                f"x has rows of shape {x.shape[1:]}; the model was fitted to {self.event_shape}"
            )
        x = x.reshape(x.shape[0], -1)
        n, dim = x.shape
        if dim < d:
            raise TrainingDataError(f"x has {dim} features, fewer than num_latents={d}")
        if targets is None:
            if values is not None:
                raise TrainingDataError(
                    "values were given without targets: pass targets, a (rows, num_latents) "
                    "bool mask of the intervened latents"
                )
            targets = np.zeros((n, d), bool)
        targets = np.asarray(targets)
        if targets.shape != (n, d):
            raise TrainingDataError(
                f"targets has shape {targets.shape}; expected (rows, num_latents) = {(n, d)}"
            )
        if targets.dtype != bool and not np.isin(targets, (0, 1)).all():
            raise TrainingDataError(
                "targets must be a bool (or 0/1) mask of the intervened latents"
            )
        targets = targets.astype(bool)
        values = np.zeros((n, d), np.float32) if values is None else np.asarray(values, np.float32)
        if values.shape != (n, d):
            raise TrainingDataError(
                f"values has shape {values.shape}; expected (rows, num_latents) = {(n, d)}"
            )
        for name, a in (("x", x), ("values", values)):
            bad = ~np.isfinite(a)
            if bad.any():
                row = int(np.argwhere(bad)[0][0])
                raise TrainingDataError(
                    f"{name} holds {int(bad.sum())} NaN or infinite entries (first in row {row})"
                )
        contexts, context = np.unique(targets, axis=0, return_inverse=True)
        return x, contexts, context.reshape(-1).astype(np.int32), np.where(targets, values, 0.0)

    # ---- fitting ----

    def _model_kwargs(self):
        perm = None if self.order is None else jnp.asarray(lik.permutation_matrix(self.order))
        return dict(
            num_latents=self.num_latents,
            perm=perm,
            order_temperature=self.order_temperature,
            intervention_noise=self.intervention_noise,
            objective=self.objective,
        )

    def _inits(self, key, projected, scale, targets, values):
        """Starting points ``(T, b)`` and order logits, one per restart, from the
        :class:`~.likelihood.Projected` statistics of ``x`` and the standard
        deviations ``scale`` along its principal directions. Each latent's intervened
        rows give the direction ``u_j`` with ``z_j ≈ y u_j + β_j`` (``y`` the
        centred coordinates of ``x`` in the decoder basis): by least squares on the values when they
        vary, else as the direction of least variance there relative to all rows
        (``z_j`` barely varies under a hard intervention). Then ``T = U⁻¹``; the
        first restart starts there, the others from perturbations of it (latents
        never intervened on get random directions)."""
        d = self.num_latents
        scale = np.asarray(scale, np.float64)
        directions = np.asarray(projected.basis, np.float64)
        coords = np.asarray(projected.coords, np.float64)
        coords_mean = coords.mean(0)
        mean = coords_mean @ directions + np.asarray(projected.off_mean)  # x's mean
        y = (coords - coords_mean) / scale
        basis = scale[:, None] * directions
        rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
        u, beta = rng.normal(size=(d, d)) / np.sqrt(d), np.zeros(d)
        cov_all = np.cov(y.T) + 1e-9 * np.eye(d)
        for j in range(d):
            rows = targets[:, j]
            if rows.sum() < d + 2:
                continue
            yj, vj = y[rows], values[rows, j]
            if vj.std() > 3 * self.intervention_noise:
                design = np.column_stack([yj, np.ones(len(yj))])
                coef = np.linalg.lstsq(design, vj, rcond=None)[0]
                u[:, j], beta[j] = coef[:d], coef[d]
            else:
                _, vecs = scipy.linalg.eigh(np.cov(yj.T) + 1e-9 * np.eye(d), cov_all)
                least = vecs[:, 0]  # z_j's direction: the least variance there
                uj = least * self.intervention_noise / np.sqrt(least @ np.cov(yj.T) @ least)
                u[:, j], beta[j] = uj, values[rows, j].mean() - yj.mean(0) @ uj
        t = np.linalg.inv(u) if abs(np.linalg.det(u)) > 1e-12 else np.eye(d)
        bias = mean + (-beta @ t) @ basis
        noise = rng.normal(size=(self.restarts, d, d)) * 0.1 * np.abs(t).mean()
        noise[0] = 0.0
        ts = (t[None] + noise).astype(np.float32)
        logits = _order_logits_init(y @ u + beta, targets, self.restarts, rng)
        biases = np.broadcast_to(bias, (self.restarts, len(bias)))
        return jnp.asarray(ts), jnp.asarray(biases, jnp.float32), jnp.asarray(logits)

    def fit(
        self,
        x,
        *,
        targets=None,
        values=None,
        rng_key: jax.Array,
        steps: int = 3000,
        progress: bool = True,
        checkpoint_dir=None,
        resume: bool = False,
    ) -> BIOLS:
        """Fit the posterior to ``x`` ``(rows, features)`` with ``targets``
        ``(rows, num_latents)`` (bool: which latents each row intervenes on) and
        ``values`` (the intervention values; ignored off the targets). Returns
        ``self``. Bad data raise :class:`~probcausal.errors.TrainingDataError`
        before any training. Images ``(rows, *image_shape)`` are flattened; the
        causal model's ``x`` keeps their shape."""
        self.event_shape = None
        x_shape = np.shape(x)[1:]
        x, contexts, context, tv = self._check(x, targets, values)
        kwargs = self._model_kwargs()
        guide = biols_guide
        schedule = optax.cosine_decay_schedule(self.learning_rate, steps, alpha=0.05)
        svi = SVI(biols_model, guide, optax.adam(schedule), Trace_ELBO())
        directions, scale = _principal_basis(jnp.asarray(x), self.num_latents)
        projected = lik.project_data(
            jnp.asarray(x), directions, jnp.asarray(context), jnp.asarray(tv), len(contexts)
        )
        args = (projected, jnp.asarray(context), jnp.asarray(contexts), jnp.asarray(tv))
        kwargs["scale"] = scale
        basis = scale[:, None] * directions  # the decoder is T @ basis
        k_init, k_dec, k_fit = jax.random.split(rng_key, 3)
        targets_bool = np.asarray(contexts)[context]
        t_inits, b_inits, logit_inits = self._inits(k_dec, projected, scale, targets_bool, tv)
        # σ_x starts at the root mean square of x off the principal subspace
        off_rms = float(np.sqrt(projected.off_ss / x.size))
        log_noise = jnp.log(jnp.float32(max(off_rms, 1e-3)))

        def init(key, t, b, logits):
            start = {"T": t, "b": b, "log_sigma_x": log_noise}
            if self.order is None:
                start["order_logits"] = logits
            return svi.init(key, *args, **kwargs, init_params=start)

        keys = jax.random.key_data(jax.random.split(k_init, self.restarts))
        state = jax.jit(jax.vmap(init))(keys, t_inits, b_inits, logit_inits)

        def step(state, key, data):
            def one(s, k):
                s, loss = svi.update(s._replace(rng_key=k), *data, **kwargs)
                return s, loss

            state, losses = jax.vmap(one)(state, _raw(jax.random.split(key, self.restarts)))
            return state, {"loss": jnp.min(losses), "restart_losses": losses}

        result = run_fit(
            step,
            state,
            steps,
            rng_key=k_fit,
            data=args,
            progress=progress,
            description="BIOLS",
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            params_fn=lambda s: jax.vmap(svi.get_params)(s),
        )
        tail = result.metrics["restart_losses"][-max(1, steps // 10) :].mean(0)
        best = int(np.argmin(tail))
        self.params = jax.tree.map(lambda a: np.asarray(a[best]), result.params)
        self.params["basis"] = np.asarray(basis)
        self.event_shape = tuple(x_shape)
        self.history = {
            **result.metrics,
            "best_restart": best,
            "compile_seconds": result.compile_seconds,
            "steps_per_second": result.steps_per_second,
        }
        self._causal = None
        return self

    # ---- the posterior ----

    def _require_fit(self):
        if self.params is None:
            raise NotFittedError("this BIOLS model is not fitted: call fit(x, targets=..., ...)")

    def _order_logits(self):
        return self.params.get("order_logits")

    def map_order(self) -> np.ndarray:
        """The node order: the known one, or the learned logits' Hungarian maximum."""
        self._require_fit()
        if self.order is not None:
            return self.order
        hard = np.asarray(lik.hungarian(jnp.asarray(self._order_logits())))
        return np.argmax(hard, axis=0)  # node at each position

    def _loc_scale(self, name):
        return self.params[f"{name}_auto_loc"], self.params[f"{name}_auto_scale"]

    def posterior_samples(self, *, rng_key: jax.Array, num_samples: int = 1000) -> dict:
        """Draws of ``W`` ``(num_samples, d, d)``, ``sigma`` ``(num_samples, d)``
        and, for a learned order, ``order`` ``(num_samples, d)``."""
        self._require_fit()
        d = self.num_latents
        k_l, k_s, k_p = jax.random.split(rng_key, 3)
        loc, scale = self._loc_scale("L")
        lower = loc + scale * jax.random.normal(k_l, (num_samples,) + loc.shape)
        loc_s, scale_s = self._loc_scale("log_sigma")
        sigma = jnp.exp(loc_s + scale_s * jax.random.normal(k_s, (num_samples, d)))
        perm = self._order_draws(k_p, num_samples)
        out = {
            "W": np.asarray(lik.weights_from_order(lower, perm, d)),
            "sigma": np.asarray(sigma),
        }
        if self.order is None:
            out["order"] = np.argmax(np.asarray(perm), axis=-2)
        return out

    def _order_draws(self, key, num_samples: int):
        """``(num_samples, d, d)`` permutation matrices: hard Gumbel-Sinkhorn draws
        of the learned order, or the known order repeated."""
        d = self.num_latents
        if self.order is not None:
            return jnp.broadcast_to(lik.permutation_matrix(self.order), (num_samples, d, d))
        logits = jnp.asarray(self._order_logits())
        return jax.vmap(
            lambda k: lik.hungarian(
                (logits + jax.random.gumbel(k, logits.shape)) / self.order_temperature
            )
        )(jax.random.split(key, num_samples))

    def edge_probabilities(self, *, rng_key: jax.Array | None = None, num_samples: int = 256):
        """``(d, d)``: the posterior probability that ``|W[i, j]|`` exceeds the edge
        threshold, exact for a known order (Normal tails), else averaged over
        ``num_samples`` draws of the order."""
        self._require_fit()
        d = self.num_latents
        loc, scale = (jnp.asarray(a) for a in self._loc_scale("L"))
        c = self.edge_threshold
        p_lower = norm.cdf((-c - loc) / scale) + norm.cdf((loc - c) / scale)
        if self.order is None:
            # the order draws posterior_samples makes with this key
            _, _, k_p = jax.random.split(jax.random.key(0) if rng_key is None else rng_key, 3)
            perm = self._order_draws(k_p, num_samples)
        else:
            perm = jnp.asarray(lik.permutation_matrix(self.order))[None]
        probs = lik.weights_from_order(
            jnp.broadcast_to(p_lower, perm.shape[:1] + p_lower.shape), perm, d
        )
        return np.asarray(probs.mean(0))

    def weights(self) -> np.ndarray:
        """The posterior mean of ``W`` in the MAP order."""
        self._require_fit()
        loc, _ = self._loc_scale("L")
        perm = lik.permutation_matrix(self.map_order())
        return np.asarray(
            lik.weights_from_order(jnp.asarray(loc), jnp.asarray(perm), self.num_latents)
        )

    def decoder_matrix(self) -> np.ndarray:
        """The linear decoder ``A`` ``(d, D)``: ``x = z A + b + noise``."""
        self._require_fit()
        return self.params["T"] @ self.params["basis"]

    def noise_scale(self) -> np.ndarray:
        """``exp`` of the posterior mean of ``log σ``."""
        self._require_fit()
        return np.exp(np.asarray(self._loc_scale("log_sigma")[0]))

    def graph(self, threshold: float = 0.3):
        """A :class:`networkx.DiGraph` of the edges whose posterior probability
        exceeds ``threshold``; edges carry ``probability`` and the mean ``weight``."""
        import networkx as nx

        probs, w = self.edge_probabilities(), self.weights()
        g = nx.DiGraph()
        g.add_nodes_from(self.latent_names)
        for i, j in zip(*np.nonzero(probs > threshold), strict=True):
            g.add_edge(
                self.latent_names[i],
                self.latent_names[j],
                probability=float(probs[i, j]),
                weight=float(w[i, j]),
            )
        return g

    def posterior(self, *, rng_key: jax.Array, num_samples: int = 1000):
        """The posterior over ``W`` and ``sigma`` as :class:`arviz.InferenceData`
        (one chain; dims ``cause``, ``effect``, ``latent``)."""
        import arviz as az

        draws = self.posterior_samples(rng_key=rng_key, num_samples=num_samples)
        names = self.latent_names
        return az.from_dict(
            posterior={k: v[None] for k, v in draws.items() if k != "order"},
            dims={"W": ["cause", "effect"], "sigma": ["latent"]},
            coords={"cause": names, "effect": names, "latent": names},
        )

    def encode(self, x, *, targets=None, values=None) -> np.ndarray:
        """``E[z | x]`` per row (exact for the linear decoder), under the posterior
        mean parameters and each row's interventions."""
        self._require_fit()
        x, contexts, context, tv = self._check(x, targets, values)
        p = self.params
        return np.asarray(
            lik.posterior_latents(
                jnp.asarray(x),
                jnp.asarray(context),
                jnp.asarray(contexts),
                jnp.asarray(tv),
                jnp.asarray(self.weights()),
                jnp.asarray(self.noise_scale()),
                jnp.asarray(self.decoder_matrix()),
                jnp.asarray(p["b"]),
                jnp.exp(jnp.asarray(p["log_sigma_x"])),
                self.intervention_noise,
            )
        )

    @property
    def latent_names(self) -> list[str]:
        return [f"z{j}" for j in range(self.num_latents)]

    def causal_model(self) -> CausalModel:
        """The learned latent SCM and decoder as a :class:`probcausal.CausalModel`
        with the posterior mean parameters: scalar sites ``z0 .. z{d-1}`` in the
        learned order, then ``x`` (``(features,)`` per unit), under a plate of
        ``n`` units (keyword ``n``, default 1). Every core query takes it:
        ``pc.interventional(m.causal_model(), {"z1": 2.0}, ...)`` generates
        low-level data under an intervention never seen in training. Images keep
        their shape: ``x`` is ``(n, *image_shape)``."""
        self._require_fit()
        if self._causal is None:
            self._causal = CausalModel(self._latent_scm())
        return self._causal

    def _latent_scm(self):
        w = np.asarray(self.weights())
        sigma = jnp.asarray(self.noise_scale())
        decoder = jnp.asarray(self.decoder_matrix())
        bias = jnp.asarray(self.params["b"])
        x_noise = float(np.exp(self.params["log_sigma_x"]))
        order = [int(j) for j in self.map_order()]
        names = self.latent_names
        event_shape = self.event_shape
        parents = {j: [i for i in order[:k] if w[i, j] != 0.0] for k, j in enumerate(order)}

        def biols_latent_scm(n=1):
            with numpyro.plate("units", n):
                z = {}
                for j in order:
                    mean = sum((float(w[i, j]) * z[i] for i in parents[j]), jnp.zeros(()))
                    z[j] = numpyro.sample(names[j], dist.Normal(mean, sigma[j]))
                latents = jnp.stack([z[j] for j in range(len(order))], -1)
                mean = (latents @ decoder + bias).reshape(latents.shape[:-1] + event_shape)
                numpyro.sample("x", dist.Normal(mean, x_noise).to_event(len(event_shape)))

        return biols_latent_scm
