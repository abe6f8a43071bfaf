"""AVICI: symmetries of the network, the acyclicity penalty, training, weights
on disk, ``pc.discover`` and the quick experiment."""

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pandas as pd
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

import probcausal as pc
from probcausal.data import Domain, simulate
from probcausal.models.avici import (
    AVICI,
    acyclic_projection,
    acyclicity,
    load_avici,
    predict,
    save_avici,
    train_avici,
)


@pytest.fixture(scope="module")
def net():
    return AVICI(dim=16, layers=2, heads=2, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def batch():
    dom = Domain(num_variables=6, num_observations=30, num_interventions=10)
    return simulate(jax.random.key(1), dom, 2)


@pytest.mark.slow
def test_equivariant_over_variables(net, batch):
    x = batch.inputs[0]
    perm = np.array([3, 0, 5, 1, 4, 2])
    logits = net(x)
    permuted = net(x[:, perm])
    np.testing.assert_allclose(permuted, logits[perm][:, perm], atol=1e-5, rtol=1e-5)
    assert not np.allclose(logits[~np.eye(6, dtype=bool)], logits[0, 1])  # not constant


@pytest.mark.slow
def test_invariant_over_samples(net, batch):
    x = batch.inputs[1]
    perm = np.asarray(jax.random.permutation(jax.random.key(2), x.shape[0]))
    np.testing.assert_allclose(net(x[perm]), net(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("length", [257, 640])
@pytest.mark.slow
def test_blocked_attention_is_flax_attention(length):
    """Blocks of queries (padded when the length is not a multiple) give flax's
    attention and its gradient, and the network stays invariant over samples."""
    from probcausal.models.avici.model import QUERY_BLOCK, blocked_attention

    assert length > 2 * QUERY_BLOCK  # the blocked path
    q, k, v = jax.random.normal(jax.random.key(length), (3, 3, length, 2, 8))
    np.testing.assert_allclose(
        blocked_attention(q, k, v), nnx.dot_product_attention(q, k, v), atol=1e-6
    )
    loss = lambda f: lambda q: jnp.sum(jnp.sin(f(q, k, v)))  # noqa: E731
    np.testing.assert_allclose(
        jax.grad(loss(blocked_attention))(q),
        jax.grad(loss(nnx.dot_product_attention))(q),
        atol=1e-5,
    )
    net = AVICI(dim=16, layers=1, heads=2, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (length, 4, 2))
    perm = jax.random.permutation(jax.random.key(2), length)
    np.testing.assert_allclose(predict(net, x[perm][None]), predict(net, x[None]), atol=1e-6)


@pytest.mark.slow
def test_diagonal_is_masked(net, batch):
    probs = predict(net, batch.inputs)
    assert probs.shape == (2, 6, 6)
    assert (np.diagonal(np.asarray(probs), axis1=1, axis2=2) == 0).all()


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 9), st.integers(0, 10_000), st.floats(0.1, 1.0))
@pytest.mark.slow
def test_acyclicity_zero_on_dags_positive_on_cycles(d, seed, weight):
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.random((d, d)) < 0.5, 1) * weight * rng.uniform(0.5, 1.0, (d, d))
    perm = rng.permutation(d)
    dag = upper[perm][:, perm].astype(np.float32)
    assert float(acyclicity(jnp.asarray(dag))) == 0.0
    # close a cycle: an edge from a node back to one of its ancestors
    cycle = rng.permutation(d)[: rng.integers(2, d + 1)]
    cyclic = dag.copy()
    for a, b in zip(cycle, np.roll(cycle, -1), strict=True):
        cyclic[a, b] = max(cyclic[a, b], weight)
    rho = float(acyclicity(jnp.asarray(cyclic)))
    exact = np.max(np.abs(np.linalg.eigvals(cyclic)))
    assert exact >= weight * 0.999  # the cycle alone has spectral radius >= weight
    # d power iterations: positive, within a factor of the exact value
    assert 0.5 * exact <= rho <= 1.5 * exact


def test_acyclicity_gradient_is_the_eigenvalue_derivative():
    p = jnp.array([[0.0, 0.8, 0.1], [0.3, 0.0, 0.5], [0.6, 0.2, 0.0]])
    grad = jax.grad(lambda p: acyclicity(p, iterations=60))(p)
    eps = 1e-3
    e = jnp.zeros((3, 3)).at[1, 2].set(eps)
    numeric = np.max(np.abs(np.linalg.eigvals(p + e))) - np.max(np.abs(np.linalg.eigvals(p - e)))
    np.testing.assert_allclose(grad[1, 2], numeric / (2 * eps), rtol=1e-2)


@pytest.mark.slow
def test_save_and_load_round_trip(net, batch, tmp_path):
    save_avici(net, tmp_path / "m.npz", info={"note": "test"})
    loaded, info = load_avici(tmp_path / "m.npz")
    assert info == {"note": "test"} and loaded.config == net.config
    # float16 weights: predictions agree to a few 1e-3
    np.testing.assert_allclose(predict(loaded, batch.inputs), predict(net, batch.inputs), atol=5e-3)


