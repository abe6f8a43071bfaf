"""probcausal and the hand-written jitted JAX floor on the shared suite.

``python run_probcausal.py --tool probcausal|floor --query KEY --json OUT``.
"""

from __future__ import annotations

import os
import sys
import time

T0 = time.perf_counter()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402

import probcausal as pc  # noqa: E402

IMPORT_S = time.perf_counter() - T0

import spec  # noqa: E402

KEY = jax.random.PRNGKey(0)


# ---- the models, as users write them ----


@pc.causal_model
def encouragement(n=1):
    with numpyro.plate("units", n):
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        h = numpyro.sample("h", dist.Normal(spec.H_COEF * x, 1.0))
        numpyro.sample("y", dist.Normal(spec.XY_COEF * x + spec.HY_COEF * h, 1.0))


@pc.causal_model
def mediation_linear():
    x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    m = numpyro.sample("m", dist.Normal(spec.MED_A * x, 1.0))
    numpyro.sample("y", dist.Normal(spec.MED_C * x + spec.MED_B * m, 1.0))


@pc.causal_model
def mediation_logistic():
    x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    m = numpyro.sample("m", dist.Bernoulli(logits=spec.LOGIT_M[0] + spec.LOGIT_M[1] * x))
    a, bx, bm = spec.LOGIT_Y
    numpyro.sample("y", dist.Bernoulli(logits=a + bx * x + bm * m))


BETA = jnp.asarray(spec.CAT_BETA, jnp.float32)


@pc.causal_model
def categorical(n=1):
    with numpyro.plate("units", n):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        logits = jnp.stack([jnp.zeros_like(z), z, -z], -1)
        c = numpyro.sample("c", dist.Categorical(logits=logits))
        numpyro.sample("y", dist.Normal(BETA[c] + spec.CAT_Z * z, 1.0))


def probcausal_call(q: spec.Query):
    """(call, answer_of, method) for one query, through the public API."""
    data = {k: jnp.asarray(v) for k, v in spec.data_for(q).items()}
    n = q.units

    def exact(model, actions):
        """y's counterfactual with every noise term fixed by the evidence: one run."""
        return lambda: pc.counterfactual(
            model, data, actions, rng_key=KEY, num_samples=1, model_kwargs={"n": n}
        )["y"]

    if q.name == "full_evidence":
        return exact(encouragement, {"h": 2.0}), lambda y: y[0], "exact abduction"
    if q.name == "multi_world":
        call = exact(encouragement, [{"h": a} for a in spec.MULTI_ACTIONS])
        return call, lambda y: jnp.moveaxis(y[0], 0, -1), "exact abduction, 5 worlds"
    if q.name == "categorical":
        return exact(categorical, {"c": 2}), lambda y: y[0], "exact abduction"
    if q.name == "partial_evidence":
        call = lambda: pc.counterfactual(  # noqa: E731
            encouragement,
            data,
            {"x": spec.PARTIAL_ACTION},
            rng_key=KEY,
            num_samples=spec.POSTERIOR_SAMPLES,
            model_kwargs={"n": n},
            progress_bar=False,
        )["y"]
        return call, lambda y: y.mean(0), "conjugate Gaussian posterior (auto), 1000 draws"
    if q.name.startswith("mediation"):
        model = mediation_linear if q.name == "mediation_linear" else mediation_logistic
        call = lambda: pc.mediation(  # noqa: E731
            model, "x", "m", "y", spec.TREATED, spec.CONTROL, rng_key=KEY, num_samples=n
        )
        return call, lambda fx: {k: float(v) for k, v in fx.items()}, "4 worlds, prior draws"
    raise KeyError(q.name)


# ---- the floor: the same arithmetic written out by hand, jitted ----


# Like probcausal's answer, the floor returns every site's counterfactual value
# (the untouched root, the intervened site and the outcome), not the outcome alone.


@jax.jit
def floor_full(x, h, y):
    u_y = y - spec.XY_COEF * x - spec.HY_COEF * h
    h_cf = jnp.full_like(h, 2.0)
    return x, h_cf, spec.XY_COEF * x + spec.HY_COEF * h_cf + u_y


@jax.jit
def floor_multi(x, h, y):
    u_y = y - spec.XY_COEF * x - spec.HY_COEF * h
    a = jnp.asarray(spec.MULTI_ACTIONS, jnp.float32)
    h_cf = jnp.broadcast_to(a, x.shape + a.shape)
    x_cf = jnp.broadcast_to(x[:, None], h_cf.shape)
    return x_cf, h_cf, spec.XY_COEF * x_cf + spec.HY_COEF * h_cf + u_y[:, None]


