"""Counterfactual axioms (Galles & Pearl 1998) as property tests over random SCMs.

Each random SCM mixes Normal, Bernoulli, Categorical and Poisson sites. Evidence is
a full factual draw, so discrete noise is abducted by posterior Gumbel / uniform
sampling and every sample of the answer is an exact counterfactual.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpyro.handlers import condition, seed, trace
from numpyro.infer.util import log_density

import probcausal as pc

KINDS = ("normal", "bernoulli", "categorical", "poisson")


@st.composite
def scms(draw):
    d = draw(st.integers(3, 5))
    spec = []
    for i in range(d):
        kind = draw(st.sampled_from(KINDS))
        parents = [(j, draw(st.floats(-1.5, 1.5))) for j in range(i) if draw(st.booleans())]
        spec.append((kind, tuple(parents), draw(st.floats(-1.0, 1.0))))
    return tuple(spec)


def make_model(spec):
    def model():
        vals = []
        for i, (kind, parents, bias) in enumerate(spec):
            lin = bias + sum(w * jnp.asarray(vals[j], jnp.float32) for j, w in parents)
            lin = jnp.asarray(lin, jnp.float32)
            if kind == "normal":
                fn = dist.Normal(lin, 1.0)
            elif kind == "bernoulli":
                fn = dist.Bernoulli(logits=lin)
            elif kind == "categorical":
                fn = dist.Categorical(logits=jnp.stack([jnp.zeros_like(lin), lin, -lin], -1))
            else:
                fn = dist.Poisson(jnp.exp(jnp.clip(0.3 * lin, -3.0, 2.0)))
            vals.append(numpyro.sample(f"v{i}", fn))
        return vals

    return model


def value_for(kind, u):
    return {
        "normal": 2.0 * u - 1.0,
        "bernoulli": int(u > 0.5),
        "categorical": int(3 * u) % 3,
        "poisson": int(4 * u),
    }[kind]


def close(a, b):
    return np.allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), atol=1e-4)


@pytest.mark.slow
@given(scms(), st.data())
def test_counterfactual_axioms(spec, data):
    model = make_model(spec)
    names = [f"v{i}" for i in range(len(spec))]
    seed_ = data.draw(st.integers(0, 2**16))
    factual = trace(seed(model, seed_)).get_trace()
    ev = {n: factual[n]["value"] for n in names}
    i_x, i_w, i_y = data.draw(st.permutations(range(len(spec))))[:3]
    X, W, Y = names[i_x], names[i_w], names[i_y]
    x = value_for(spec[i_x][0], data.draw(st.floats(0, 0.999)))
    w = ev[W]
    actions = [
        {X: x},  # 1
        {X: x, W: pc.WorldValue(1)},  # 2: composition
        {X: x, W: w},  # 3
        {X: x, Y: pc.WorldValue(3)},  # 4: reversibility
        {X: ev[X]},  # 5: intervening with the factual value
    ]
    cf = pc.counterfactual(model, ev, actions, rng_key=jax.random.PRNGKey(seed_), num_samples=16)
    # the factual world is the evidence
    for n in names:
        assert close(cf.factual[n], jnp.broadcast_to(ev[n], cf.factual[n].shape))
    # effectiveness: X_x = x
    assert close(cf[X][:, 0], x)
    # composition: W_x = w  =>  V_{x, w} = V_x for every V
    for n in names:
        assert close(cf[n][:, 1], cf[n][:, 0])
    # reversibility: Y_{x,w} = y and W_{x,y} = w  =>  Y_x = y
    holds = np.isclose(np.asarray(cf[W][:, 3], float), np.asarray(w, float), atol=1e-5)
    y_xw = np.asarray(cf[Y][:, 2], float)
    assert np.allclose(np.asarray(cf[Y][:, 0], float)[holds], y_xw[holds], atol=1e-4)
    # consistency: do(X = its factual value) changes nothing
    for n in names:
        assert close(cf[n][:, 4], jnp.broadcast_to(ev[n], cf[n][:, 4].shape))


@pytest.mark.slow
@given(scms(), st.integers(0, 2**16), st.data())
def test_twin_world_log_density_equals_observational(spec, seed_, data):
    model = make_model(spec)
    names = [f"v{i}" for i in range(len(spec))]
    factual = trace(seed(model, seed_)).get_trace()
    ev = {n: factual[n]["value"] for n in names}
    i_x = data.draw(st.integers(0, len(spec) - 1))
    act = {names[i_x]: value_for(spec[i_x][0], data.draw(st.floats(0, 0.999)))}
    twin = pc.TwinWorld(pc.do(condition(model, ev), act))
    ld_twin, _ = log_density(seed(twin, seed_), (), {}, {})
    ld_obs, _ = log_density(condition(model, ev), (), {}, {})
    np.testing.assert_allclose(ld_twin, ld_obs, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@given(scms(), st.integers(0, 2**16))
def test_factual_world_of_twin_model_is_the_model(spec, seed_):
    """With no evidence, the factual world of a twin model is distributed as the model:
    its draw is the model's ancestral draw from the same mechanisms and noise."""
    model = make_model(spec)
    names = [f"v{i}" for i in range(len(spec))]
    twin = trace(
        seed(pc.TwinWorld(pc.do(model, {names[0]: value_for(spec[0][0], 0.3)})), seed_)
    ).get_trace()
    noise = {n: twin[n]["infer"]["noise"] for n in names}
    # re-running the plain model through the mechanisms with that noise gives world 0
    from probcausal import mechanisms

    def replay():
        out = {}

        class _Replay(numpyro.primitives.Messenger):
            def process_message(self, msg):
                if msg["type"] == "sample":
                    msg["value"] = mechanisms.apply(msg["fn"], noise[msg["name"]])
                    out[msg["name"]] = msg["value"]

        with _Replay():
            model()
        return out

    plain = replay()
    for n in names:
        v = twin[n]["value"]
        world0 = v[0] if v.ndim == 1 and v.shape[0] == 2 else v
        assert close(world0, plain[n])


