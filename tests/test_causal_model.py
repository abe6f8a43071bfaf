import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS, Predictive

import probcausal as pc


@pc.causal_model
def model(y=None):
    x = numpyro.sample("x", dist.Normal(0, 1))
    return numpyro.sample("y", dist.Normal(2 * x, 1), obs=y)


def test_is_still_a_numpyro_model():
    mcmc = MCMC(NUTS(model), num_warmup=200, num_samples=500, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0), y=3.0)
    x = mcmc.get_samples()["x"]
    assert abs(float(x.mean()) - 1.2) < 4 * np.sqrt(0.2 / 250)  # N(1.2, 0.2) posterior
    pred = Predictive(model, num_samples=10)(jax.random.PRNGKey(1))
    assert pred["y"].shape == (10,)


def test_methods_and_metadata():
    assert model.__name__ == "model" and "model" in repr(model)
    assert set(model.graph().edges) == {("x", "y")}
    intervened = model.do({"x": 1.0})
    assert isinstance(intervened, pc.CausalModel)
    s = intervened.interventional({}, rng_key=jax.random.PRNGKey(0), num_samples=2000)
    assert abs(float(s["y"].mean()) - 2.0) < 4 / np.sqrt(2000)
    cf = model.counterfactual(
        {"x": 0.5, "y": 1.5}, {"x": 1.0}, rng_key=jax.random.PRNGKey(0), num_samples=3
    )
    np.testing.assert_allclose(cf["y"], 2.5, rtol=1e-6)


def test_rejects_non_callables():
    with pytest.raises(TypeError, match="needs a callable model"):
        pc.causal_model(3)


def test_a_model_carries_its_abduction_engine():
    def pair():
        x = numpyro.sample("x", dist.Normal(0, 1))
        numpyro.sample("y", dist.Normal(x, 1))

    kw = dict(rng_key=jax.random.key(0), num_samples=200)
    svi = dict(method="svi", svi_steps=50)
    own = pc.CausalModel(pair, abduction=svi)
    by_model = pc.counterfactual(own, {"y": 1.0}, {"x": 0.0}, **kw)
    by_caller = pc.counterfactual(pair, {"y": 1.0}, {"x": 0.0}, **kw, **svi)
    exact = pc.counterfactual(pair, {"y": 1.0}, {"x": 0.0}, **kw)
    np.testing.assert_array_equal(by_model["y"], by_caller["y"])
    assert not np.allclose(by_model["y"], exact["y"])  # SVI's draws, not the exact ones
    # the caller's method wins; do() keeps the engine
    np.testing.assert_array_equal(
        pc.counterfactual(own, {"y": 1.0}, {"x": 0.0}, method="gaussian", **kw)["y"], exact["y"]
    )
    assert own.do({"x": 1.0}).abduction == own.abduction
    with pytest.raises(TypeError, match="abduction needs a 'method'"):
        pc.CausalModel(pair, abduction={"svi_steps": 5})
