"""Adversarial training of causal models with implicit (neural) mechanisms:
WGAN-GP with one critic per set of target sites.

The generators are the mechanisms of the model: a batch of fake samples is the
model run ``batch_size`` times (vmapped over keys), so latent confounders (noise
shared between sites) are learned by matching the joint distribution of the
observed sites.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh
from numpyro.distributions import biject_to, constraints
from numpyro.handlers import condition, seed, substitute, trace

from probcausal.errors import TrainingDataError
from probcausal.handlers.stack import isolated
from probcausal.infer.training import FitResult, data_mesh, fit, replicate, shard_batch

__all__ = ["WGANGP", "WGANGPState"]


class WGANGPState(NamedTuple):
    """Generator parameters (unconstrained), critic parameters (one pure dict per
    critic) and the two optimizer states."""

    generator_params: dict
    critic_params: tuple
    generator_opt_state: Any
    critic_opt_state: Any


class WGANGP:
    """Wasserstein GAN with gradient penalty for the mechanisms of a causal model.

    Parameters
    ----------
    model : callable
        A NumPyro model of one unit (no plate over units); its ``param`` sites
        (trainable :func:`probcausal.nn.sample` nets, ``numpyro.param``) are the
        generator parameters. :class:`~probcausal.nn.Frozen` nets are not trained.
    critics : dict
        Site name or tuple of site names -> critic (a Flax NNX module called on a
        dict ``site -> (batch, *event)`` and returning ``(batch,)`` scores, such as
        :class:`~probcausal.nn.Critic`). Each critic compares the joint
        distribution of its sites in the data and in the model.
    generator_optimizer, critic_optimizer : optax.GradientTransformation
        Default ``adam(1e-4, b1=0.5, b2=0.9)`` for both, as in WGAN-GP.
    conditions : sequence of str
        Sites clamped to data in the fake samples: each fake unit takes their
        values from a data row (a conditional GAN, matching ``P(targets | do(conditions))``
        when the conditions are the do-parents). Critics usually see them too.
    n_critic : int
        Critic updates per generator update.
    gp_weight : float
        Weight of the gradient penalty.
    batch_size : int
        Real and fake samples per update.
    pack : int
        PacGAN packing: each critic input is ``pack`` samples, so critics are
        called on ``site -> (batch / pack, pack, *event)`` (a flattening critic
        such as :class:`~probcausal.nn.Critic` then takes ``pack`` times the
        features). Packing makes missing modes visible to the critic.
    model_args, model_kwargs
        Arguments of the model.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> from flax import nnx
    >>> import probcausal as pc
    >>> g = pc.nn.MLPGenerator(0, 1, hidden=(16,), rngs=nnx.Rngs(0))
    >>> def model():
    ...     pc.nn.sample("x", g)
    >>> gan = pc.infer.WGANGP(model, {"x": pc.nn.Critic(1, hidden=(16,), rngs=nnx.Rngs(1))},
    ...                       batch_size=64)
    >>> data = {"x": 3.0 + jax.random.normal(jax.random.key(0), (2000,))}
    >>> result = gan.fit(data, 300, rng_key=jax.random.key(1), progress=False)
    >>> draws = gan.sample(result.params, jax.random.key(2), 1000)
    >>> draws["x"].shape
    (1000,)
    """

    def __init__(
        self,
        model: Callable,
        critics: Mapping[str | tuple[str, ...], nnx.Module],
        *,
        generator_optimizer: optax.GradientTransformation | None = None,
        critic_optimizer: optax.GradientTransformation | None = None,
        conditions: tuple[str, ...] = (),
        n_critic: int = 5,
        gp_weight: float = 10.0,
        batch_size: int = 256,
        pack: int = 1,
        model_args: tuple = (),
        model_kwargs: Mapping[str, Any] | None = None,
    ):
        if pack < 1 or batch_size % pack:
            raise ValueError(f"pack={pack} must be a positive divisor of batch_size={batch_size}")
        self.pack = int(pack)
        if not critics:
            raise ValueError("WGANGP needs at least one critic: {site or (sites...): critic}")
        self.model = model
        self.sites = tuple((k,) if isinstance(k, str) else tuple(sorted(k)) for k in critics)
        self.critic_graphs = []
        self.critic_init = []
        for c in critics.values():
            graphdef, state = nnx.split(c)
            self.critic_graphs.append((graphdef, state))
            self.critic_init.append(nnx.to_pure_dict(state))
        self.targets = tuple(sorted({n for s in self.sites for n in s}))
        self.conditions = tuple(conditions)
        self.data_sites = tuple(sorted(set(self.targets) | set(self.conditions)))
        self.generator_optimizer = generator_optimizer or optax.adam(1e-4, b1=0.5, b2=0.9)
        self.critic_optimizer = critic_optimizer or optax.adam(1e-4, b1=0.5, b2=0.9)
        self.n_critic = int(n_critic)
        self.gp_weight = float(gp_weight)
        self.batch_size = int(batch_size)
        self.model_args = tuple(model_args)
        self.model_kwargs = dict(model_kwargs or {})
        self._inspect()

    # -- the model as a generator -------------------------------------------------

    def _inspect(self):
        with isolated():
            tr = trace(seed(self.model, 0)).get_trace(*self.model_args, **self.model_kwargs)
        missing = [n for n in self.data_sites if n not in tr or tr[n]["type"] != "sample"]
        if missing:
            sites = sorted(n for n, s in tr.items() if s["type"] == "sample")
            raise TrainingDataError(
                f"the critics or conditions name sites {missing} that the model does not "
                f"sample; its sample sites are {sites}"
            )
        self.site_shapes = {n: tuple(jnp.shape(tr[n]["value"])) for n in self.data_sites}
        self._init_params = {}
        self._transforms = {}
        for name, site in tr.items():
            if site["type"] != "param":
                continue
            constraint = site["kwargs"].get("constraint", constraints.real)
            t = biject_to(constraint)
            self._transforms[name] = t
            self._init_params[name] = jax.tree.map(t.inv, site["value"])
        if not self._init_params:
            raise TrainingDataError(
                "the model has no trainable parameters: declare neural sites with "
                "pc.nn.sample (a Flax module, not Frozen) or numpyro.param"
            )

    def constrain(self, params: Mapping[str, Any]) -> dict:
        """Unconstrained generator parameters -> the model's ``param`` values."""
        return {n: jax.tree.map(self._transforms[n], v) for n, v in params.items()}

    def simulate(
        self,
        params: Mapping[str, Any],
        rng_key: jax.Array,
        num_samples: int,
        given: Mapping[str, Any] | None = None,
    ):
        """``num_samples`` joint draws of the target sites with ``params`` (the
        constrained values, as in ``FitResult.params``); ``given`` holds one value
        per sample of each condition site."""
        keys = jax.random.split(rng_key, num_samples)
        return self._simulate(params, keys, given)

    def _simulate(self, params, keys, given=None):
        def one(key, row):
            model = substitute(seed(self.model, key), data=params)
            if row is not None:
                model = condition(model, data=row)
            tr = trace(model).get_trace(*self.model_args, **self.model_kwargs)
            return {n: tr[n]["value"] for n in self.targets}

        return jax.vmap(one)(keys, given)

    def sample(
        self,
        params: Mapping[str, Any],
        rng_key: jax.Array,
        num_samples: int,
        given: Mapping[str, Any] | None = None,
    ) -> dict:
        """Joint draws of every target site from the trained model (with the
        condition sites set to ``given``, one row per sample, if any)."""
        if self.conditions and given is None:
            raise ValueError(f"this model is conditional: pass given={{...}} for {self.conditions}")
        with isolated():
            return jax.jit(self.simulate, static_argnums=2)(params, rng_key, num_samples, given)

    # -- init / step / fit ----------------------------------------------------------

    def init(self, rng_key: jax.Array | None = None) -> WGANGPState:
        """The initial state: the model's and critics' initial weights."""
        critic_params = tuple(jax.tree.map(jnp.asarray, c) for c in self.critic_init)
        gparams = jax.tree.map(jnp.asarray, self._init_params)
        return WGANGPState(
            gparams,
            critic_params,
            self.generator_optimizer.init(gparams),
            self.critic_optimizer.init(critic_params),
        )

    def check_data(self, data: Mapping[str, Any]) -> dict:
        """Validate ``data`` (site -> ``(n, *shape)`` array) against the model."""
        missing = [n for n in self.data_sites if n not in data]
        if missing:
            raise TrainingDataError(
                f"data has no values for the critics' or conditions' sites {missing}; "
                f"got {sorted(data)}"
            )
        out, lengths = {}, set()
        for n in self.data_sites:
            a = jnp.asarray(data[n], dtype=jnp.result_type(float))
            if a.shape[1:] != self.site_shapes[n]:
                raise TrainingDataError(
                    f"data['{n}'] has shape {a.shape}: expected (n, *{self.site_shapes[n]}), "
                    f"the site's shape per unit (one-hot encode discrete neural sites with "
                    f"pc.nn.one_hot)"
                )
            if not bool(jnp.all(jnp.isfinite(a))):
                raise TrainingDataError(f"data['{n}'] holds NaN or infinite values")
            lengths.add(a.shape[0])
            out[n] = a
        if len(lengths) != 1:
            raise TrainingDataError(f"data arrays have different lengths {sorted(lengths)}")
        return out

    def _critic(self, i, params):
        graphdef, template = self.critic_graphs[i]
        state = jax.tree.map(lambda x: x, template)
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(graphdef, state)

    def _critic_losses(self, critic_params, real, fake, key):
        """Sum over critics of E[D(fake)] - E[D(real)] + gp_weight * GP, and the
        summed Wasserstein estimates E[D(real)] - E[D(fake)]."""
        total, w_dist = 0.0, 0.0
        keys = jax.random.split(key, len(self.sites))
        for i, sites in enumerate(self.sites):
            critic = self._critic(i, critic_params[i])
            r = self._pack({n: real[n] for n in sites})
            f = self._pack({n: fake[n] for n in sites})
            d_real, d_fake = critic(r).mean(), critic(f).mean()
            eps = jax.random.uniform(keys[i], (self.batch_size // self.pack,))
            mix = {
                n: eps.reshape((-1,) + (1,) * (r[n].ndim - 1)) * r[n]
                + (1 - eps.reshape((-1,) + (1,) * (r[n].ndim - 1))) * f[n]
                for n in sites
            }
            grads = jax.grad(lambda x, c=critic: c(x).sum())(mix)
            sq = sum(jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=-1) for g in grads.values())
            gp = jnp.mean((jnp.sqrt(sq + 1e-12) - 1.0) ** 2)
            total = total + d_fake - d_real + self.gp_weight * gp
            w_dist = w_dist + d_real - d_fake
        return total, w_dist

    def _pack(self, values):
        """PacGAN: ``pack`` samples per critic input, ``(batch, *event)`` ->
        ``(batch / pack, pack, *event)``."""
        if self.pack == 1:
            return values
        return {n: v.reshape((-1, self.pack) + v.shape[1:]) for n, v in values.items()}

    def _batch(self, data, key):
        n = next(iter(data.values())).shape[0]
        idx = jax.random.randint(key, (self.batch_size,), 0, n)
        return shard_batch({k: v[idx] for k, v in data.items()}, self._mesh)

    def _fake(self, gparams, key, data):
        k_keys, k_rows = jax.random.split(key)
        keys = shard_batch(jax.random.split(k_keys, self.batch_size), self._mesh)
        given = None
        if self.conditions:
            given = self._batch({n: data[n] for n in self.conditions}, k_rows)
        fake = self._simulate(self.constrain(gparams), keys, given)
        return {**fake, **(given or {})}

    def step(self, state: WGANGPState, rng_key: jax.Array, data) -> tuple[WGANGPState, dict]:
        """``n_critic`` critic updates, then one generator update."""
        k_critic, k_gen = jax.random.split(rng_key)

        def critic_update(carry, key):
            cparams, copt = carry
            k_real, k_fake, k_gp = jax.random.split(key, 3)
            real = self._batch(data, k_real)
            fake = jax.lax.stop_gradient(self._fake(state.generator_params, k_fake, data))
            (loss, w), grads = jax.value_and_grad(self._critic_losses, has_aux=True)(
                cparams, real, fake, k_gp
            )
            updates, copt = self.critic_optimizer.update(grads, copt, cparams)
            return (optax.apply_updates(cparams, updates), copt), (loss, w)

        (cparams, copt), (closs, w) = jax.lax.scan(
            critic_update,
            (state.critic_params, state.critic_opt_state),
            jax.random.split(k_critic, self.n_critic),
        )

        def generator_loss(gparams, key):
            fake = self._fake(gparams, key, data)
            total = 0.0
            for i, sites in enumerate(self.sites):
                packed = self._pack({n: fake[n] for n in sites})
                total = total - self._critic(i, cparams[i])(packed).mean()
            return total

        gloss, grads = jax.value_and_grad(generator_loss)(state.generator_params, k_gen)
        updates, gopt = self.generator_optimizer.update(
            grads, state.generator_opt_state, state.generator_params
        )
        gparams = optax.apply_updates(state.generator_params, updates)
        metrics = {"loss": closs[-1], "generator_loss": gloss, "wasserstein": w[-1]}
        return WGANGPState(gparams, cparams, gopt, copt), metrics

    def fit(
        self,
        data: Mapping[str, Any],
        num_steps: int,
        *,
        rng_key: jax.Array,
        state: WGANGPState | None = None,
        mesh: Mesh | str | None = None,
        **fit_kwargs,
    ) -> FitResult:
        """Train for ``num_steps`` generator steps on ``data`` (site -> ``(n, *shape)``).

        ``**fit_kwargs`` go to :func:`~probcausal.infer.fit`: ``progress``,
        ``checkpoint_dir``, ``checkpoint_every``, ``resume``, ``chunk_size``. With
        ``mesh`` (``"auto"`` or a :class:`jax.sharding.Mesh`) every batch is split
        over the devices and the parameters are replicated. ``FitResult.params``
        holds the model's constrained ``param`` values (for
        ``numpyro.handlers.substitute`` and the queries); ``metrics`` the critic
        ``loss``, ``generator_loss`` and the ``wasserstein`` estimate per step.
        """
        mesh = data_mesh(mesh)
        if mesh is not None and self.batch_size % mesh.shape["data"]:
            raise ValueError(
                f"batch_size={self.batch_size} does not split over {mesh.shape['data']} "
                "devices; choose a multiple"
            )
        data = replicate(self.check_data(data), mesh)
        self._mesh = mesh
        fit_kwargs.setdefault("description", "WGAN-GP")
        try:
            with isolated():
                return fit(
                    self.step,
                    self.init() if state is None else state,
                    num_steps,
                    rng_key=rng_key,
                    data=data,
                    mesh=mesh,
                    params_fn=lambda s: self.constrain(s.generator_params),
                    **fit_kwargs,
                )
        finally:
            self._mesh = None

    _mesh: Mesh | None = None


def wasserstein_1d(a, b) -> float:
    """The Wasserstein-1 distance between two 1-d samples of equal size."""
    a, b = np.sort(np.asarray(a).ravel()), np.sort(np.asarray(b).ravel())
    if a.shape != b.shape:
        raise ValueError(f"samples of different sizes {a.shape} and {b.shape}")
    return float(np.mean(np.abs(a - b)))
