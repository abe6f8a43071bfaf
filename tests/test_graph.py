import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

import probcausal as pc


def model(y=None):
    z = numpyro.sample("z", dist.Normal(0, 1))
    with numpyro.plate("units", 4):
        x = numpyro.sample("x", dist.Normal(z, 1))
        d = numpyro.deterministic("d", 2 * x + z)
        numpyro.sample("y", dist.Normal(d, 1), obs=y)


def test_nodes_are_sample_sites_and_deterministic_sites_are_looked_through():
    g = pc.graph(model, jnp.zeros(4))
    assert set(g.nodes) == {"z", "x", "y"}
    assert set(g.edges) == {("z", "x"), ("x", "y"), ("z", "y")}


def test_node_attributes():
    g = pc.graph(model, jnp.zeros(4))
    assert g.nodes["y"]["observed"] and not g.nodes["y"]["latent"]
    assert g.nodes["x"]["latent"] and not g.nodes["x"]["observed"]
    assert g.nodes["x"]["shape"] == (4,) and g.nodes["z"]["shape"] == ()
    assert g.nodes["x"]["plates"] == ("units",) and g.nodes["x"]["distribution"] == "Normal"


def test_graph_of_unobserved_model_and_of_intervention():
    g = pc.graph(model)
    assert g.nodes["y"]["latent"]
    g = pc.graph(pc.do(model, {"x": 1.0}))
    assert set(g.edges) == {("x", "y"), ("z", "y")}
    assert g.nodes["x"]["intervened"]
