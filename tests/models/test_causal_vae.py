"""CausalVAE: the causal layer against a linear SCM, the label graph, the
augmented Lagrangian, counterfactuals through a depth-2 chain, resume, bad data;
the Pendulum and Flow generators' counterfactual truth."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import probcausal as pc
from probcausal.data import flow_data, pendulum_data
from probcausal.errors import AbductionError, NotFittedError, TrainingDataError
from probcausal.models.causal_vae import learn_label_graph
from probcausal.models.causal_vae.layers import ConceptMechanisms, acyclicity, solve_concepts

pytestmark = pytest.mark.xdist_group("causal_vae")


def test_causal_layer_with_known_a_is_the_linear_scm():
    a = np.array([[0, 0.8, 0, -0.5], [0, 0, 1.5, 0], [0, 0, 0, 0.7], [0, 0, 0, 0]], np.float32)
    mech = ConceptMechanisms((a != 0).astype(int), kind="linear", rngs=nnx.Rngs(0))
    mech.weights.value = jnp.asarray(a)
    eps = jax.random.normal(jax.random.key(0), (50, 4))
    z = solve_concepts(mech, eps, 4)
    want = np.linalg.solve(np.eye(4) - a.T, np.asarray(eps).T).T  # z = (I - Aᵀ)⁻¹ ε
    np.testing.assert_allclose(np.asarray(z), want, rtol=1e-5, atol=1e-5)
    assert float(acyclicity(jnp.asarray(a))) == pytest.approx(0.0, abs=1e-6)
    cyc = a.copy()
    cyc[3, 0] = 1.0
    assert float(acyclicity(jnp.asarray(cyc))) > 1e-3


def test_label_graph_recovers_pendulum_and_flow():
    pend = pendulum_data(8, stride=2)
    g = learn_label_graph(pend.labels)
    np.testing.assert_array_equal(g.adjacency, pend.adjacency)
    assert g.by_noise == ()  # both colliders: oriented by the independence of the causes
    flow = flow_data(3000, 8, rng_key=jax.random.key(0))
    g = learn_label_graph(flow.labels)
    np.testing.assert_array_equal(g.adjacency, flow.adjacency)
    assert g.by_noise == ((0, 1),)  # ball -> water is Markov equivalent to its reversal


def test_generators_counterfactual_truth_recomputes_descendants():
    data = flow_data(50, 16, rng_key=jax.random.key(1))
    labels, x = data.counterfactual({"ball": 30.0})
    np.testing.assert_allclose(labels[:, 0], 30.0)
    r, h_raw, hole = data.noise.T
    water = (30.0 / 30.0) ** 3 + h_raw / 10.0
    np.testing.assert_allclose(labels[:, 1], water, rtol=1e-5)
    np.testing.assert_allclose(labels[:, 3], np.sqrt(1.96 * water * (hole / 3 - 0.5)), rtol=1e-5)
    np.testing.assert_allclose(labels[:, 2], data.labels[:, 2])  # hole: not a descendant
    assert x.shape == data.x.shape and not np.allclose(x, data.x)
    same, x_same = data.counterfactual({})
    np.testing.assert_allclose(same, data.labels, rtol=1e-6)
    np.testing.assert_allclose(x_same, data.x)
    pend = pendulum_data(16, stride=10)
    labels, _ = pend.counterfactual({"phi": pend.labels[::-1, 1]})
    np.testing.assert_allclose(labels[:, 0], pend.labels[:, 0])  # theta stays
    assert not np.allclose(labels[:, 3], pend.labels[:, 3])  # the shadow moves
    with pytest.raises(ValueError, match="no concept"):
        pend.counterfactual({"gravity": 1.0})
    with pytest.raises(ValueError, match="one per row"):
        pend.counterfactual({"theta": np.zeros(3)})


@pytest.mark.slow
def test_augmented_lagrangian_drives_acyclicity_to_zero():
    # every edge allowed: only the constraint keeps the graph acyclic
    data = flow_data(600, 8, rng_key=jax.random.key(2))
    m = pc.CausalVAE(data.names, graph="free", hidden=(32,), steps_per_dual=100)
    m.fit(data.x, data.labels, rng_key=jax.random.key(0), steps=2000, progress=False)
    h = m.history["acyclicity"]
    assert float(h[-1]) < 1e-6, float(h[-1])
    assert m.history["dual"][1] > 1.0  # the penalty had to grow
    assert m.graph().number_of_nodes() == 4


@pytest.fixture(scope="module")
def chain_model():
    data = flow_data(800, 12, rng_key=jax.random.key(3))
    m = pc.CausalVAE(data.names, hidden=(64,))
    m.fit(data.x, data.labels, rng_key=jax.random.key(0), steps=600, progress=False)
    return m, data


def test_counterfactual_through_a_depth_two_chain_recomputes_the_grandchild(chain_model):
    m, data = chain_model
    edges = m.adjacency(binary=True)
    assert edges[0, 1] and edges[1, 3]  # ball -> water -> flow kept
    images = data.x[:20]
    cf = pc.counterfactual(
        m.causal_model(),
        {"x": images},
        {"ball": 33.0},
        rng_key=jax.random.key(1),
        num_samples=2,
        model_kwargs={"n": 20},
    )
    fact = cf.factual
    assert np.allclose(cf["ball"], 33.0)
    mech = m._mechanism_fn()

    def standardized(values):
        return (np.stack([values[c] for c in m.concepts], -1) - m.label_mean) / m.label_std

    # each concept's noise is kept: z_j - f_j(parents) is the same in both worlds
    zf, zc = standardized(fact), standardized(cf)
    for j in (1, 3):  # water (child) and flow (grandchild)
        rf = zf[..., j] - np.asarray(mech(jnp.asarray(zf))[0])[..., j]
        rc = zc[..., j] - np.asarray(mech(jnp.asarray(zc))[0])[..., j]
        np.testing.assert_allclose(rc, rf, atol=2e-4)
        assert not np.allclose(zc[..., j], zf[..., j], atol=1e-3)  # and it moved
    np.testing.assert_allclose(zc[..., 2], zf[..., 2], atol=1e-6)  # hole: not a descendant
    # the image: the decoded counterfactual concepts plus the factual residual
    resid = images - m.decode(np.stack([fact[c] for c in m.concepts], -1))
    want = m.decode(np.stack([cf[c] for c in m.concepts], -1)) + resid
    np.testing.assert_allclose(np.asarray(cf["x"]), want, atol=2e-4)
    with pytest.raises(AbductionError, match="give the image 'x' as evidence"):
        pc.counterfactual(
            m.causal_model(), {"hole": 10.0}, {"ball": 33.0}, rng_key=jax.random.key(1)
        )
    # several concepts at once
    both = m.counterfactual(images, {"ball": 10.0, "hole": 14.0}, rng_key=jax.random.key(2))
    assert np.allclose(both["ball"], 10.0) and np.allclose(both["hole"], 14.0)


def test_interventional_images_follow_the_concepts(chain_model):
    m, _ = chain_model
    draws = pc.interventional(
        m.causal_model(), {"ball": 34.0}, rng_key=jax.random.key(0), num_samples=64
    )
    assert draws["x"].shape == (64, 1, 12, 12, 3)
    assert np.allclose(draws["ball"], 34.0)


def test_bad_inputs_raise_named_errors():
    data = pendulum_data(8, stride=12)
    m = pc.CausalVAE(data.names)
    kw = dict(rng_key=jax.random.key(0), steps=5, progress=False)
    with pytest.raises(TrainingDataError, match=r"labels have shape \(56, 3\)"):
        m.fit(data.x, data.labels[:, :3], **kw)
    bad = data.x.copy()
    bad[4, 1, 1, 0] = np.nan
    with pytest.raises(TrainingDataError, match="x holds a non-finite value at row 4"):
        m.fit(bad, data.labels, **kw)
    with pytest.raises(TrainingDataError, match="give images"):
        m.fit(data.x.reshape(len(data.x), -1), data.labels, **kw)
    with pytest.raises(TrainingDataError, match=r"graph has shape \(2, 2\)"):
        pc.CausalVAE(data.names, graph=np.zeros((2, 2))).fit(data.x, data.labels, **kw)
    with pytest.raises(NotFittedError):
        m.causal_model()
    with pytest.raises(ValueError, match="distinct"):
        pc.CausalVAE(["a", "a"])
    with pytest.raises(ValueError, match=r"split the concepts .* \(unknown \['shadow'\]\)"):
        pc.CausalVAE(data.names, decoder_parts=[("theta", "phi"), ("shadow",)])


def test_decoder_parts_draw_each_part_from_its_own_concepts():
    from probcausal.models.causal_vae.model import ImageDecoder

    dec = ImageDecoder(3, (4, 4, 1), hidden=(8,), parts=[(0,), (1, 2)], rngs=nnx.Rngs(0))
    z = jax.random.normal(jax.random.key(0), (5, 3))
    logit = lambda v: jnp.log(dec(v)) - jnp.log1p(-dec(v))  # noqa: E731
    moved = z.at[:, 0].add(1.0)
    # changing concept 0 changes the logits by part 0's network alone
    want = dec.nets[0](moved[:, :1]) - dec.nets[0](z[:, :1])
    got = (logit(moved) - logit(z)).reshape(5, -1)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-4)
    image, overlap = dec(z, True)
    assert image.shape == (5, 4, 4, 1) and overlap.shape == (5,)
    nets = zip(dec.nets, dec.parts, strict=True)
    parts = [jnp.sum(jnp.abs(net(z[:, list(p)])), -1) for net, p in nets]
    np.testing.assert_allclose(np.asarray(overlap), np.asarray(sum(parts)), rtol=1e-6)


@pytest.mark.slow
def test_resume_is_bitwise(tmp_path):
    data = pendulum_data(8, stride=6)
    kw = dict(rng_key=jax.random.key(0), progress=False)
    ckpt = tmp_path / "cvae"
    full = pc.CausalVAE(data.names, hidden=(16,), steps_per_dual=50)
    full.fit(data.x, data.labels, steps=200, checkpoint_dir=ckpt, **kw)
    steps = sorted(int(p) for p in os.listdir(ckpt) if p.isdigit())
    assert steps[-2:] == [100, 200]
    shutil.rmtree(ckpt / "200")
    resumed = pc.CausalVAE(data.names, hidden=(16,), steps_per_dual=50)
    resumed.fit(data.x, data.labels, steps=200, checkpoint_dir=ckpt, resume=True, **kw)
    for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(full.history["loss"], resumed.history["loss"])


@pytest.mark.slow
def test_style_latents_are_abducted_and_kept():
    data = pendulum_data(8, stride=3)
    m = pc.CausalVAE(data.names, style_dim=2, hidden=(32,))
    m.fit(data.x, data.labels, rng_key=jax.random.key(0), steps=100, progress=False)
    images = data.x[:6]
    cf = m.counterfactual(images, {"phi": 1.3}, rng_key=jax.random.key(1), num_samples=3)
    assert cf["style"].shape == (3, 6, 2)
    np.testing.assert_array_equal(cf["style"], cf.factual["style"])  # a root: not moved
    concepts = np.stack([cf[c] for c in m.concepts], -1)
    resid = images - m.decode(np.stack([cf.factual[c] for c in m.concepts], -1), cf["style"])
    np.testing.assert_allclose(
        np.asarray(cf["x"]), m.decode(concepts, cf["style"]) + resid, atol=2e-4
    )


def test_linear_mechanism_learns_a_negative_edge():
    # labels from a linear SCM a -> b with a negative weight, seen through a
    # random linear projection squashed into [0, 1]; the support given (a linear
    # Gaussian pair is Markov equivalent to its reversal)
    rng = np.random.default_rng(0)
    a = rng.normal(size=1500)
    b = -1.5 * a + 0.5 * rng.normal(size=1500)
    labels = np.stack([a, b], 1).astype(np.float32)
    images = 1 / (1 + np.exp(-(labels @ rng.normal(size=(2, 16))))).reshape(-1, 4, 4, 1)
    m = pc.CausalVAE(["a", "b"], mechanism="linear", graph=np.array([[0, 1], [0, 0]]), hidden=(32,))
    m.fit(images, labels, rng_key=jax.random.key(0), steps=300, progress=False)
    np.testing.assert_array_equal(m.adjacency(binary=True), [[0, 1], [0, 0]])
    # standardized units: corr(a, b) = -1.5 / sqrt(1.5^2 + 0.5^2)
    assert m.adjacency()[0, 1] == pytest.approx(-1.5 / np.sqrt(2.5), abs=0.05)
    assert sorted(m.graph().edges) == [("a", "b")]
    with pytest.raises(ValueError, match="mechanism must be"):
        pc.CausalVAE(["a", "b"], mechanism="gp")