# --- vector sites and mixed families against a NumPy reference ------------------

VKINDS = ("normal", "vec_ones", "vec_stack", "mvn", "bern_where", "cat")
_L = np.array([[1.0, 0.0, 0.0], [0.5, 0.8, 0.0], [-0.3, 0.2, 0.6]], np.float32)


@st.composite
def vector_scms(draw):
    d = draw(st.integers(3, 5))
    spec = []
    for i in range(d):
        kind = draw(st.sampled_from(VKINDS))
        k = draw(st.integers(2, 3))
        parents = tuple((j, draw(st.floats(-1.0, 1.0))) for j in range(i) if draw(st.booleans()))
        spec.append((kind, k, parents, draw(st.floats(-1.0, 1.0))))
    return tuple(spec)


def _lin(spec_i, vals, xp):
    _, _, parents, bias = spec_i
    return bias + sum(w * xp.sum(xp.asarray(vals[j], xp.float32)) for j, w in parents)


def make_vector_model(spec):
    """Written as a user writes it: ``jnp.ones``, ``stack``, ``where``, ``to_event``."""

    def model():
        vals = []
        for i, (kind, k, _, _) in enumerate(spec):
            lin = jnp.asarray(_lin(spec[i], vals, jnp), jnp.float32)
            if kind == "normal":
                fn = dist.Normal(lin, 1.0)
            elif kind == "vec_ones":
                fn = dist.Normal(lin * jnp.ones(k) + jnp.arange(k), 1.0).to_event(1)
            elif kind == "vec_stack":
                fn = dist.Normal(jnp.stack([lin, -lin, 0.5 * lin][:k]), 1.0).to_event(1)
            elif kind == "mvn":
                fn = dist.MultivariateNormal(lin * jnp.ones(k), scale_tril=jnp.asarray(_L[:k, :k]))
            elif kind == "bern_where":
                fn = dist.Bernoulli(probs=jnp.where(lin > 0, 0.8, 0.3))
            else:
                fn = dist.Categorical(logits=jnp.stack([jnp.zeros_like(lin), lin, -lin]))
            vals.append(numpyro.sample(f"v{i}", fn))
        return vals

    return model


def numpy_world(spec, noise, actions):
    """The SCM evaluated in NumPy (float64) from given noise under ``actions``."""
    vals = []
    for i, (kind, k, _, _) in enumerate(spec):
        lin = _lin(spec[i], vals, np)
        u = np.asarray(noise[f"v{i}"], np.float64)
        if kind == "normal":
            v = lin + u
        elif kind == "vec_ones":
            v = lin * np.ones(k) + np.arange(k) + u
        elif kind == "vec_stack":
            v = np.stack([lin, -lin, 0.5 * lin][:k]) + u
        elif kind == "mvn":
            v = lin * np.ones(k) + _L[:k, :k].astype(np.float64) @ u
        elif kind == "bern_where":
            p = 0.8 if lin > 0 else 0.3
            v = float(np.log(p / (1 - p)) > u)
        else:
            v = float(np.argmax(np.array([0.0, lin, -lin]) + u))
        vals.append(np.asarray(actions.get(f"v{i}", v), np.float64))
    return vals


@pytest.mark.slow
@given(vector_scms(), st.integers(0, 2**16), st.data())
def test_vector_counterfactuals_match_numpy_reference(spec, seed_, data):
    model = make_vector_model(spec)
    names = [f"v{i}" for i in range(len(spec))]
    factual = trace(seed(model, seed_)).get_trace()
    ev = {n: factual[n]["value"] for n in names}
    i_x = data.draw(st.integers(0, len(spec) - 2))  # a site with possible descendants
    kind, k = spec[i_x][:2]
    if kind in ("bern_where", "cat"):
        x = 1 - int(ev[names[i_x]]) if kind == "bern_where" else (int(ev[names[i_x]]) + 1) % 3
    elif kind == "normal":
        x = float(data.draw(st.floats(-2, 2)))
    else:
        x = np.asarray(data.draw(st.lists(st.floats(-2, 2), min_size=k, max_size=k)), np.float32)
    actions = {names[i_x]: x}
    cf = pc.counterfactual(model, ev, actions, rng_key=jax.random.PRNGKey(seed_), num_samples=4)
    for s in range(4):
        noise = {n: np.asarray(cf.noise[n][s]) for n in names}
        # the abducted noise reproduces the evidence ...
        for n, v in zip(names, numpy_world(spec, noise, {}), strict=True):
            np.testing.assert_allclose(v, np.asarray(ev[n], np.float64), atol=1e-3, err_msg=n)
        # ... and the counterfactual world is the SCM re-run on it under the action
        want = numpy_world(spec, noise, actions)
        for n, v in zip(names, want, strict=True):
            np.testing.assert_allclose(np.asarray(cf[n][s], np.float64), v, atol=1e-3, err_msg=n)
