import arviz as az
import jax
import jax.numpy as jnp
import matplotlib
import numpyro
import numpyro.distributions as dist
import pytest

import probcausal as pc
from tests.scms import encouragement, partial

matplotlib.use("Agg")
KEY = jax.random.PRNGKey(0)


@pytest.mark.slow
def test_counterfactual_round_trip_dims_and_coords():
    cf = pc.counterfactual(
        encouragement,
        {"y": jnp.array([1.0, 2.0, 3.0])},
        [{"h": 2.0}, {"h": 0.0}],
        rng_key=KEY,
        num_samples=50,
        model_kwargs={"n": 3},
        method="svi",
        svi_steps=200,
    )
    idata = pc.to_inference_data(cf)
    pp = idata.posterior_predictive
    assert pp["y"].dims == ("chain", "draw", "world", "units")
    assert pp["world"].values.tolist() == ["factual", "do(h=2.0)", "do(h=0.0)"]
    assert pp["y"].shape == (1, 50, 3, 3)
    assert set(idata.posterior.data_vars) >= {"x", "h", "x_noise", "y_noise"}
    assert idata.observed_data["y"].dims == ("units",)
    # no variable shares its name with a dim
    for group in ("posterior", "posterior_predictive", "observed_data"):
        ds = idata[group]
        assert not set(ds.data_vars) & set(ds.dims)


@pytest.mark.slow
def test_summary_and_plot_work_directly():
    cf = pc.counterfactual(
        partial, {"y": 3.0}, {"x": 1.0}, rng_key=KEY, num_samples=200, method="svi", svi_steps=300
    )
    idata = pc.to_inference_data(cf)
    summary = az.summary(idata, group="posterior_predictive", var_names=["y"], kind="stats")
    assert "y[factual]" in summary.index and "y[do(x=1.0)]" in summary.index
    axes = az.plot_posterior(idata, group="posterior_predictive", var_names=["y"])
    assert len(axes.ravel()) == 2


def test_interventional_dict_converts():
    s = pc.interventional(encouragement, [{"h": 0.0}, {"h": 1.0}], rng_key=KEY, num_samples=20)
    idata = pc.to_inference_data(s, labels=["do(h=0)", "do(h=1)"])
    assert idata.posterior_predictive["y"].dims == ("chain", "draw", "world")


def test_names_that_collide_with_the_world_dim_are_renamed():
    def plate_world():
        with numpyro.plate("world", 2):
            x = numpyro.sample("x", dist.Normal(0, 1))
            numpyro.sample("y", dist.Normal(x, 1))

    cf = pc.counterfactual(
        plate_world, {"x": jnp.zeros(2), "y": jnp.ones(2)}, {"x": 1.0}, rng_key=KEY, num_samples=5
    )
    dims = pc.to_inference_data(cf).posterior_predictive["y"].dims
    assert dims == ("chain", "draw", "world", "world_plate")

    def site_world():
        w = numpyro.sample("world", dist.Normal(0, 1))
        numpyro.sample("y", dist.Normal(w, 1))

    cf = pc.counterfactual(
        site_world, {"world": 0.0, "y": 1.0}, {"world": 1.0}, rng_key=KEY, num_samples=5
    )
    pp = pc.to_inference_data(cf).posterior_predictive
    assert pp["y"].dims == ("chain", "draw", "world_dim")
    assert "world" in pp.data_vars


def test_interventional_results_name_plate_dims_and_label_worlds():
    def model(n=3):
        with numpyro.plate("units", n):
            x = numpyro.sample("x", dist.Normal(0, 1))
            numpyro.sample("y", dist.Normal(x, 1))

    s = pc.interventional(model, {"x": 1.0}, rng_key=KEY, num_samples=10)
    assert pc.to_inference_data(s).posterior_predictive["y"].dims == ("chain", "draw", "units")
    w = pc.interventional(model, [{"x": 0.0}, {"x": 1.0}], rng_key=KEY, num_samples=10)
    pp = pc.to_inference_data(w).posterior_predictive
    assert pp["y"].dims == ("chain", "draw", "world", "units")
    assert pp["world"].values.tolist() == ["do(x=0.0)", "do(x=1.0)"]


def test_array_actions_get_readable_unique_labels_and_plots_work():
    def model(n=3):
        with numpyro.plate("units", n):
            x = numpyro.sample("x", dist.Normal(0, 1))
            numpyro.sample("y", dist.Normal(x, 1))

    actions = [{"x": jnp.array([1.0, 2.0, 3.0])}, {"x": jnp.array([1.0, 2.0, 3.0])}]
    ev = {"x": jnp.zeros(3), "y": jnp.ones(3)}
    cf = pc.counterfactual(model, ev, actions, rng_key=KEY, num_samples=10)
    assert cf.labels == ["factual", "do(x=[1, 2, 3])", "do(x=[1, 2, 3])#2"]
    # every world constant (full evidence): ArviZ's plots still work on the result as is
    idata = pc.to_inference_data(cf)
    axes = az.plot_posterior(idata, group="posterior_predictive")
    assert axes.size == 2 * 3 * 3
