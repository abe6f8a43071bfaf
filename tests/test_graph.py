import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.inspect import get_model_relations

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


def chain_of_deterministics():
    a = numpyro.sample("a", dist.Normal(0, 1))
    b = numpyro.deterministic("b", jnp.tanh(a))
    c = numpyro.deterministic("c", b * 2)
    numpyro.sample("y", dist.Normal(c, 1))


def masked_and_nested_plates():
    s = numpyro.sample("s", dist.Bernoulli(0.5))
    with numpyro.plate("i", 3, dim=-2), numpyro.plate("j", 2, dim=-1):
        u = numpyro.sample("u", dist.Normal(0, 1))
        with numpyro.handlers.mask(mask=s > 0):
            numpyro.sample("v", dist.Normal(u, 1))
    w = numpyro.sample("w", dist.Categorical(logits=jnp.stack([u.sum(), -u.sum()])))
    numpyro.sample("z", dist.Normal(jnp.asarray([0.0, 1.0])[w], 1), obs=0.5)


def unused_and_event_sites():
    numpyro.sample("unused", dist.Normal(0, 1))
    m = numpyro.sample("m", dist.Normal(jnp.zeros(2), 1).to_event(1))
    numpyro.sample("k", dist.MultivariateNormal(m, jnp.eye(2)))


@pytest.mark.parametrize(
    "program", [model, chain_of_deterministics, masked_and_nested_plates, unused_and_event_sites]
)
def test_edges_agree_with_numpyro_model_relations(program):
    """One shape-only trace gives the parents NumPyro's ``get_model_relations``
    reads with two traces, deterministic sites looked through."""
    relations = get_model_relations(program)
    samples = set(relations["sample_sample"]) - {
        n for n, d in relations["sample_dist"].items() if d == "Deterministic"
    }

    def parents(name):
        out = set()
        for p in relations["sample_sample"][name]:
            out |= {p} if p in samples else parents(p)
        return out

    expected = {(p, n) for n in samples for p in parents(n)}
    g = pc.graph(program)
    assert set(g.nodes) == samples
    assert set(g.edges) == expected