@pytest.mark.slow
def test_training_lowers_the_loss_and_resumes_exactly(tmp_path):
    import shutil

    dom = Domain(num_variables=5, num_observations=20, num_interventions=10)
    kwargs = dict(
        rng_key=jax.random.key(0),
        batch_size=8,
        dim=16,
        layers=1,
        heads=2,
        progress=False,
        learning_rate=3e-3,
        warmup_steps=5,
        chunk_size=10,
        dual_burnin=20,
        dual_every=10,
        checkpoint_every=30,
    )
    _, full = train_avici(dom, 60, checkpoint_dir=tmp_path / "a", **kwargs)
    ce = full.metrics["cross_entropy"]
    assert ce[-20:].mean() < ce[:10].mean()
    assert full.metrics["dual"][-1] > 0  # the multiplier ascended after the burn-in
    # an interruption after step 30: drop the final checkpoint and resume from step 30
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "60")
    _, resumed = train_avici(dom, 60, checkpoint_dir=tmp_path / "b", resume=True, **kwargs)
    np.testing.assert_array_equal(resumed.metrics["loss"], full.metrics["loss"])
    for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(full.params), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_pretrain_continues_a_saved_network(tmp_path, monkeypatch):
    from probcausal.models.avici import pretrain

    tiny = Domain(num_variables=4, num_observations=12, num_interventions=4)
    monkeypatch.setattr(pretrain, "training_domains", lambda kind: [tiny])
    monkeypatch.setattr(pretrain, "NETWORK", {"dim": 8, "layers": 1, "heads": 2})
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    common = ["linear", "--batch-size", "2", "--no-progress"]
    pretrain.main([*common, "--steps", "6", "--out", str(first)])
    pretrain.main([*common, "--steps", "4", "--init", str(first), "--out", str(second)])
    net, info = load_avici(second)
    assert net.config["dim"] == 8  # the network of the first stage, not NETWORK's default
    assert [stage["steps"] for stage in info["history"]] == [6, 4]
    assert info["steps"] == 10
    assert info["seconds"] == pytest.approx(sum(s["seconds"] for s in info["history"]), abs=0.2)
    # a network trained in one stage keeps a flat record
    assert "history" not in load_avici(first)[1]
    # a third stage appends to the history instead of nesting it
    third = pretrain.continued_info(info, {"steps": 2, "seconds": 1.0})
    assert [stage["steps"] for stage in third["history"]] == [6, 4, 2]
    assert third["steps"] == 12 and all("history" not in s for s in third["history"])


def test_acyclic_projection_keeps_the_likeliest_edges():
    names = list("abcd")
    rng = np.random.default_rng(0)
    probs = pd.DataFrame(rng.random((4, 4)) * (1 - np.eye(4)), index=names, columns=names)
    dag = acyclic_projection(probs, 0.3)
    assert nx.is_directed_acyclic_graph(dag)
    above = {(u, v) for u in names for v in names if probs.loc[u, v] > 0.3}
    assert set(dag.edges) <= above
    # the top edge always survives
    top = probs.stack().idxmax()
    assert top in dag.edges


@pytest.mark.slow
def test_discover_inputs(net):
    data = pd.DataFrame(np.random.default_rng(0).normal(size=(50, 3)), columns=["a", "b", "c"])
    found = pc.discover(data, interventions=[None] * 40 + ["b"] * 10, model=net)
    assert found.names == ["a", "b", "c"]
    assert nx.is_directed_acyclic_graph(found.dag)
    # a data set larger than max_samples is split and averaged
    big = pc.discover(data, model=net, max_samples=20)
    assert big.probabilities.shape == (3, 3)
    with pytest.raises(ValueError, match="row 45 names the target 'z'"):
        pc.discover(data, interventions=[None] * 45 + ["z"] * 5, model=net)
    with pytest.raises(ValueError, match=r"mask must have the data's shape \(50, 3\)"):
        pc.discover(data, interventions=np.zeros((50, 2)), model=net)
    bad = data.copy()
    bad.loc[3, "c"] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values in column\(s\) \['c'\]"):
        pc.discover(bad, model=net)
    with pytest.raises(ValueError, match="at least 10 rows"):
        pc.discover(data.iloc[:3], model=net)
    with pytest.raises(ValueError, match="did you mean 'linear'"):
        pc.discover(data, model="linaer")
    with pytest.raises(ValueError, match="unknown pretrained AVICI model 'quadratic'"):
        pc.models.avici.pretrained("quadratic")


@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
def test_shipped_models_load(kind):
    net, info = pc.models.avici.pretrained(kind)
    assert info["kind"] == kind and info["steps"] >= 1000
    assert net.config["dim"] >= 16


@pytest.mark.slow
def test_quick_experiment_thresholds():
    from probcausal.experiments import avici

    results = avici.run(quick=True, progress=False)
    for name in avici.QUICK_DOMAINS:
        for method in ("avici", "pc", "ges", "empty"):
            assert set(results[name][method]) >= {
                "auroc",
                "auprc",
                "shd",
                "f1",
                "seconds_per_dataset",
            }
    assert results["linear_er_gaussian"]["avici"]["auroc"] >= 0.85
    assert results["sachs"]["empty"]["shd"] == 18
    assert results["wall_seconds"] < 600
