"""Linear-Gaussian latents: the exact conjugate posterior, with the quadratic form
of the log density checked, not assumed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.handlers import condition

from probcausal.compilation import compiled, model_state, signature, split_static
from probcausal.errors import (
    NotGaussian,
)
from probcausal.handlers.stack import isolated
from probcausal.infer.abduction._base import (
    Engine,
    _Freeze,
    _frozen,
    discrete_refusal,
)
from probcausal.sites import SiteInfo

_GAUSSIAN_MAX_UNIT_DIM = 2048  # latent values per unit (per plate index) for "gaussian"


@dataclass(frozen=True)
class _UnitLayout:
    """How latent sites map to a ``(units, per_unit)`` matrix: the plates every latent
    site lies in index the units, which the evidence cannot couple unless a site
    outside the plates reads them (the quadratic check catches that)."""

    names: tuple[str, ...]
    plate_axes: tuple[tuple[int, ...], ...]  # per site: its axes for the shared plates
    moved_shapes: tuple[tuple[int, ...], ...]  # per site: shape with plate axes first
    units: int
    widths: tuple[int, ...]  # per site: values per unit

    def from_units(self, z: jax.Array) -> dict[str, jax.Array]:
        lead = z.ndim - 2
        out, start = {}, 0
        for n, axes, shape, w in zip(
            self.names, self.plate_axes, self.moved_shapes, self.widths, strict=True
        ):
            v = z[..., start : start + w].reshape(z.shape[:lead] + shape)
            out[n] = jnp.moveaxis(v, list(range(lead, lead + len(axes))), [lead + a for a in axes])
            start += w
        return out


def _unit_layout(
    info: Mapping[str, SiteInfo], latents: list[str], by_plates: bool = True
) -> _UnitLayout:
    shared: dict[str, int] | None = None if by_plates else {}
    for n in latents if by_plates else ():
        s = info[n]
        sizes = {}
        for name, dim in s.plates:
            axis = len(s.batch_shape) + dim
            if 0 <= axis < len(s.shape):
                sizes[name] = s.shape[axis]
        if shared is None:
            shared = sizes
        else:
            shared = {k: v for k, v in shared.items() if sizes.get(k) == v}
    plates = sorted(shared or {})
    axes_all, shapes = [], []
    for n in latents:
        s = info[n]
        dims = dict(s.plates)
        axes = tuple(len(s.batch_shape) + dims[p] for p in plates)
        rest = [d for i, d in enumerate(s.shape) if i not in axes]
        axes_all.append(axes)
        shapes.append(tuple(s.shape[a] for a in axes) + tuple(rest))
    units = int(np.prod([shared[p] for p in plates])) if plates else 1
    widths = tuple(int(np.prod(info[n].shape)) // units for n in latents)
    return _UnitLayout(tuple(latents), tuple(axes_all), tuple(shapes), units, widths)


def _gaussian_candidate(info: Mapping[str, SiteInfo], latents: list[str], evidence=()) -> bool:
    """Cheap static screen for ``method="auto"``: Normal latents and Normal children
    of the latents among the observed sites, few enough values per unit."""
    from numpyro.distributions import Normal

    lat, seen = set(latents), set(evidence)
    children = [n for n, s in info.items() if s.parents & lat and (s.observed or n in seen)]
    if not all(issubclass(info[n].family, Normal) for n in [*latents, *children]):
        return False
    return sum(_unit_layout(info, latents).widths) <= _GAUSSIAN_MAX_UNIT_DIM


def _conjugate_draws(grad, layout: _UnitLayout, key, num_samples: int):
    """Draws from N(P^-1 g, P^-1) per unit, with ``g`` the gradient of the log
    joint at 0 and ``P`` minus its Hessian (one Hessian-vector product per value of
    a unit), and whether the log joint is quadratic (checked at two random points:
    around 0 and around the posterior)."""
    width = sum(layout.widths)
    zero = jnp.zeros((layout.units, width))
    g = grad(zero)
    probes = jnp.broadcast_to(jnp.eye(width)[:, None, :], (width, layout.units, width))
    cols = jax.vmap(lambda v: jax.jvp(grad, (zero,), (v,))[1])(probes)
    hess = jnp.moveaxis(cols, 0, -1)  # (units, row, col)
    prec = -0.5 * (hess + jnp.swapaxes(hess, -1, -2))
    if width == 1:  # scalars: no factorization to compile
        chol = jnp.sqrt(prec)
        mean, chol_inv = g / prec[..., 0], 1.0 / chol
    else:
        chol = jnp.linalg.cholesky(prec)
        mean = jax.scipy.linalg.cho_solve((chol, True), g[..., None])[..., 0]
        eye = jnp.broadcast_to(jnp.eye(width), prec.shape)
        chol_inv = jax.scipy.linalg.solve_triangular(chol, eye, lower=True)
    # z = mean + L^{-T} eps has covariance L^{-T} L^{-1} = P^{-1}; one draw for the
    # samples and the check's probe (one random program to compile)
    eps = jax.random.normal(key, (num_samples + 1, layout.units, width))
    probe, eps = eps[-1], eps[:-1]
    z = mean + jnp.einsum("uji,suj->sui", chol_inv, eps)
    sd = jnp.sqrt(jnp.sum(chol_inv**2, axis=-2))

    def residual(point):  # relative misfit of grad f = g - P z
        want = g - jnp.einsum("uij,uj->ui", prec, point)
        got = grad(point)
        scale = jnp.abs(g) + jnp.abs(want - g)
        return jnp.max(jnp.abs(got - want) - 1e-4 * scale - 1e-5 * jnp.max(scale))

    misfit = jnp.maximum(residual(probe), residual(mean + probe * sd))
    ok = jnp.all(jnp.isfinite(chol)) & (misfit <= 0) & jnp.all(jnp.isfinite(mean))
    return layout.from_units(z), ok


def _gaussian(model, info, evidence, latents, key, num_samples, args, kwargs):
    """The exact posterior of linear-Gaussian latents, by the conjugate update.

    The log joint f(z) of the latents with the evidence plugged in is quadratic,
    f(z) = c + g'z - z'Pz/2, so the posterior is N(P^{-1} g, P^{-1}). g is the
    gradient at 0, P minus the Hessian, block-diagonal over the units of the shared
    plates: one Hessian-vector product per value within a unit gives every block.
    Quadraticity is checked, not assumed: the gradient at two random points (around
    0 and around the posterior) must equal g - Pz; otherwise ``NotGaussian``.
    """
    from numpyro.infer.util import log_density

    layouts = [_unit_layout(info, latents)]
    dense = _unit_layout(info, latents, by_plates=False)
    if layouts[0].units > 1 and sum(dense.widths) <= _GAUSSIAN_MAX_UNIT_DIM:
        layouts.append(dense)  # when a site outside the plates couples the units
    width = sum(layouts[0].widths)
    if width > _GAUSSIAN_MAX_UNIT_DIM:
        raise NotGaussian(
            f"method='gaussian' builds a dense {width}x{width} precision per unit for the "
            f"latent sites {latents} (limit {_GAUSSIAN_MAX_UNIT_DIM}); put the units in a "
            "numpyro.plate, or use method='nuts' or 'svi'."
        )
    frozen = _frozen(model, info, evidence, latents, args, kwargs)
    arg_dyn, arg_key, arg_rebuild = split_static((tuple(args), dict(kwargs)), False)

    def build(layout: _UnitLayout):
        def run(key, ev, frozen, arg_leaves):
            a, kw = arg_rebuild(arg_leaves)
            inner = _Freeze(condition(model, ev), frozen)

            def grad(z):  # (units, width) -> (units, width)
                f = lambda z: log_density(inner, a, kw, layout.from_units(z))[0]  # noqa: E731
                return jax.grad(f)(z)

            return _conjugate_draws(grad, layout, key, num_samples)

        return run

    for layout in layouts:
        program = compiled(
            (
                "gaussian",
                model_state(model),
                layout,
                num_samples,
                arg_key,
                signature((dict(evidence), frozen, arg_dyn)),
            ),
            lambda: build(layout),  # noqa: B023 (called at once)
        )
        with isolated():
            samples, ok = program(key, dict(evidence), frozen, arg_dyn)
        if bool(ok):
            return samples
    raise NotGaussian(
        f"method='gaussian': the log density is not quadratic in the latent sites "
        f"{latents} given the evidence {sorted(evidence)} (a mechanism is nonlinear in "
        "them, a scale depends on them, or the posterior is improper). Use "
        "method='nuts' or 'svi'."
    )


class Gaussian(Engine):
    """Linear-Gaussian latents, the exact conjugate posterior (``"gaussian"``);
    raises :class:`~probcausal.errors.NotGaussian` when the check fails."""

    def refusal(self, info, latents):
        discrete = [n for n in latents if info[n].discrete]
        return discrete_refusal("gaussian", discrete) if discrete else None

    def posterior(self, problem, rng_key, num_samples):
        p = problem
        return _gaussian(
            p.model, p.info, p.evidence, p.latents, rng_key, num_samples, p.args, p.kwargs
        )
