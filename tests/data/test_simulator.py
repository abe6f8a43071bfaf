"""The random-SCM simulator: graph priors, interventional data against
``pc.interventional``, standardization and the hidden causal order."""

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest

import probcausal as pc
from probcausal.data import Domain, random_graph, sample_dag, sample_scm_params, scm_model, simulate
from probcausal.data.scm import row_sampler


@pytest.mark.parametrize("prior", ["er", "sf", "sf_in"])
def test_jax_prior_matches_networkx_generator(prior):
    d, k = 20, 4.0
    jax_graphs = np.asarray(
        jax.vmap(lambda key: sample_dag(key, d, prior, k))(
            jax.random.split(jax.random.key(0), 2000)
        )
    )
    assert (np.tril(jax_graphs) == 0).all()  # upper triangular: acyclic
    nx_graphs = [nx.to_numpy_array(random_graph(d, prior, k, seed=s)) for s in range(400)]
    assert all(nx.is_directed_acyclic_graph(nx.DiGraph(g)) for g in nx_graphs)
    jax_edges = jax_graphs.sum((1, 2))
    nx_edges = np.array([g.sum() for g in nx_graphs])
    # mean edge count: d * k / 2 = 40 for ER; m (d - m) = 36 for Barabási–Albert
    tol = 4 * np.sqrt(jax_edges.var() / 2000 + nx_edges.var() / 400)
    assert abs(jax_edges.mean() - nx_edges.mean()) <= tol
    # the degree tail: mean largest total degree
    jax_max = (jax_graphs.sum(1) + jax_graphs.sum(2)).max(1)
    nx_max = np.array([(g.sum(0) + g.sum(1)).max() for g in nx_graphs])
    assert (
        abs(jax_max.mean() - nx_max.mean())
        < 4 * np.sqrt(jax_max.var() / 2000 + nx_max.var() / 400) + 0.5
    )
    if prior != "er":  # hubs: far above ER's largest degree
        assert nx_max.mean() > 9.5  # ER at this degree: about 8
    hub_out = jax_graphs.sum(2).max(1).mean()
    hub_in = jax_graphs.sum(1).max(1).mean()
    assert (hub_out > hub_in) if prior == "sf" else (hub_in > hub_out) if prior == "sf_in" else True


@pytest.mark.parametrize(
    "domain",
    [
        Domain(num_variables=5, expected_degree=3.0),
        Domain(
            num_variables=5,
            expected_degree=3.0,
            mechanism="rff",
            noise="laplace",
            heteroscedastic=True,
        ),
    ],
    ids=["linear-gaussian", "rff-laplace-hetero"],
)
@pytest.mark.slow
def test_interventional_rows_match_pc_interventional(domain):
    params = sample_scm_params(jax.random.key(3), domain)
    model = scm_model(params, domain)
    n = 20_000
    # a variable with an ancestor: intervene on the first one in causal order with children
    target = int(np.nonzero(np.asarray(params.adjacency).sum(1))[0][0])
    value = 1.7
    rows = jax.jit(jax.vmap(row_sampler(params, domain)))(
        jax.random.split(jax.random.key(4), n), jnp.full(n, target), jnp.full(n, value)
    )
    truth = pc.interventional(
        model, {f"x{target}": value}, rng_key=jax.random.key(5), num_samples=n
    )
    truth = np.stack([np.asarray(truth[f"x{j}"]) for j in range(domain.num_variables)], 1)
    rows = np.asarray(rows)
    assert (rows[:, target] == np.float32(value)).all()
    sd = np.sqrt(rows.var(0) + truth.var(0))
    assert (np.abs(rows.mean(0) - truth.mean(0)) <= 5 * sd / np.sqrt(n) + 1e-6).all()
    ratio = rows.std(0)[sd > 0] / truth.std(0)[sd > 0]
    assert (np.abs(ratio - 1) < 0.05).all()
    # and the intervention did something: a child's mean moved from its observational mean
    obs = np.asarray(
        jax.jit(jax.vmap(row_sampler(params, domain)))(
            jax.random.split(jax.random.key(6), n), jnp.full(n, -1), jnp.zeros(n)
        )
    )
    child = int(np.nonzero(np.asarray(params.adjacency)[target])[0][0])
    assert abs(obs[:, child].mean() - rows[:, child].mean()) > 10 * sd[child] / np.sqrt(n)


@pytest.mark.slow
def test_datasets_hide_the_order_and_keep_the_graph():
    # near noise-free linear data: each variable is an exact function of its true parents
    domain = Domain(
        num_variables=8,
        expected_degree=3.0,
        noise_scale_range=(1e-3, 1e-3),
        num_observations=60,
        num_interventions=24,
    )
    batch = jax.device_get(simulate(jax.random.key(7), domain, 20))
    assert batch.inputs.shape == (20, 84, 8, 2)
    orders = set()
    for values, graph, targets, inputs in zip(
        batch.values, batch.graphs, batch.targets, batch.inputs, strict=True
    ):
        assert nx.is_directed_acyclic_graph(nx.DiGraph(graph))
        orders.add(tuple(nx.topological_sort(nx.DiGraph(graph))))
        x = np.asarray(inputs[..., 0])
        np.testing.assert_allclose(x.mean(0), 0, atol=1e-3)
        np.testing.assert_allclose(x.std(0), 1, atol=1e-3)
        np.testing.assert_array_equal(inputs[..., 1].sum(1), (targets >= 0))
        obs = values[targets < 0]
        for j in range(8):
            parents = np.nonzero(graph[:, j])[0]
            design = np.column_stack([obs[:, parents], np.ones(len(obs))])
            coef, *_ = np.linalg.lstsq(design, obs[:, j], rcond=None)
            residual = obs[:, j] - design @ coef
            assert residual.std() < 0.01 * max(obs[:, j].std(), 1.0), (j, parents)
        # an intervened row holds the intervened value, whatever its parents are
        for r in np.nonzero(targets >= 0)[0]:
            assert inputs[r, targets[r], 1] == 1
    assert len(orders) > 1


def test_random_scm_is_a_causal_model_with_its_graph():
    scm = pc.data.random_scm(jax.random.key(8), Domain(num_variables=6), names=list("abcdef"))
    assert set(scm.graph.nodes) == set("abcdef")
    assert pc.graph(scm.model).nodes and set(pc.graph(scm.model).edges) == set(scm.graph.edges)
    data = scm.sample(jax.random.key(9), 50, interventions={"c": 0.5})
    assert (data["c"] == 0.5).all()


def test_domain_errors():
    with pytest.raises(ValueError, match="unknown graph prior 'xx'"):
        Domain(graph="xx")
    with pytest.raises(ValueError, match="unknown noise 'student'"):
        Domain(noise="student")
    with pytest.raises(ValueError, match="expected_degree must lie in"):
        sample_dag(jax.random.key(0), 3, "er", 5.0)


def test_sachs_ships_with_its_consensus():
    data, consensus = pc.data.load_sachs()
    assert data.shape == (7466, 11) and (data.to_numpy() > 0).all()
    assert consensus.number_of_edges() == 18
    assert not nx.is_directed_acyclic_graph(consensus)  # PIP2 -> PIP3 -> plcg -> PIP2
