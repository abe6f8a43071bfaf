"""ModularDCM: construction from an ADMG, identifiability check before sampling,
and modular training on a front-door SCM with a latent confounder."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.handlers import seed, trace

import probcausal as pc
from probcausal.models.modular_dcm import Continuous, Discrete, ModularDCM

P_D = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])  # P(D | U)
P_M = np.array([0.1, 0.5, 0.9])  # P(M = 1 | D)
P_Y = np.array([[0.1, 0.6], [0.5, 0.9]])  # P(Y = 1 | M, U)
FRONT_DOOR = pc.ADMG(directed=[("D", "M"), ("M", "Y")], bidirected=[("D", "Y")])


def _simulate(key, n):
    k = jax.random.split(key, 4)
    u = jax.random.bernoulli(k[0], 0.5, (n,)).astype(int)
    d = jax.random.categorical(k[1], jnp.log(jnp.asarray(P_D))[u])
    m = jax.random.bernoulli(k[2], jnp.asarray(P_M)[d]).astype(int)
    y = jax.random.bernoulli(k[3], jnp.asarray(P_Y)[m, u]).astype(int)
    return {"D": d, "M": m, "Y": y}


def _true_do():
    """P(Y = 1 | do(D = d)) by enumeration of the SCM."""
    return np.array(
        [
            sum((P_M[d] if m else 1 - P_M[d]) * 0.5 * (P_Y[m, 0] + P_Y[m, 1]) for m in (0, 1))
            for d in range(3)
        ]
    )


def _true_ett(d, e):
    """P(Y_{D=e} = 1 | D = d) by enumeration."""
    p_u = P_D[:, d] / P_D[:, d].sum()  # P(U | D = d), U uniform
    return sum(
        p_u[u] * sum((P_M[e] if m else 1 - P_M[e]) * P_Y[m, u] for m in (0, 1)) for u in (0, 1)
    )


def test_true_ett_is_consistent():
    # on the treated themselves, the ETT is the observational P(Y | D = d)
    for d in range(3):
        p_u = P_D[:, d] / P_D[:, d].sum()
        obs = sum(
            p_u[u] * sum((P_M[d] if m else 1 - P_M[d]) * P_Y[m, u] for m in (0, 1)) for u in (0, 1)
        )
        assert _true_ett(d, d) == pytest.approx(obs)
    assert _true_ett(0, 2) == pytest.approx(0.51125)


def test_model_has_one_generator_per_variable_and_a_shared_confounder_noise():
    dcm = ModularDCM(FRONT_DOOR, {"D": Discrete(3), "M": Continuous(), "Y": Discrete(2)})
    tr = trace(seed(dcm.model, 0)).get_trace()
    assert tr["D"]["value"].shape == (3,) and tr["Y"]["value"].shape == (2,)
    assert tr["M"]["value"].shape == ()
    assert tr["U_D_Y"]["value"].shape == (4,)
    hidden = ["U_D_Y", "D_noise", "M_noise", "Y_noise", "D_gumbel", "Y_gumbel"]
    admg = pc.ADMG.from_model(dcm.model, hidden=hidden)
    assert sorted(admg.di.edges) == sorted(FRONT_DOOR.di.edges)
    assert sorted(tuple(sorted(e)) for e in admg.bi.edges) == [("D", "Y")]


@pytest.mark.slow
def test_non_identifiable_queries_are_refused_unless_allowed():
    bow = pc.ADMG(directed=[("D", "Y")], bidirected=[("D", "Y")])
    dcm = ModularDCM(bow, {"D": Discrete(3), "Y": Discrete(2)}, hidden=(8,))
    with pytest.raises(
        pc.NotIdentifiableError, match=r"P\(Y \| do\(D\)\) is not identifiable"
    ) as e:
        dcm.interventional({"D": 0}, num_samples=10, rng_key=jax.random.key(0))
    assert "allow_unidentifiable=True" in e.value.__notes__[0]
    with pytest.raises(pc.errors.NotFittedError, match=r"\['D', 'Y'\] are not trained"):
        dcm.interventional(
            {"D": 0}, num_samples=10, rng_key=jax.random.key(0), allow_unidentifiable=True
        )
    rng = np.random.default_rng(0)
    labels = {"D": rng.integers(0, 3, 64), "Y": rng.integers(0, 2, 64)}
    dcm.fit(labels, steps=1, rng_key=jax.random.key(0), batch_size=32, progress=False)
    draws = dcm.interventional(
        {"D": 0}, num_samples=10, rng_key=jax.random.key(0), allow_unidentifiable=True
    )
    assert draws["Y"].shape == (10,) and set(np.unique(draws["D"])) == {0}


def test_bad_variables_and_data_are_named():
    with pytest.raises(ValueError, match=r"variables gives no type for \['Y'\]"):
        ModularDCM(FRONT_DOOR, {"D": Discrete(3), "M": Discrete(2)})
    dcm = ModularDCM(FRONT_DOOR, {"D": Discrete(3), "M": Discrete(2), "Y": Discrete(2)})
    with pytest.raises(pc.errors.TrainingDataError, match="'Z', which is no variable"):
        dcm.encode({"Z": jnp.zeros(3)})
    # labels that are not classes 0..K-1 would become all-zero one-hot vectors
    for bad in ([0, 1, np.nan], [0, -1, 2], [0, 3, 1], [0, 1.5, 2]):
        with pytest.raises(pc.errors.TrainingDataError, match="'D' hold 1 value"):
            dcm.encode({"D": np.array(bad)})
    np.testing.assert_allclose(dcm.encode({"D": np.array([0.0, 2.0])})["D"], [[1, 0, 0], [0, 0, 1]])
    with pytest.raises(pc.errors.OutOfSupportError, match="value 3 for site 'D'"):
        dcm.encode({"D": 3}, kind="intervention")
    # a variable missing from the data is named before any training
    with pytest.raises(pc.errors.TrainingDataError, match=r"lack the variable\(s\) \['Y'\]"):
        dcm.fit({"D": np.zeros(8), "M": np.zeros(8)}, steps=1, rng_key=jax.random.key(0))
    with pytest.raises(pc.errors.NotFittedError, match="not trained yet"):
        dcm.interventional({"D": 0}, num_samples=10, rng_key=jax.random.key(0))


@pytest.fixture(scope="module")
def front_door_fit():
    """The front-door DCM trained once, for the tests of what it learned and of
    the core queries on it: (dcm, data, history)."""
    data = _simulate(jax.random.key(0), 20000)
    dcm = ModularDCM(
        FRONT_DOOR, {"D": Discrete(3), "M": Discrete(2), "Y": Discrete(2)}, hidden=(32, 32)
    )
    assert [m.variables for m in dcm.modules()] == [("M",), ("D", "Y")]
    history = dcm.fit(
        data, steps=1500, rng_key=jax.random.key(1), learning_rate=1e-3, progress=False
    )
    return dcm, data, history


@pytest.mark.slow
@pytest.mark.xdist_group("front_door_fit")  # one worker trains the fixture, once
def test_modular_training_recovers_the_front_door_interventional(front_door_fit):
    dcm, data, history = front_door_fit
    naive = np.array([float(data["Y"][data["D"] == d].mean()) for d in range(3)])
    assert set(history) == {("M",), ("D", "Y")}
    learned = np.array(
        [
            float(
                dcm.interventional({"D": d}, num_samples=4000, rng_key=jax.random.key(2))[
                    "Y"
                ].mean()
            )
            for d in range(3)
        ]
    )
    truth = _true_do()
    tv_learned = np.abs(learned - truth).mean()  # binary Y: TV = |p - q|
    tv_naive = np.abs(naive - truth).mean()
    # naive TV is ~0.12; Monte Carlo error of each learned p at 4000 draws is ~0.008
    assert tv_naive > 0.1
    assert tv_learned < 0.05
    assert tv_learned < 0.5 * tv_naive

    # the effect of treatment on the treated, P(Y_{D=2} = 1 | D = 0) = 0.511, apart
    # from P(Y = 1 | do(D = 2)) = 0.665 and the naive P(Y = 1 | D = 2) = 0.811
    cf = dcm.counterfactual({"D": 0}, {"D": 2}, num_samples=4000, rng_key=jax.random.key(3))
    assert set(np.unique(cf["D"]).tolist()) == {2}
    assert abs(float(cf["Y"].mean()) - _true_ett(0, 2)) < 0.07


@pytest.mark.slow
def test_options_are_checked_and_named():
    from flax import nnx

    variables = {"D": Discrete(3), "M": Discrete(2), "Y": Discrete(2)}
    with pytest.raises(ValueError, match=r"generators names \['Z'\]"):
        ModularDCM(FRONT_DOOR, variables, generators={"Z": None})
    wrong = pc.nn.MLPGenerator(5, 1, out_shape=(2,), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"'M' has 3 context features"):
        ModularDCM(FRONT_DOOR, variables, generators={"M": wrong})
    dcm = ModularDCM(FRONT_DOOR, variables, hidden=(8,))
    data = _simulate(jax.random.key(0), 500)
    with pytest.raises(ValueError, match=r"train names \['Q'\]"):
        dcm.fit(data, steps=2, rng_key=jax.random.key(0), train=["Q"], progress=False)
    with pytest.raises(ValueError, match="positive divisor of batch_size=256"):
        dcm.fit(data, steps=2, rng_key=jax.random.key(0), pack=3, progress=False)
    with pytest.raises(ValueError, match=r"\['M'\] are not discrete"):
        ModularDCM(FRONT_DOOR, {**variables, "M": Continuous()}, hidden=(8,)).counterfactual(
            {"M": 0.5}, {"D": 1}, num_samples=10, rng_key=jax.random.key(0)
        )


@pytest.mark.slow
def test_train_selects_modules_and_generator_returns_trained_weights():
    variables = {"D": Discrete(3), "M": Discrete(2), "Y": Discrete(2)}
    dcm = ModularDCM(FRONT_DOOR, variables, hidden=(8,))
    untrained = pc.nn.Frozen(dcm.generator("M")).state
    history = dcm.fit(
        _simulate(jax.random.key(0), 500),
        steps=250,
        rng_key=jax.random.key(0),
        train=["M"],
        pack=4,
        batch_size=64,
        progress=False,
    )
    assert list(history) == [("M",)] and set(dcm.params) == {"M_net$params"}
    # 250 steps = two compiled chunk lengths (100, 50) and one reused chunk
    assert dcm.timings[("M",)]["steps_per_second"] > 0
    trained = pc.nn.Frozen(dcm.generator("M")).state
    moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), untrained, trained)
    assert any(jax.tree.leaves(moved))
    # the returned module computes what the model's site computes with the params
    g = dcm.generator("M")
    ctx, u = jax.nn.one_hot(jnp.array([0, 2]), 3), jnp.zeros((2, 4))
    from numpyro.contrib.module import nnx_module
    from numpyro.handlers import substitute as sub

    def call():
        return nnx_module("M_net", dcm.generators["M"])(ctx, u)

    via_model = seed(sub(call, data=dcm.params), 0)()
    np.testing.assert_allclose(g(ctx, u), via_model, rtol=1e-6)


@pytest.mark.slow
def test_image_variables_get_convolutional_networks():
    from probcausal.models.modular_dcm import Image

    graph = pc.ADMG(directed=[("D", "I")])
    dcm = ModularDCM(graph, {"D": Discrete(2), "I": Image((8, 8, 1))}, hidden=(8,))
    assert isinstance(dcm.generators["I"], pc.nn.ConvGenerator)
    tr = trace(seed(dcm.model, 0)).get_trace()
    assert tr["I"]["value"].shape == (8, 8, 1)
    d = jax.random.bernoulli(jax.random.key(0), 0.5, (64,)).astype(int)
    data = {"D": d, "I": jnp.broadcast_to(d[:, None, None, None] * 0.8, (64, 8, 8, 1))}
    with pytest.raises(ValueError, match="pack > 1 needs MLP critics"):
        dcm.fit(data, steps=1, rng_key=jax.random.key(0), train=["I"], pack=2, progress=False)
    history = dcm.fit(
        data, steps=2, rng_key=jax.random.key(0), train=["I"], batch_size=16, progress=False
    )
    assert list(history) == [("I",)] and np.isfinite(history[("I",)]["loss"]).all()
    draws = dcm.interventional({"D": 1}, num_samples=5, rng_key=jax.random.key(1))
    assert draws["I"].shape == (5, 8, 8, 1)


@pytest.mark.slow
@pytest.mark.xdist_group("front_door_fit")
def test_a_trained_dcm_is_a_causal_model_for_the_core_queries(front_door_fit):
    """pc.ate, pc.interventional and pc.to_inference_data take dcm.causal_model():
    the ATE on the one-hot outcome is the change in each class's probability, and
    matches the DCM's own label queries on the same trained model."""
    dcm = front_door_fit[0]
    cm = dcm.causal_model()
    assert isinstance(cm, pc.CausalModel)
    n = 4000
    treated, control = pc.nn.one_hot(2, 3), pc.nn.one_hot(0, 3)
    effect = pc.ate(cm, "D", "Y", treated, control, rng_key=jax.random.key(2), num_samples=n)
    assert effect.shape == (2,)
    np.testing.assert_allclose(float(effect.sum()), 0.0, atol=1e-6)  # probabilities move
    p = [
        float(
            dcm.interventional({"D": d}, rng_key=jax.random.key(3 + d), num_samples=n)["Y"].mean()
        )
        for d in (2, 0)
    ]
    # two independent estimates of the same difference of Bernoulli means
    assert abs(float(effect[1]) - (p[0] - p[1])) < 4 * np.sqrt(4 * 0.25 / n)
    draws = pc.interventional(cm, {"D": treated}, rng_key=jax.random.key(5), num_samples=50)
    idata = pc.to_inference_data(draws)
    assert idata.posterior_predictive["Y"].shape[:2] == (1, 50)
    np.testing.assert_array_equal(np.asarray(draws["D"]), np.tile(treated, (50, 1)))
