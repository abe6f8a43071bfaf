"""BIOLS: Bayesian inference over a latent linear-Gaussian SCM and its decoder
from low-level data with known interventions (Subramanian et al., 2022)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import scipy.linalg
from flax import nnx
from jax.scipy.stats import norm
from numpyro.infer import SVI, Trace_ELBO

from probcausal.causal_model import CausalModel
from probcausal.errors import NotFittedError, TrainingDataError
from probcausal.infer.training import fit as run_fit
from probcausal.models.biols import likelihood as lik
from probcausal.models.biols import neural
from probcausal.models.biols.order import best_order
from probcausal.models.biols.sites import latent_scm_guide, latent_scm_sites
from probcausal.nn import with_params

__all__ = ["BIOLS", "biols_guide", "biols_model"]

DECODERS = ("linear", "mlp", "conv")
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
    weights, sigma = latent_scm_sites(d, dtype, perm, order_temperature)
    scale = jnp.ones(d, dtype) if scale is None else scale
    coef = numpyro.param("T", jnp.eye(d, dtype=dtype)) * scale[None, :]
    bias = numpyro.param("b", jnp.zeros(data.dim, dtype))
    log_x_noise = numpyro.param("log_sigma_x", jnp.zeros((), dtype))
    theta = (weights, sigma, coef, bias, jnp.exp(log_x_noise), intervention_noise)
    rows = (data, context, context_targets, target_values)
    if objective == "prior":
        value = lik.prior_expected_log_likelihood(numpyro.prng_key(), *rows, *theta)
    else:
        value = lik.projected_log_likelihood(data, context_targets, *theta)
    numpyro.factor("x", value)


def biols_guide(*args, num_latents: int, init_scale: float = 0.05, **kwargs):
    """The mean-field Normal posterior over ``L`` and ``log_sigma``
    (:func:`~.sites.latent_scm_guide`) for :func:`biols_model` and
    :func:`~.neural.latent_scm_model`."""
    latent_scm_guide(num_latents, getattr(args[0], "coords", args[0]).dtype, init_scale)


def _principal_basis(x, d):
    """The top-``d`` principal directions of ``x`` ``(d, D)`` (orthonormal rows) and
    the standard deviation of ``x`` along each (so that ``T`` is of order one)."""
    centred = x - x.mean(0)
    _, s, vt = jnp.linalg.svd(centred, full_matrices=False)
    return vt[:d], s[:d] / jnp.sqrt(x.shape[0])


def _zero_valued_direction(subspace, cov_obs, others, cov_hit, cov_rest, iterations=30):
    """A latent's direction ``u`` (``z_j ≈ y u``) from zero-valued interventions.

    ``subspace`` ``(d, m)`` holds the directions of least variance on the rows
    that intervene on ``j``: it spans ``z_j`` and the latents intervened on in most
    of those rows too. ``z_j`` is the direction of small variance in *every*
    context that intervenes on it (``cov_hit``, ``(contexts, d, d)``) relative to
    the rows that do not (``cov_rest``): the minimum over ``subspace`` of the
    largest ratio, by iteratively reweighted generalized eigenproblems (a pooled
    ratio is fooled by a latent of large variance intervened on in most of the
    rows). Variances cannot tell ``z_j`` from ``z_j + c z_k`` when every row that
    intervenes on ``j`` also intervenes on ``k``: the two are equivalent models
    (the second with an extra edge ``k → j``); there the one uncorrelated in the
    observational rows with those latents' directions (``others``, ``(d, m')``) is
    taken, the sparse choice when ``k`` is no ancestor of ``j``."""
    basis = subspace
    if others.shape[1] and subspace.shape[1] > others.shape[1]:
        _, _, vt = np.linalg.svd(others.T @ cov_obs @ subspace)
        basis = subspace @ vt[others.shape[1] :].T  # uncorrelated with the others
    if basis.shape[1] == 1:
        return basis[:, 0] / np.linalg.norm(basis[:, 0])
    hit = np.einsum("ia,sij,jb->sab", basis, cov_hit, basis)
    rest = basis.T @ cov_rest @ basis + 1e-9 * np.eye(basis.shape[1])
    weights = np.full(len(hit), 1.0 / len(hit))
    best, best_max = None, np.inf
    for _ in range(iterations):
        _, vecs = scipy.linalg.eigh(np.einsum("s,sab->ab", weights, hit), rest)
        a = vecs[:, 0]
        ratio = np.einsum("a,sab,b->s", a, hit, a) / (a @ rest @ a)
        if ratio.max() < best_max:
            best, best_max = a, ratio.max()
        weights = weights * ratio / ratio.mean()  # multiplicative: towards the largest
        weights = weights / weights.sum()
    u = basis @ best
    return u / np.linalg.norm(u)


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


def _fit_restarts(svi, state, args, kwargs, steps, key, description, progress, ck, resume):
    """Run ``svi`` on the vmapped restarts ``state`` for ``steps`` steps
    (:func:`~probcausal.infer.fit`); returns the parameters of the restart of
    lowest mean loss over the last tenth of the run, and the history.

    A restart whose loss or parameters become NaN or infinite is dropped: its
    state stays at its last finite value and it takes no further steps, so one
    diverging start does not end the fit. Only when every restart has diverged
    does the fit stop, with :class:`~probcausal.errors.TrainingDivergedError`."""
    restarts = jax.tree.leaves(state)[0].shape[0]

    def step(carry, key, data):
        state, alive = carry

        def one(s, k, live):
            new, loss = svi.update(s._replace(rng_key=k), *data, **kwargs)
            ok = live & jnp.isfinite(loss)
            ok = ok & jnp.all(
                jnp.stack([jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves(new.optim_state)])
            )
            new = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, s)
            return new, jnp.where(ok, loss, 0.0), ok

        state, losses, alive = jax.vmap(one)(state, _raw(jax.random.split(key, restarts)), alive)
        best = jnp.min(jnp.where(alive, losses, jnp.inf))
        return (state, alive), {
            "loss": best,
            "restart_losses": losses,
            "restarts_alive": alive.sum(),
        }

    result = run_fit(
        step,
        (state, jnp.ones(restarts, bool)),
        steps,
        rng_key=key,
        data=args,
        progress=progress,
        description=description,
        checkpoint_dir=ck,
        resume=resume,
        params_fn=lambda s: jax.vmap(svi.get_params)(s[0]),
    )
    tail = result.metrics["restart_losses"][-max(1, steps // 10) :].mean(0)
    alive = np.asarray(result.state[1])
    best = int(np.argmin(np.where(alive, tail, np.inf)))
    history = {
        **result.metrics,
        "best_restart": best,
        "compile_seconds": result.compile_seconds,
        "steps_per_second": result.steps_per_second,
    }
    return jax.tree.map(lambda a: np.asarray(a[best]), result.params), history


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
        ``"linear"`` (the latents integrated out exactly), ``"mlp"`` (an
        :class:`~probcausal.nn.MLP`) or ``"conv"`` (a
        :class:`~probcausal.nn.ConvGenerator`, for images). The nonlinear
        decoders are residual on a linear fit (:attr:`warm_start`) and trained
        with an amortized encoder ``q(z | x, targets, values)`` by the ELBO (see
        :mod:`~probcausal.models.biols.neural`).
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
    hidden : sequence of int
        The nonlinear decoders' and the encoder's MLP layer widths.
    batch_size : int or None
        Rows per ELBO step for the nonlinear decoders (default 512, 64 for
        ``"conv"``).
    warm_start_steps : int
        Steps of the linear fit the nonlinear decoders start from, and of the
        latent SCM's refit after the networks.
    neural_learning_rate : float
        Adam's learning rate of the ELBO stage (cosine-decayed to 5%).

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
        hidden: Sequence[int] = (128, 128),
        batch_size: int | None = None,
        warm_start_steps: int = 800,
        neural_learning_rate: float = 3e-3,
    ):
        if int(num_latents) < 2:
            raise ValueError(f"num_latents={num_latents}: BIOLS needs at least 2 latents")
        if decoder not in DECODERS:
            raise ValueError(f"decoder={decoder!r}: choose one of {DECODERS}")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective={objective!r}: choose one of {OBJECTIVES}")
        if objective == "prior" and decoder != "linear":
            raise ValueError(
                f"objective='prior' is the linear decoder's baseline; decoder={decoder!r} "
                "trains an encoder with the ELBO"
            )
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
        self.hidden = tuple(int(h) for h in hidden)
        self.batch_size = (
            int(batch_size) if batch_size is not None else (64 if decoder == "conv" else 512)
        )
        self.warm_start_steps = int(warm_start_steps)
        self.neural_learning_rate = float(neural_learning_rate)
        self._linear = None
        self._nets = None
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
        vary, else as the direction of small variance in every context that
        intervenes on ``j`` (``z_j`` barely varies under a hard intervention), see
        :func:`_zero_valued_direction`; latents are taken from the most intervened
        on. Then ``T = U⁻¹``; the
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
        observational = ~targets.any(1)
        cov_obs = np.cov(y[observational].T) if observational.sum() > d + 1 else cov_all
        found = np.zeros(d, bool)
        _, context_of = np.unique(targets, axis=0, return_inverse=True)
        context_of = context_of.reshape(-1)
        # latents with more intervened rows first: a latent whose rows all intervene
        # on another one too needs that one's direction (see _zero_valued_direction)
        for j in np.argsort(-targets.sum(0), kind="stable"):
            rows = targets[:, j]
            if rows.sum() < d + 2:
                continue
            yj, vj = y[rows], values[rows, j]
            if vj.std() > 3 * self.intervention_noise:
                design = np.column_stack([yj, np.ones(len(yj))])
                coef = np.linalg.lstsq(design, vj, rcond=None)[0]
                u[:, j], beta[j] = coef[:d], coef[d]
            else:
                shared = [k for k in range(d) if k != j and targets[rows, k].all()]
                often = [k for k in range(d) if k != j and targets[rows, k].mean() > 0.5]
                _, vecs = scipy.linalg.eigh(np.cov(yj.T) + 1e-9 * np.eye(d), cov_all)
                hit = [np.cov(y[rows & (context_of == c)].T) for c in np.unique(context_of[rows])]
                least = _zero_valued_direction(
                    vecs[:, : len(often) + 1],
                    cov_obs,
                    u[:, [k for k in shared if found[k]]],
                    np.stack(hit),
                    np.cov(y[~rows].T),
                )
                uj = least * self.intervention_noise / np.sqrt(least @ np.cov(yj.T) @ least)
                u[:, j], beta[j] = uj, values[rows, j].mean() - yj.mean(0) @ uj
            found[j] = True
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
        causal model's ``x`` keeps their shape. For a nonlinear decoder ``steps``
        are the ELBO stage's, after a linear fit and before the latent SCM's
        refit, both of ``warm_start_steps``; checkpoints go to
        ``checkpoint_dir/{linear,neural,latent_scm}``."""
        self.event_shape = None
        x_shape = np.shape(x)[1:]
        x, contexts, context, tv = self._check(x, targets, values)
        if self.decoder == "conv" and len(x_shape) not in (2, 3):
            raise TrainingDataError(
                f"x has rows of shape {tuple(x_shape)}; decoder='conv' takes images "
                "(rows, height, width) or (rows, height, width, channels): use decoder='mlp' "
                "for vectors"
            )
        if self.decoder != "linear":
            return self._fit_neural(
                x, x_shape, contexts[context], tv, rng_key, steps, progress, checkpoint_dir, resume
            )
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
        self.params, self.history = _fit_restarts(
            svi, state, args, kwargs, steps, k_fit, "BIOLS", progress, checkpoint_dir, resume
        )
        self.params["basis"] = np.asarray(basis)
        self.event_shape = tuple(x_shape)
        self._causal = None
        return self

    def _fit_neural(self, x, x_shape, targets, tv, key, steps, progress, checkpoint_dir, resume):
        """The nonlinear decoders: a linear fit, then the ELBO with the encoder and
        decoder residual on it (see :mod:`~probcausal.models.biols.neural`)."""
        d = self.num_latents
        k_lin, k_nets, k_init, k_fit, k_scm = jax.random.split(key, 5)
        linear = BIOLS(
            d,
            order=self.order,
            restarts=self.restarts,
            learning_rate=self.learning_rate,
            intervention_noise=self.intervention_noise,
            order_temperature=self.order_temperature,
            edge_threshold=self.edge_threshold,
        )
        ck = None if checkpoint_dir is None else Path(checkpoint_dir)
        linear.fit(
            x,
            targets=targets,
            values=tv,
            rng_key=k_lin,
            steps=self.warm_start_steps,
            progress=progress,
            checkpoint_dir=None if ck is None else ck / "linear",
            resume=resume,
        )
        z_lin = linear.encode(x, targets=targets, values=tv)
        x_stats = (
            jnp.asarray(x.mean(0)),
            jnp.asarray(np.maximum(x.std(0), 1e-2 * x.std() + 1e-12)),
            jnp.asarray(z_lin.std(0) + 1e-6),
        )
        seed = int(jax.random.randint(k_nets, (), 0, 2**31 - 1))
        image_shape = tuple(x_shape) + (1,) if len(x_shape) == 2 else tuple(x_shape)
        decoder = neural.ResidualDecoder(
            linear.decoder_matrix(),
            linear.params["b"],
            x_stats[1],
            x_stats[2],
            kind=self.decoder,
            hidden=self.hidden,
            image_shape=image_shape if self.decoder == "conv" else None,
            rngs=nnx.Rngs(seed),
        )
        encoder = neural.residual_encoder(
            x.shape[1], d, hidden=self.hidden, rngs=nnx.Rngs(seed + 1)
        )
        kwargs = dict(
            self._model_kwargs(),
            decoder=decoder,
            encoder=encoder,
            x_stats=x_stats,
            batch_size=self.batch_size,
        )
        kwargs.pop("objective")
        schedule = optax.cosine_decay_schedule(self.neural_learning_rate, steps, alpha=0.05)
        svi = SVI(
            neural.neural_biols_model,
            neural.neural_biols_guide,
            optax.adam(schedule),
            Trace_ELBO(),
        )
        args = (jnp.asarray(x), jnp.asarray(targets), jnp.asarray(tv), jnp.asarray(z_lin))
        names = ["L_auto_loc", "L_auto_scale", "log_sigma_auto_loc", "log_sigma_auto_scale"]
        names += ["log_sigma_x"] + (["order_logits"] if self.order is None else [])
        start = {k: jnp.asarray(linear.params[k]) for k in names}
        state = svi.init(_raw(k_init), *args, **kwargs, init_params=start)

        def step(state, key, data):
            state, loss = svi.update(state._replace(rng_key=_raw(key)), *data, **kwargs)
            return state, {"loss": loss}

        result = run_fit(
            step,
            state,
            steps,
            rng_key=k_fit,
            data=args,
            progress=progress,
            description=f"BIOLS ({self.decoder} decoder)",
            checkpoint_dir=None if ck is None else ck / "neural",
            resume=resume,
            params_fn=svi.get_params,
        )
        self.params = jax.tree.map(np.asarray, result.params)
        self._linear, self._nets = linear, (decoder, encoder, x_stats)
        # the latent SCM again, with restarts, on the encoded rows
        z_loc, z_scale = neural.encode_rows(
            lambda h: self._apply("encoder", h),
            *args,
            x_stats,
            self.intervention_noise,
        )
        scm, scm_history = self._fit_latent_scm(
            z_loc, z_scale**2, args[1], args[2], k_scm, progress, ck, resume
        )
        self.params.update(scm)
        self.event_shape = tuple(x_shape)
        self.history = {
            **result.metrics,
            "linear": linear.history,
            "latent_scm": scm_history,
            "compile_seconds": result.compile_seconds,
            "steps_per_second": result.steps_per_second,
        }
        self._causal = None
        return self

    def _fit_latent_scm(self, z_loc, z_var, targets, tv, key, progress, ck, resume):
        """The posterior over the order, ``L`` and ``log σ`` given the encoder's
        ``q(z)`` (:func:`~.neural.latent_scm_model`): ``restarts`` vectorized fits of
        ``warm_start_steps`` steps, the order logits started at the best order of
        ``z_loc`` (:func:`~.order.best_order`) and perturbations of it."""
        kwargs = self._model_kwargs()
        kwargs.pop("objective")
        steps = self.warm_start_steps
        schedule = optax.cosine_decay_schedule(self.learning_rate, steps, alpha=0.05)
        svi = SVI(neural.latent_scm_model, biols_guide, optax.adam(schedule), Trace_ELBO())
        args = (z_loc, z_var, targets, tv)
        k_init, k_order, k_fit = jax.random.split(key, 3)
        rng = np.random.default_rng(np.asarray(jax.random.key_data(k_order)).ravel().tolist())
        logits = jnp.asarray(
            _order_logits_init(np.asarray(z_loc), np.asarray(targets), self.restarts, rng)
        )

        def init(k, lg):
            start = None if self.order is not None else {"order_logits": lg}
            return svi.init(k, *args, **kwargs, init_params=start)

        keys = jax.random.key_data(jax.random.split(k_init, self.restarts))
        state = jax.jit(jax.vmap(init))(keys, logits)
        ck = None if ck is None else ck / "latent_scm"
        return _fit_restarts(
            svi, state, args, kwargs, steps, k_fit, "BIOLS (latent SCM)", progress, ck, resume
        )

    @property
    def warm_start(self) -> BIOLS | None:
        """For a nonlinear decoder, the linear BIOLS fit its networks start from
        (a fitted ``BIOLS(decoder="linear")`` of the same data); else ``None``."""
        return self._linear

    def _apply(self, which: str, *inputs):
        """Call the fitted decoder or encoder (``which``) on ``inputs``."""
        module = self._nets[0 if which == "decoder" else 1]
        return with_params(module, self.params[f"{which}$params"])(*inputs)

    def decode(self, z) -> np.ndarray:
        """The decoder's mean of ``x`` for latents ``z`` ``(..., d)`` (flattened
        features)."""
        self._require_fit()
        z = jnp.asarray(z, jnp.float32)
        if self.decoder == "linear":
            return np.asarray(z @ self.decoder_matrix() + self.params["b"])
        return np.asarray(self._apply("decoder", z))

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
        """The linear decoder ``A`` ``(d, D)``: ``x = z A + b + noise`` (for a
        nonlinear decoder, its linear part)."""
        self._require_fit()
        if self.decoder != "linear":
            return np.asarray(self.params["decoder$params"]["matrix"])
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
        """``E[z | x]`` per row under each row's interventions: exact for the
        linear decoder (with the posterior mean parameters), the encoder's mean for
        a nonlinear one."""
        self._require_fit()
        x, contexts, context, tv = self._check(x, targets, values)
        if self.decoder != "linear":
            mask = contexts[context]
            z_lin = self._linear.encode(x, targets=mask, values=tv)
            encoder_fn = lambda h: self._apply("encoder", h)  # noqa: E731
            loc, _ = neural.encode_rows(
                encoder_fn,
                jnp.asarray(x),
                jnp.asarray(mask),
                jnp.asarray(tv),
                jnp.asarray(z_lin),
                self._nets[2],
                self.intervention_noise,
            )
            return np.asarray(loc)
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
        if self.decoder == "linear":
            matrix, bias = jnp.asarray(self.decoder_matrix()), jnp.asarray(self.params["b"])
            decode = lambda z: z @ matrix + bias  # noqa: E731
        else:
            decode = lambda z: self._apply("decoder", z)  # noqa: E731
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
                mean = decode(latents).reshape(latents.shape[:-1] + event_shape)
                numpyro.sample("x", dist.Normal(mean, x_noise).to_event(len(event_shape)))

        return biols_latent_scm
