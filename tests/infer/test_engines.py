"""The abduction-engine registry: a user's engine, registered by name, serves the
queries; its options pass through, its refusals are named."""

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.handlers import condition
from numpyro.infer import Predictive
from numpyro.infer.util import log_likelihood

import probcausal as pc
from probcausal.errors import AbductionError

KEY = jax.random.PRNGKey(0)


class Importance(pc.infer.Engine):
    """Self-normalised importance sampling from the prior, resampled."""

    options = {"num_proposals": 20_000}

    def __init__(self):
        self.calls = []

    def refusal(self, info, latents):
        discrete = [n for n in latents if info[n].discrete]
        return (
            f"importance sampling here moves continuous sites only: {discrete}"
            if discrete
            else None
        )

    def posterior(self, problem, rng_key, num_samples, num_proposals):
        self.calls.append((tuple(problem.latents), num_proposals))
        k_prior, k_pick = jax.random.split(rng_key)
        draws = Predictive(problem.model, num_samples=num_proposals, return_sites=problem.latents)(
            k_prior, *problem.args, **problem.kwargs
        )
        conditioned = condition(problem.model, problem.evidence)
        ll = log_likelihood(conditioned, draws, *problem.args, **problem.kwargs)
        logw = sum(
            v.reshape(num_proposals, -1).sum(-1) for n, v in ll.items() if n in problem.evidence
        )
        pick = jax.random.categorical(k_pick, logw, shape=(num_samples,))
        return {n: draws[n][pick] for n in problem.latents}


def model():
    x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(x, 1.0))


@pytest.fixture
def engine():
    eng = pc.infer.register_engine("importance-test", Importance())
    yield eng
    pc.infer.abduction._ENGINES.pop("importance-test")


@pytest.mark.slow
def test_a_registered_engine_serves_a_counterfactual(engine):
    """x ~ N(0, 1), y = x + e; evidence y = 1 gives e | y ~ N(0.5, 0.5), so under
    do(x = 2) y' = 2 + e ~ N(2.5, 0.5)."""
    n = 4000
    cf = pc.counterfactual(
        model,
        {"y": 1.0},
        {"x": 2.0},
        rng_key=KEY,
        num_samples=n,
        method="importance-test",
        num_proposals=50_000,
    )
    assert engine.calls == [(("x",), 50_000)]
    assert cf.method == "importance-test"
    y = np.asarray(cf["y"])
    # resampling from 50k proposals adds little over n independent draws
    assert abs(y.mean() - 2.5) < 4 * np.sqrt(0.5 / n)
    assert abs(y.var() - 0.5) < 4 * 0.5 * np.sqrt(2 / n)


def test_engine_options_and_refusals_are_checked(engine):
    with pytest.raises(TypeError, match="num_proposal.*did you mean 'num_proposals'"):
        pc.counterfactual(model, {"y": 1.0}, {"x": 2.0}, rng_key=KEY, num_proposal=10)

    def discrete():
        z = numpyro.sample("z", dist.Bernoulli(0.5))
        numpyro.sample("w", dist.Normal(z, 1.0))
        numpyro.sample("y", dist.Normal(numpyro.sample("x", dist.Normal(0, 1)), 1.0))

    with pytest.raises(AbductionError, match=r"continuous sites only: \['z'\]"):
        pc.counterfactual(discrete, {"w": 1.0}, {"x": 2.0}, rng_key=KEY, method="importance-test")
    assert "importance-test" in pc.infer.engines()


def test_register_engine_refuses_bad_input():
    with pytest.raises(ValueError, match="other than 'auto'"):
        pc.infer.register_engine("auto", Importance())
    with pytest.raises(TypeError, match="subclass Engine"):
        pc.infer.register_engine("mine", object())
    with pytest.raises(ValueError, match="unknown abduction method 'nope'"):
        pc.counterfactual(model, {"y": 1.0}, {"x": 2.0}, rng_key=KEY, method="nope")
