"""BIOLS with a nonlinear decoder: the latents drawn per row from an amortized
encoder ``q(z | x, targets, values)``, the decoder a Flax network, both trained
with the ELBO.

The collapsed likelihood needs a linear decoder; a nonlinear one has no closed
form, so each row's latents get a variational posterior. The encoder reads the
row, its targets and its values, which is what makes zero-valued interventions
informative here too: an intervened latent's posterior is its intervention
distribution ``N(v, ε²)``, the others are inferred from ``x`` (the original
code draws every row's latents from their prior, independently of ``x``).

Both networks are residual on a linear BIOLS fit of the same data: the decoder is
``x = z A + b + s ⊙ f(z)`` (``f`` an MLP, or a convolutional generator for
images behind a gate that starts at zero) and the encoder's mean is the linear
model's exact ``E[z | x]`` plus a learned correction, so the ELBO fit starts at
the linear solution and refines it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from flax import nnx
from jax.scipy.stats import norm
from numpyro.contrib.module import nnx_module
from numpyro.distributions import constraints

from probcausal.models.biols.sites import latent_scm_guide, latent_scm_sites
from probcausal.nn import MLP, ConvGenerator, Encoder

__all__ = [
    "LatentSCM",
    "ResidualDecoder",
    "latent_scm_model",
    "neural_biols_guide",
    "neural_biols_model",
    "residual_encoder",
]


class LatentSCM(dist.Distribution):
    """The latents of rows with known hard interventions under a linear-Gaussian
    SCM: ``z_j = v_j + N(0, ε²)`` where row ``targets[j]``, else ``z_j = (z W)_j +
    N(0, σ_j²)``. Batch shape ``targets.shape[:-1]``, event shape ``(d,)``; ``W``
    acyclic, so the density is the product of the conditionals.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> w = jnp.array([[0.0, 2.0], [0.0, 0.0]])
    >>> d = LatentSCM(w, jnp.ones(2), jnp.array([[True, False]]), jnp.array([[3.0, 0.0]]), 0.1)
    >>> z = d.sample(jax.random.key(0), (2000,))
    >>> bool(abs(z[:, 0, 1].mean() - 6.0) < 0.1)
    True
    """

    arg_constraints = {}
    support = constraints.real_vector
    reparametrized_params = []

    def __init__(self, weights, scale, targets, values, intervention_noise, *, validate_args=None):
        self.weights, self.scale = weights, scale
        self.targets = jnp.asarray(targets, weights.dtype)
        self.values = jnp.asarray(values, weights.dtype)
        self.intervention_noise = intervention_noise
        d = weights.shape[-1]
        super().__init__(self.targets.shape[:-1], (d,), validate_args=validate_args)

    def _scales(self):
        t = self.targets
        return t * self.intervention_noise + (1.0 - t) * self.scale

    def log_prob(self, value):
        t = self.targets
        mean = t * self.values + (1.0 - t) * (value @ self.weights)
        return norm.logpdf(value, mean, self._scales()).sum(-1)

    def sample(self, key, sample_shape=()):
        shape = sample_shape + self.batch_shape + self.event_shape
        t = self.targets
        base = t * self.values + self._scales() * jax.random.normal(key, shape)
        # z = base + (z W) ⊙ (1 - t): W nilpotent, so d substitutions are exact
        return jax.lax.fori_loop(
            0, self.event_shape[0], lambda _, z: base + (z @ self.weights) * (1.0 - t), base
        )


class ResidualDecoder(nnx.Module):
    """``x = z A + b + s ⊙ f(z / z_scale)`` (flattened ``x``): the linear decoder
    plus a network ``f``, an :class:`~probcausal.nn.MLP` whose last layer starts at
    zero, or a :class:`~probcausal.nn.ConvGenerator` for images behind a gate
    ``g`` that starts at zero (``s ⊙ g (f(z) - ½)``). ``s`` is ``x``'s standard
    deviation per feature, ``z_scale`` the latents'.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> a = jnp.ones((2, 3))
    >>> dec = ResidualDecoder(a, jnp.zeros(3), jnp.ones(3), jnp.ones(2), hidden=(8,),
    ...                       rngs=nnx.Rngs(0))
    >>> dec(jnp.array([[1.0, 2.0]])).tolist()  # the network's last layer starts at zero
    [[3.0, 3.0, 3.0]]
    """

    def __init__(
        self,
        matrix,
        bias,
        x_scale,
        z_scale,
        *,
        kind: str = "mlp",
        hidden=(128, 128),
        image_shape=None,
        channels=(8,),
        rngs: nnx.Rngs,
    ):
        d, dim = matrix.shape
        self.matrix = nnx.Param(jnp.asarray(matrix, jnp.float32))
        self.bias = nnx.Param(jnp.asarray(bias, jnp.float32))
        self.x_scale = jnp.asarray(x_scale, jnp.float32)
        self.z_scale = jnp.asarray(z_scale, jnp.float32)
        self.kind = kind
        if kind == "mlp":
            self.net = MLP(d, dim, hidden=hidden, rngs=rngs)
            last = self.net.layers[-1]
            last.kernel.value = jnp.zeros_like(last.kernel.value)
        else:
            self.net = ConvGenerator(d, 0, image_shape=image_shape, channels=channels, rngs=rngs)
            self.gate = nnx.Param(jnp.zeros((), jnp.float32))

    def __call__(self, z):
        linear = z @ self.matrix.value + self.bias.value
        h = z / self.z_scale
        if self.kind == "mlp":
            residual = self.net(h)
        else:
            batch = h.shape[:-1]
            h2 = h.reshape((-1, h.shape[-1]))
            img = self.net(h2, jnp.zeros((h2.shape[0], 0), h2.dtype)) - 0.5
            residual = self.gate.value * img.reshape(batch + (-1,))
        return linear + self.x_scale * residual


def residual_encoder(dim: int, d: int, *, hidden=(128, 128), init_scale: float = 0.1, rngs):
    """An :class:`~probcausal.nn.Encoder` over ``[x, targets, values, z_lin]``
    (``dim + 3 d`` features) whose mean starts at zero (a correction to the linear
    posterior mean ``z_lin``) and whose scale starts at ``init_scale``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> loc, scale = residual_encoder(4, 2, hidden=(8,), rngs=nnx.Rngs(0))(jnp.ones((1, 10)))
    >>> loc.tolist(), [round(v, 4) for v in scale[0].tolist()]
    ([[0.0, 0.0]], [0.1, 0.1])
    """
    enc = Encoder(dim + 3 * d, d, hidden=hidden, rngs=rngs)
    last = enc.net.layers[-1]
    last.kernel.value = jnp.zeros_like(last.kernel.value)
    raw = jnp.log(jnp.expm1(init_scale - 1e-4))
    last.bias.value = jnp.concatenate([jnp.zeros(d), jnp.full(d, raw)]).astype(jnp.float32)
    return enc


def neural_biols_model(
    x,
    targets,
    target_values,
    z_lin,
    *,
    num_latents: int,
    decoder: nnx.Module,
    encoder: nnx.Module,
    x_stats,
    perm=None,
    order_temperature: float = 0.2,
    intervention_noise: float = 0.1,
    batch_size: int = 256,
):
    """BIOLS with a nonlinear decoder as a NumPyro program: the priors of
    :func:`~.sites.latent_scm_sites` over ``L`` and ``log σ`` (and the order), each
    row's latents from :class:`LatentSCM` under its interventions, ``x`` from
    ``Normal(decoder(z), σ_x)``; rows are subsampled ``batch_size`` at a time.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from numpyro import handlers
    >>> x, t, v, z = jnp.ones((6, 3)), jnp.zeros((6, 2), bool), jnp.zeros((6, 2)), jnp.zeros((6, 2))
    >>> dec = ResidualDecoder(jnp.ones((2, 3)), jnp.zeros(3), jnp.ones(3), jnp.ones(2),
    ...                       hidden=(8,), rngs=nnx.Rngs(0))
    >>> enc = residual_encoder(3, 2, hidden=(8,), rngs=nnx.Rngs(1))
    >>> kw = dict(num_latents=2, decoder=dec, encoder=enc, x_stats=None, batch_size=4)
    >>> tr = handlers.trace(handlers.seed(neural_biols_model, 0)).get_trace(x, t, v, z, **kw)
    >>> tr["z"]["value"].shape, tr["x"]["is_observed"]
    ((4, 2), True)
    """
    d = num_latents
    weights, sigma = latent_scm_sites(d, x.dtype, perm, order_temperature)
    net = nnx_module("decoder", decoder)
    log_x_noise = numpyro.param("log_sigma_x", jnp.zeros((), x.dtype))
    with numpyro.plate("rows", x.shape[0], subsample_size=min(batch_size, x.shape[0])) as idx:
        z = numpyro.sample(
            "z", LatentSCM(weights, sigma, targets[idx], target_values[idx], intervention_noise)
        )
        numpyro.sample("x", dist.Normal(net(z), jnp.exp(log_x_noise)).to_event(1), obs=x[idx])


def encoder_inputs(x, targets, target_values, z_lin, x_stats):
    """The encoder's features: standardized ``x``, the target mask, the values and
    the linear posterior mean in latent units.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> stats = (jnp.zeros(3), jnp.full(3, 2.0), jnp.ones(2))
    >>> encoder_inputs(jnp.ones((1, 3)), jnp.array([[True, False]]), jnp.array([[5.0, 0.0]]),
    ...                jnp.zeros((1, 2)), stats).tolist()
    [[0.5, 0.5, 0.5, 1.0, 0.0, 5.0, 0.0, 0.0, 0.0]]
    """
    x_mean, x_scale, z_scale = x_stats
    return jnp.concatenate(
        [(x - x_mean) / x_scale, targets.astype(x.dtype), target_values / z_scale, z_lin / z_scale],
        axis=-1,
    )


def encode_rows(encoder_fn, x, targets, target_values, z_lin, x_stats, intervention_noise):
    """``q(z | x, targets, values)``'s ``(loc, scale)``: the linear posterior mean
    plus the encoder's correction; an intervened latent's is ``N(v, ε²)``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> stats = (jnp.zeros(3), jnp.ones(3), jnp.ones(2))
    >>> fn = lambda h: (jnp.full((1, 2), 0.5), jnp.full((1, 2), 0.3))  # a stand-in encoder
    >>> loc, scale = encode_rows(fn, jnp.ones((1, 3)), jnp.array([[True, False]]),
    ...                          jnp.array([[5.0, 0.0]]), jnp.ones((1, 2)), stats, 0.1)
    >>> loc.tolist(), [round(v, 4) for v in scale[0].tolist()]
    ([[5.0, 1.5]], [0.1, 0.3])
    """
    z_scale = x_stats[2]
    res, scale = encoder_fn(encoder_inputs(x, targets, target_values, z_lin, x_stats))
    loc = jnp.where(targets, target_values, z_lin + res * z_scale)
    scale = jnp.where(targets, intervention_noise, scale * z_scale)
    return loc, scale


def neural_biols_guide(
    x,
    targets,
    target_values,
    z_lin,
    *,
    num_latents: int,
    decoder: nnx.Module,
    encoder: nnx.Module,
    x_stats,
    perm=None,
    order_temperature: float = 0.2,
    intervention_noise: float = 0.1,
    batch_size: int = 256,
):
    """Mean-field Normal over ``L`` and ``log σ`` (:func:`~.sites.latent_scm_guide`)
    and the amortized ``q(z | x, targets, values)`` per row (the arguments of
    :func:`neural_biols_model`).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from numpyro import handlers
    >>> x, t, v, z = jnp.ones((6, 3)), jnp.zeros((6, 2), bool), jnp.zeros((6, 2)), jnp.zeros((6, 2))
    >>> stats = (jnp.zeros(3), jnp.ones(3), jnp.ones(2))
    >>> enc = residual_encoder(3, 2, hidden=(8,), rngs=nnx.Rngs(1))
    >>> kw = dict(num_latents=2, decoder=None, encoder=enc, x_stats=stats, batch_size=4)
    >>> tr = handlers.trace(handlers.seed(neural_biols_guide, 0)).get_trace(x, t, v, z, **kw)
    >>> sorted(k for k in tr if not k.endswith("params"))[:4]
    ['L', 'L_auto_loc', 'L_auto_scale', 'log_sigma']
    """
    latent_scm_guide(num_latents, x.dtype)
    net = nnx_module("encoder", encoder)
    with numpyro.plate("rows", x.shape[0], subsample_size=min(batch_size, x.shape[0])) as idx:
        loc, scale = encode_rows(
            net, x[idx], targets[idx], target_values[idx], z_lin[idx], x_stats, intervention_noise
        )
        numpyro.sample("z", dist.Normal(loc, scale).to_event(1))


def expected_latent_log_prob(z_loc, z_var, targets, target_values, weights, sigma, eps):
    """``E_q[log p(z | W, σ, targets, values)]`` summed over rows, in closed form
    for a mean-field Normal ``q(z) = N(z_loc, diag(z_var))``: a free latent's
    expected squared residual is ``(μ_j - (μ W)_j)² + s_j² + Σ_i W_ij² s_i²``.

    Examples
    --------
    With no variance it is :class:`LatentSCM`'s log density:

    >>> import jax.numpy as jnp
    >>> w, sigma = jnp.array([[0.0, 2.0], [0.0, 0.0]]), jnp.array([1.0, 0.5])
    >>> z, t, v = jnp.array([[0.3, 1.0]]), jnp.array([[False, False]]), jnp.zeros((1, 2))
    >>> a = expected_latent_log_prob(z, jnp.zeros((1, 2)), t, v, w, sigma, 0.1)
    >>> b = LatentSCM(w, sigma, t, v, 0.1).log_prob(z).sum()
    >>> bool(jnp.allclose(a, b))
    True
    """
    t = targets.astype(z_loc.dtype)
    resid = z_loc - t * target_values - (1.0 - t) * (z_loc @ weights)
    sq = resid**2 + z_var + (1.0 - t) * (z_var @ weights**2)
    scale = t * eps + (1.0 - t) * sigma
    return -0.5 * jnp.sum(sq / scale**2 + 2.0 * jnp.log(scale) + jnp.log(2.0 * jnp.pi))


def latent_scm_model(
    z_loc,
    z_var,
    targets,
    target_values,
    *,
    num_latents: int,
    perm=None,
    order_temperature: float = 0.2,
    intervention_noise: float = 0.1,
):
    """The latent SCM's part of the ELBO with the encoder's posterior held fixed:
    the priors of :func:`~.sites.latent_scm_sites` and
    :func:`expected_latent_log_prob` of the encoded rows. Fitted with restarts
    after the networks, it re-learns the order and weights from latents that are
    now nonlinearly decoded (the linear warm start may have settled on a wrong
    order).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from numpyro import handlers
    >>> z, t = jnp.zeros((5, 2)), jnp.zeros((5, 2), bool)
    >>> tr = handlers.trace(handlers.seed(latent_scm_model, 0)).get_trace(
    ...     z, jnp.ones((5, 2)), t, jnp.zeros((5, 2)), num_latents=2, perm=jnp.eye(2))
    >>> tr["W"]["value"].shape, "z" in tr  # the expected log density as a factor
    ((2, 2), True)
    """
    weights, sigma = latent_scm_sites(num_latents, z_loc.dtype, perm, order_temperature)
    value = expected_latent_log_prob(
        z_loc, z_var, targets, target_values, weights, sigma, intervention_noise
    )
    numpyro.factor("z", value)