@jax.jit
def floor_categorical(z, c, y):
    u_y = y - BETA[c] - spec.CAT_Z * z
    c_cf = jnp.full_like(c, 2)
    return z, c_cf, BETA[c_cf] + spec.CAT_Z * z + u_y


@jax.jit
def floor_partial(key, h, y):
    """Exact conjugate posterior of x, then abduct u_h, u_y and predict under do(x=1)."""
    prec = 1.0 + spec.H_COEF**2 + spec.XY_COEF**2
    mean = spec.partial_posterior_mean(h, y)
    x = mean + jax.random.normal(key, (spec.POSTERIOR_SAMPLES,) + h.shape) / jnp.sqrt(prec)
    u_h = h - spec.H_COEF * x
    u_y = y - spec.XY_COEF * x - spec.HY_COEF * h
    a = spec.PARTIAL_ACTION
    h_cf = spec.H_COEF * a + u_h
    return (spec.XY_COEF * a + spec.HY_COEF * h_cf + u_y).mean(0)


def _floor_mediation(loc_m, loc_y, bernoulli: bool, n: int):
    @jax.jit
    def run(key):
        k = jax.random.split(key, 3)
        x_u = jax.random.normal(k[0], (n,))  # the factual x is never used: x is set
        del x_u
        if bernoulli:
            u_m, u_y = jax.random.uniform(k[1], (n,)), jax.random.uniform(k[2], (n,))
            m_of = lambda x: (u_m < jax.nn.sigmoid(loc_m(x))).astype(jnp.float32)  # noqa: E731
            y_of = lambda x, m: (u_y < jax.nn.sigmoid(loc_y(x, m))).astype(jnp.float32)  # noqa: E731
        else:
            u_m, u_y = jax.random.normal(k[1], (n,)), jax.random.normal(k[2], (n,))
            m_of = lambda x: loc_m(x) + u_m  # noqa: E731
            y_of = lambda x, m: loc_y(x, m) + u_y  # noqa: E731
        t, c = spec.TREATED, spec.CONTROL
        m_c, m_t = m_of(c), m_of(t)
        y_c, y_t, y_tmc = y_of(c, m_c), y_of(t, m_t), y_of(t, m_c)
        return {"nde": jnp.mean(y_tmc - y_c), "nie": jnp.mean(y_t - y_tmc)}

    return run


def floor_call(q: spec.Query):
    d = {k: jnp.asarray(v) for k, v in spec.data_for(q).items()}
    outcome = lambda sites: sites[-1]  # noqa: E731
    if q.name == "full_evidence":
        return lambda: floor_full(d["x"], d["h"], d["y"]), outcome, "jitted closed form"
    if q.name == "multi_world":
        return lambda: floor_multi(d["x"], d["h"], d["y"]), outcome, "jitted closed form"
    if q.name == "categorical":
        return lambda: floor_categorical(d["z"], d["c"], d["y"]), outcome, "jitted"
    if q.name == "partial_evidence":
        return (
            lambda: floor_partial(KEY, d["h"], d["y"]),
            lambda y: y,
            "jitted conjugate posterior, 1000 draws",
        )
    if q.name == "mediation_linear":
        run = _floor_mediation(
            lambda x: spec.MED_A * x, lambda x, m: spec.MED_C * x + spec.MED_B * m, False, q.units
        )
    else:
        a, bx, bm = spec.LOGIT_Y
        run = _floor_mediation(
            lambda x: spec.LOGIT_M[0] + spec.LOGIT_M[1] * x,
            lambda x, m: a + bx * x + bm * m,
            True,
            q.units,
        )
    return lambda: run(KEY), lambda fx: {k: float(v) for k, v in fx.items()}, "jitted sampler"


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    tool = "probcausal"
    if "--tool" in argv:
        i = argv.index("--tool")
        tool = argv[i + 1]
        del argv[i : i + 2]
    build = probcausal_call if tool == "probcausal" else floor_call

    def run_one(q, import_s):
        call, answer_of, method = build(q)
        sync = lambda: jax.block_until_ready(call())  # noqa: E731
        res = spec.measure(tool, q, sync, answer_of, import_s=import_s, method=method)
        res.extra["device"] = jax.devices()[0].device_kind
        return res

    spec.runner_main(tool, run_one, IMPORT_S, argv)


if __name__ == "__main__":
    main()
