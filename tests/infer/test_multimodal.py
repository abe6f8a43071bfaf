"""NUTS with several chains and diagnostics; tempered SMC for multimodal posteriors."""

import warnings

import arviz as az
import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import probcausal as pc
from probcausal.errors import ConvergenceWarning


def bimodal():
    x = numpyro.sample("x", dist.Normal(0, 1))
    numpyro.sample("y", dist.Normal(x**2, 0.1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bimodal_posterior_weighs_both_modes(seed):
    """x ~ N(0, 1), y ~ N(x^2, 0.1), y = 1: the posterior is symmetric, P(x > 0) = 0.5.
    NUTS chains each find one mode; method='auto' sees them disagree and runs SMC."""
    n = 2000
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # auto must not leave a warning
        cf = pc.counterfactual(
            bimodal, {"y": 1.0}, {"x": 0.0}, rng_key=jax.random.PRNGKey(seed), num_samples=n
        )
    assert cf.method == "smc"
    p = float(np.mean(np.asarray(cf.latents["x"]) > 0))
    assert abs(p - 0.5) < 0.05
    # every draw sits in a mode: |x| near 1
    assert abs(float(np.median(np.abs(np.asarray(cf.latents["x"])))) - 1.0) < 0.1


@pytest.mark.slow
def test_explicit_nuts_warns_with_r_hat_when_chains_disagree():
    with pytest.warns(ConvergenceWarning, match=r"'x' \(r_hat"):
        cf = pc.counterfactual(
            bimodal,
            {"y": 1.0},
            {"x": 0.0},
            rng_key=jax.random.PRNGKey(0),
            num_samples=400,
            method="nuts",
            num_warmup=200,
        )
    assert cf.chains == 4 and cf.diagnostics["x"]["r_hat"] > 1.1


def partial():
    x = numpyro.sample("x", dist.Normal(0, 1))
    numpyro.sample("y", dist.Normal(2 * x, 1))


@pytest.mark.slow
def test_nuts_chains_reach_inference_data_and_arviz_diagnostics():
    cf = pc.counterfactual(
        partial,
        {"y": 3.0},
        {"x": 1.0},
        rng_key=jax.random.PRNGKey(0),
        num_samples=4000,
        method="nuts",
        num_warmup=500,
    )
    assert cf.chains == 4
    r_hat = float(cf.diagnostics["x"]["r_hat"])
    assert r_hat < 1.01 and float(cf.diagnostics["x"]["ess"]) > 1000
    idata = pc.to_inference_data(cf)
    assert idata.posterior["x"].shape == (4, 1000)
    assert float(idata.sample_stats["x_r_hat"]) == pytest.approx(r_hat)
    summary = az.summary(idata, var_names=["x"])
    assert abs(summary.loc["x", "r_hat"] - 1.0) < 0.02


def test_smc_matches_the_conjugate_posterior():
    # x | y = 3 is N(1.2, 0.2)
    n = 3000
    cf = pc.counterfactual(
        partial,
        {"y": 3.0},
        {"x": 1.0},
        rng_key=jax.random.PRNGKey(1),
        num_samples=n,
        method="smc",
    )
    x = np.asarray(cf.latents["x"])
    # resampled particles are correlated: widen by a factor 2 on the variance
    assert abs(x.mean() - 1.2) < 4 * np.sqrt(2 * 0.2 / n)
    assert abs(x.var() - 0.2) < 4 * 0.2 * np.sqrt(2 * 2 / n)


def test_bad_num_chains_is_named():
    with pytest.raises(ValueError, match="num_chains"):
        pc.counterfactual(
            partial,
            {"y": 3.0},
            {"x": 1.0},
            rng_key=jax.random.PRNGKey(0),
            method="nuts",
            num_chains=0,
        )
