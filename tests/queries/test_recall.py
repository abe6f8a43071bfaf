"""A query asked again on the same JAX arrays recalls its validation, checks and
plan (``probcausal.queries._recall``): same answers, and nothing recalled that
could have changed."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import probcausal as pc
from probcausal.errors import ImpossibleEvidenceError, InvalidEvidenceError
from probcausal.queries import _recall

KEY = jax.random.PRNGKey(0)
COEF = {"y": 2.0}


def linear():
    x = numpyro.sample("x", dist.Normal(0, 1))
    numpyro.sample("y", dist.Normal(COEF["y"] * x, 1))


def binary():
    x = numpyro.sample("x", dist.Bernoulli(0.5))
    numpyro.sample("y", dist.Categorical(probs=jnp.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])[x]))


def entries_for(model):
    return [k for k in _recall._ENTRIES if k[0][0].obj is model]


def test_a_repeated_query_is_recalled_with_the_same_answer():
    ev = {"x": jnp.array(1.0), "y": jnp.array(3.0)}
    first = pc.counterfactual(linear, ev, {"x": 0.0}, rng_key=KEY)
    assert len(entries_for(linear)) == 1
    again = pc.counterfactual(linear, ev, {"x": 0.0}, rng_key=KEY)
    other = pc.counterfactual(linear, ev, {"x": 2.0}, rng_key=KEY)  # an entry of its own
    np.testing.assert_allclose(first["y"], 1.0)  # u_y = 3 - 2, y' = 2 * 0 + 1
    np.testing.assert_allclose(again["y"], first["y"])
    np.testing.assert_allclose(other["y"], 5.0)
    assert len(entries_for(linear)) == 2


def test_the_arrays_held_are_bounded(monkeypatch):
    monkeypatch.setattr(_recall, "MAX_BYTES", 3 * 4 * 100)
    n = 100

    def model():
        with numpyro.plate("units", n):
            linear()

    def ask(ev):
        cf = pc.counterfactual(model, ev, {"x": 0.0}, rng_key=KEY)
        np.testing.assert_allclose(cf["y"][0], ev["y"] - 2 * ev["x"], rtol=1e-6)

    big = {"x": jnp.ones(2 * n), "y": jnp.ones(2 * n)}
    ask({"x": jnp.ones(n), "y": jnp.ones(n)})
    ask({"x": jnp.zeros(n), "y": jnp.ones(n)})  # 1600 bytes > 1200: the first goes
    assert len(entries_for(model)) == 1
    assert _recall._HELD[0] <= _recall.MAX_BYTES

    def wide():
        with numpyro.plate("units", 2 * n):
            linear()

    pc.counterfactual(wide, big, {"x": 0.0}, rng_key=KEY)  # more than the budget alone
    assert entries_for(wide) == []


def test_a_changed_global_is_seen_after_a_recall():
    ev = {"x": jnp.array(1.0), "y": jnp.array(3.0)}
    pc.counterfactual(linear, ev, {"x": 0.0}, rng_key=KEY)
    COEF["y"] = 1.0
    try:
        moved = pc.counterfactual(linear, ev, {"x": 2.0}, rng_key=KEY)
    finally:
        COEF["y"] = 2.0
    np.testing.assert_allclose(moved["y"], 4.0)  # u_y = 3 - 1, y' = 1 * 2 + 2


def test_numpy_evidence_is_never_recalled():
    ev = {"x": np.array(1.0), "y": np.array(3.0)}
    pc.counterfactual(linear, ev, {"x": 0.0}, rng_key=KEY)
    ev["y"][...] = np.nan  # changed in place: checked again
    with pytest.raises(InvalidEvidenceError, match="'y'"):
        pc.counterfactual(linear, ev, {"x": 0.0}, rng_key=KEY)


def test_impossible_evidence_and_actions_are_refused_every_time():
    ok = {"x": jnp.array(0), "y": jnp.array(1)}
    pc.counterfactual(binary, ok, {"x": 1}, rng_key=KEY, num_samples=4)
    for _ in range(2):  # an action outside the support, on recalled evidence
        with pytest.raises(Exception, match="'x'"):
            pc.counterfactual(binary, ok, {"x": 3}, rng_key=KEY, num_samples=4)
    impossible = {"x": jnp.array(0), "y": jnp.array(2)}  # P(y = 2 | x = 0) = 0
    for _ in range(2):
        with pytest.raises(ImpossibleEvidenceError, match="'y'"):
            pc.counterfactual(binary, impossible, {"x": 1}, rng_key=KEY, num_samples=4)


def test_queries_with_latents_are_prepared_afresh():
    ev = {"y": jnp.array(3.0)}
    before = len(entries_for(linear))
    a = pc.counterfactual(linear, ev, {"x": 0.0}, rng_key=KEY, num_samples=200)
    b = pc.counterfactual(linear, ev, {"x": 0.0}, rng_key=jax.random.PRNGKey(1), num_samples=200)
    assert len(entries_for(linear)) == before
    assert not np.allclose(a["y"], b["y"])  # new posterior draws with the new key
