import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy import stats

import probcausal as pc
from probcausal.errors import (
    AbductionError,
    EvidenceShapeError,
    InterventionShapeError,
    InvalidEvidenceError,
    MissingMechanismError,
    UnknownSiteError,
)
from tests.scms import binary, encouragement, partial

KEY = jax.random.PRNGKey(0)


def test_encouragement_exact_in_every_sample():
    cf = pc.counterfactual(
        encouragement, {"x": 0.5, "h": 1.0, "y": 1.5}, {"h": 2.0}, rng_key=KEY, num_samples=500
    )
    assert cf.method == "exact"
    assert cf["y"].shape == (500,)
    np.testing.assert_allclose(cf["y"], 1.9, rtol=1e-6)
    np.testing.assert_allclose(cf.factual["y"], 1.5)
    assert cf.labels == ["factual", "do(h=2.0)"]


def _check_partial(cf, n):
    # posterior x | y=3 is N(1.2, 0.2); y' = 2 + (3 - 2x) ~ N(2.6, 0.8)
    y = np.asarray(cf["y"])
    mean_tol = 4 * np.sqrt(0.8 / n)
    var_tol = 4 * 0.8 * np.sqrt(2 / (n - 1))
    assert abs(y.mean() - 2.6) < mean_tol
    assert abs(y.var() - 0.8) < var_tol
    np.testing.assert_allclose(cf.factual["y"], 3.0)


@pytest.mark.slow
def test_partial_evidence_nuts():
    n = 4000
    cf = pc.counterfactual(
        partial,
        {"y": 3.0},
        {"x": 1.0},
        rng_key=KEY,
        num_samples=n,
        num_warmup=1000,
        method="nuts",
    )
    assert cf.method == "nuts"
    # NUTS draws are autocorrelated: widen by an effective-size factor of 2
    _check_partial(cf, n // 2)


def test_partial_evidence_svi():
    n = 4000
    cf = pc.counterfactual(
        partial, {"y": 3.0}, {"x": 1.0}, rng_key=KEY, num_samples=n, method="svi", svi_steps=3000
    )
    assert cf.method == "svi"
    _check_partial(cf, n)


def test_probability_of_necessity_binary_gumbel_max():
    n = 20000
    pn = pc.probability_of_necessity(binary, "x", "y", rng_key=KEY, num_samples=n)
    assert abs(float(pn) - 0.7) < 4 * np.sqrt(0.21 / n)


def test_same_key_same_answer_and_different_key_differs():
    args = dict(rng_key=KEY, num_samples=200)
    a = pc.counterfactual(binary, {"x": 1, "y": 1}, {"x": 0}, **args)["y"]
    b = pc.counterfactual(binary, {"x": 1, "y": 1}, {"x": 0}, **args)["y"]
    c = pc.counterfactual(
        binary, {"x": 1, "y": 1}, {"x": 0}, rng_key=jax.random.PRNGKey(1), num_samples=200
    )["y"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_list_of_actions_gives_world_axis():
    cf = pc.counterfactual(
        encouragement,
        {"x": 0.5, "h": 1.0, "y": 1.5},
        [{"h": 2.0}, {"h": 0.0}, {"x": 0.0}],
        rng_key=KEY,
        num_samples=3,
    )
    assert cf["y"].shape == (3, 3)
    # y' = 0.7 x + 0.4 h + u_y with u_y = 1.5 - 0.35 - 0.4 = 0.75; do(x=0): h' = 1 - 0.25
    np.testing.assert_allclose(cf["y"][0], [1.9, 1.1, 0.75 + 0.4 * 0.75], rtol=1e-5)
    assert cf.worlds()["y"].shape == (3, 4, *())


def test_unit_level_counterfactuals_100k_units_exact():
    n = 100_000
    k = jax.random.split(KEY, 3)
    x = jax.random.normal(k[0], (n,))
    h = 0.5 * x + jax.random.normal(k[1], (n,))
    y = 0.7 * x + 0.4 * h + jax.random.normal(k[2], (n,))
    cf = pc.counterfactual(
        encouragement,
        {"x": x, "h": h, "y": y},
        {"h": 2.0},
        rng_key=KEY,
        num_samples=2,
        model_kwargs={"n": n},
    )
    assert cf["y"].shape == (2, n)
    expected = y + 0.4 * (2.0 - h)
    np.testing.assert_allclose(cf["y"][0], expected, atol=2e-5)
    np.testing.assert_array_equal(cf["y"][0], cf["y"][1])


def test_discrete_latent_by_enumeration_matches_bayes():
    def model():
        u = numpyro.sample("u", dist.Bernoulli(0.3))
        x = numpyro.sample("x", dist.Bernoulli(0.2 + 0.6 * u))
        return numpyro.sample("y", dist.Normal(x + 2.0 * u, 0.5))

    n = 20000
    cf = pc.counterfactual(model, {"x": 1, "y": 2.5}, {"x": 0}, rng_key=KEY, num_samples=n)
    assert cf.method == "enumeration"
    like = lambda u: (0.2 + 0.6 * u) * np.exp(-0.5 * ((2.5 - 1 - 2 * u) / 0.5) ** 2)
    post_u1 = 0.3 * like(1) / (0.3 * like(1) + 0.7 * like(0))
    u = np.asarray(cf.latents["u"])
    assert abs(u.mean() - post_u1) < 4 * np.sqrt(post_u1 * (1 - post_u1) / n)
    # y' = y - 1 exactly (additive noise, x: 1 -> 0)
    np.testing.assert_allclose(cf["y"], 1.5, rtol=1e-6)


def test_enumeration_over_unit_plate_is_per_unit():
    def model(n=3):
        with numpyro.plate("units", n):
            u = numpyro.sample("u", dist.Bernoulli(0.5))
            return numpyro.sample("y", dist.Normal(4.0 * u, 0.5))

    cf = pc.counterfactual(
        model, {"y": jnp.array([0.1, 3.9, 2.0])}, {"u": 1}, rng_key=KEY, num_samples=4000
    )
    u = np.asarray(cf.latents["u"]).mean(0)
    np.testing.assert_allclose(u[:2], [0.0, 1.0], atol=1e-3)
    assert abs(u[2] - 0.5) < 4 * np.sqrt(0.25 / 4000)


def _mixed():
    z = numpyro.sample("z", dist.Normal(0, 1))
    u = numpyro.sample("u", dist.Bernoulli(0.5))
    return numpyro.sample("y", dist.Normal(z + 3.0 * u, 0.3))


def _p_u1(y):
    """P(u = 1 | y) for _mixed: y | u ~ N(3 u, 1 + 0.09)."""
    s = np.sqrt(1.09)
    a, b = stats.norm(3, s).pdf(y), stats.norm(0, s).pdf(y)
    return a / (a + b)


@pytest.mark.slow
def test_mixed_latents_with_two_modes():
    """y = 1.6 lies between the modes u = 0 and u = 1: NUTS over z with u summed out
    sees two modes its chains cannot weigh, so auto falls back to tempered SMC with
    u summed out by elimination, then u drawn exactly given z."""
    n = 4000
    cf = pc.counterfactual(_mixed, {"y": 1.6}, {"u": 0}, rng_key=KEY, num_samples=n)
    assert cf.method == "smc"
    u = np.asarray(cf.latents["u"])
    p = _p_u1(1.6)
    assert abs(u.mean() - p) < 4 * np.sqrt(p * (1 - p) / n)
    # z | u, y ~ N((y - 3u) / 1.09, ...): the counterfactual y' = y - 3 u exactly
    np.testing.assert_allclose(np.asarray(cf["y"]), 1.6 - 3.0 * u, atol=1e-4)
    z_mean = (p * (1.6 - 3) + (1 - p) * 1.6) / 1.09
    assert abs(float(np.mean(cf.latents["z"])) - z_mean) < 4 * 1.6 / np.sqrt(n)


@pytest.mark.slow
def test_mixed_latents_by_marginal_nuts_and_by_gibbs():
    def overlapping():  # u moves y by half a standard deviation: one mode
        z = numpyro.sample("z", dist.Normal(0, 1))
        u = numpyro.sample("u", dist.Bernoulli(0.5))
        numpyro.sample("y", dist.Normal(z + 0.5 * u, 1.0))

    n = 2000
    cf = pc.counterfactual(
        overlapping, {"y": 1.0}, {"u": 0}, rng_key=KEY, num_samples=n, method="nuts"
    )
    assert cf.method == "nuts" and max(d["r_hat"] for d in cf.diagnostics.values()) < 1.05
    s = np.sqrt(2.0)  # y | u ~ N(0.5 u, 2)
    a, b = stats.norm(0.5, s).pdf(1.0), stats.norm(0, s).pdf(1.0)
    p = a / (a + b)
    # draws from 4 chains: a margin for their autocorrelation (ESS about n / 2)
    assert abs(np.asarray(cf.latents["u"]).mean() - p) < 4 * np.sqrt(2 * p * (1 - p) / n)
    g = pc.counterfactual(_mixed, {"y": 3.2}, {"u": 0}, rng_key=KEY, num_samples=n, method="gibbs")
    assert g.method == "gibbs"
    np.testing.assert_allclose(np.asarray(g["y"]), 3.2 - 3 * np.asarray(g.latents["u"]), atol=1e-4)


def test_deterministic_and_model_observed_sites():
    def model(y_obs=None):
        x = numpyro.sample("x", dist.Normal(0, 1))
        d = numpyro.deterministic("d", 2 * x)
        return numpyro.sample("y", dist.Normal(d, 1), obs=y_obs)

    cf = pc.counterfactual(
        model,
        {"x": 1.0},
        {"x": 0.0},
        rng_key=KEY,
        num_samples=2,
        model_kwargs={"y_obs": jnp.array(2.5)},
    )
    np.testing.assert_allclose(cf["y"], 0.5, rtol=1e-6)


# -- bad input ---------------------------------------------------------------------------


def test_unknown_evidence_site():
    with pytest.raises(UnknownSiteError, match=r"evidence name\(s\) \['z'\].*\['h', 'x', 'y'\]"):
        pc.counterfactual(encouragement, {"z": 1.0}, {"h": 1.0}, rng_key=KEY)


def test_unknown_action_site():
    with pytest.raises(UnknownSiteError, match=r"intervention name\(s\) \['hh'\]"):
        pc.counterfactual(encouragement, {"x": 1.0}, {"hh": 1.0}, rng_key=KEY)


def test_evidence_of_wrong_shape():
    with pytest.raises(EvidenceShapeError, match=r"site 'y' has shape \(3,\).*shape \(5,\)"):
        pc.counterfactual(
            encouragement, {"y": jnp.zeros(3)}, {"h": 1.0}, rng_key=KEY, model_kwargs={"n": 5}
        )


def test_intervention_with_mismatched_plate_size():
    with pytest.raises(
        InterventionShapeError, match=r"site 'h' inside plate\(s\) 'units' \(size 5"
    ):
        pc.counterfactual(
            encouragement,
            {"y": jnp.zeros(5)},
            {"h": jnp.ones(3)},
            rng_key=KEY,
            model_kwargs={"n": 5},
        )


def test_family_without_mechanism():
    def model():
        x = numpyro.sample("x", dist.ProjectedNormal(jnp.ones(3)))
        return numpyro.sample("y", dist.Normal(x.sum(), 1.0))

    evidence = {"x": jnp.array([1.0, 0.0, 0.0]), "y": 1.0}
    with pytest.raises(MissingMechanismError, match=r"site 'x' uses .*ProjectedNormal.*register"):
        pc.counterfactual(model, evidence, {"x": jnp.array([0.0, 1.0, 0.0])}, rng_key=KEY)


def test_von_mises_counterfactual_rotates_with_its_parent():
    """a ~ N(0, 1), x ~ VonMises(a, 3): evidence a = 0.5, x = 3.0 (offset 2.5);
    do(a = 1.5) rotates x by 1.0, across the wrap: 4.0 - 2 pi."""

    def model():
        a = numpyro.sample("a", dist.Normal(0, 1))
        numpyro.sample("x", dist.VonMises(a, 3.0))

    cf = pc.counterfactual(model, {"a": 0.5, "x": 3.0}, {"a": 1.5}, rng_key=KEY, num_samples=8)
    np.testing.assert_allclose(np.asarray(cf["x"]), 4.0 - 2 * np.pi, atol=1e-4)


def test_nan_evidence():
    with pytest.raises(InvalidEvidenceError, match=r"site 'y' holds 1 NaN.*unobserved"):
        pc.counterfactual(encouragement, {"y": float("nan")}, {"h": 1.0}, rng_key=KEY)


def test_finite_jax_evidence_is_checked_once_and_nan_every_time():
    from probcausal import compilation as _program
    from probcausal.evidence import known_finite

    n = 5
    ok = {k: jnp.ones(n) for k in "xhy"}
    bad = {**ok, "h": jnp.ones(n).at[2].set(jnp.inf)}
    query = dict(rng_key=KEY, num_samples=1, model_kwargs={"n": n})
    assert not known_finite(ok)
    pc.counterfactual(encouragement, ok, {"h": 2.0}, **query)
    assert known_finite(ok)  # immutable: later queries skip the pass over it
    programs = set(_program._CACHE)
    np.testing.assert_allclose(
        pc.counterfactual(encouragement, ok, {"h": 0.0}, **query)["y"][0], 0.6, rtol=1e-6
    )
    assert set(_program._CACHE) <= programs  # the first query's program, not a new one
    for _ in range(2):  # never remembered as finite
        with pytest.raises(InvalidEvidenceError, match=r"site 'h' holds 1 NaN or infinite"):
            pc.counterfactual(encouragement, bad, {"h": 2.0}, **query)
    assert not known_finite(bad)
    as_numpy = {k: np.ones(n) for k in "xhy"}  # mutable: checked on every query
    pc.counterfactual(encouragement, as_numpy, {"h": 2.0}, **query)
    assert not known_finite(as_numpy)


def test_engine_that_cannot_handle_discrete_latents():
    with pytest.raises(AbductionError, match=r"discrete latent site\(s\) \['x'\]"):
        pc.counterfactual(binary, {"y": 1}, {"x": 0}, rng_key=KEY, method="nuts")
    with pytest.raises(AbductionError, match=r"method='exact'.*\['x'\] are latent"):
        pc.counterfactual(binary, {"y": 1}, {"x": 0}, rng_key=KEY, method="exact")
    with pytest.raises(ValueError, match="unknown abduction method"):
        pc.counterfactual(binary, {"y": 1}, {"x": 0}, rng_key=KEY, method="magic")


def _deterministic_model():
    """A latent class z and two deterministic (Delta) children of it."""
    z = numpyro.sample("z", dist.Categorical(jnp.array([0.2, 0.3, 0.5])))
    x = numpyro.sample("x", dist.Delta((z >= 1).astype(jnp.float32)))
    numpyro.sample("y", dist.Delta(2.0 * z + x))


def test_rejection_abduction_matches_enumeration_on_deterministic_evidence():
    kw = dict(rng_key=jax.random.key(0), num_samples=20_000)
    exact = pc.counterfactual(_deterministic_model, {"x": 1.0}, {"x": 0.0}, **kw)
    rejected = pc.counterfactual(
        _deterministic_model, {"x": 1.0}, {"x": 0.0}, method="rejection", **kw
    )
    assert exact.method == "enumeration" and rejected.method == "rejection"
    # P(z = 2 | x = 1) = 0.5 / 0.8; y under do(x=0) is 2z
    assert float((exact["y"] == 4.0).mean()) == pytest.approx(0.625, abs=0.02)
    sd = np.sqrt(0.625 * 0.375 / 20_000)
    assert float((rejected["y"] == 4.0).mean()) == pytest.approx(0.625, abs=5 * sd)
    assert set(np.unique(rejected["y"]).tolist()) == {2.0, 4.0}


def test_rejection_abduction_errors_name_the_fix():
    def noisy():
        z = numpyro.sample("z", dist.Normal(0, 1))
        numpyro.sample("y", dist.Normal(z, 1))

    with pytest.raises(pc.errors.AbductionError, match=r"\['y'\] have a density"):
        pc.counterfactual(
            noisy, {"y": 1.0}, {"z": 0.0}, rng_key=jax.random.key(0), method="rejection"
        )
    with pytest.raises(pc.errors.AbductionError, match="Raise `max_draws`"):
        pc.counterfactual(
            _deterministic_model,
            {"x": 0.0},
            {"x": 1.0},
            rng_key=jax.random.key(0),
            num_samples=5000,
            method="rejection",
            max_draws=10_000,
        )


def test_full_evidence_query_inside_jit_and_vmap():
    """Evidence that fixes every noise term needs no engine: the query traces
    under an enclosing jit or vmap and gives the eager answers."""
    evidence = lambda y: {"x": 0.5, "h": 1.0, "y": y}  # noqa: E731
    query = lambda y: pc.counterfactual(  # noqa: E731
        encouragement, evidence(y), {"h": 2.0}, rng_key=KEY, num_samples=1
    )["y"][0]
    ys = jnp.array([1.5, 2.0, -1.0])
    eager = np.array([float(query(float(y))) for y in ys])
    np.testing.assert_allclose(eager, ys + 0.4, rtol=1e-6)  # y' = y + 0.4 (2 - h)
    np.testing.assert_allclose(jax.vmap(query)(ys), eager, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(query)(ys[1]), eager[1], rtol=1e-6)


def test_query_with_latents_inside_jit_names_the_latents():
    query = lambda y: pc.counterfactual(  # noqa: E731
        encouragement, {"y": y}, {"h": 2.0}, rng_key=KEY, num_samples=4
    )["y"]
    with pytest.raises(AbductionError, match=r"latent site\(s\) \['x', 'h'\].*jax.jit"):
        jax.jit(query)(1.5)


def test_stochastic_action_on_full_evidence_draws_per_sample():
    # every noise term is fixed by the evidence, but do(x ~ N(0, 1)) draws x anew
    # in every sample: y' = x' + u_y with u_y = 2 - 1 = 1
    n = 4000
    cf = pc.counterfactual(
        encouragement_xy,
        {"x": 1.0, "y": 2.0},
        {"x": dist.Normal(0.0, 1.0)},
        rng_key=KEY,
        num_samples=n,
    )
    x = np.asarray(cf["x"])
    assert len(np.unique(x)) > 0.99 * n  # one draw per sample (float32 may collide)
    assert abs(x.mean()) < 4 / np.sqrt(n) and abs(x.std() - 1) < 4 / np.sqrt(2 * n)
    np.testing.assert_allclose(cf["y"] - x, 1.0, atol=1e-5)


@pc.causal_model
def encouragement_xy():
    x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(x, 1.0))


@pc.causal_model
def three_classes(n=1):
    with numpyro.plate("units", n):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        c = numpyro.sample("c", dist.Categorical(logits=jnp.stack([0 * z, z, -z], -1)))
        numpyro.sample("y", dist.Normal(jnp.asarray([0.0, 1.0, -2.0])[c] + 0.5 * z, 1.0))


def test_noise_no_world_reads_is_still_in_the_noise_output():
    # c is set in the only counterfactual world: its Gumbel noise is read by no
    # world, so the worlds are exact in one run; the noise output still has one
    # posterior draw per sample, consistent with the factual class
    ev = {"z": jnp.asarray([0.3, -1.0]), "c": jnp.asarray([1, 2]), "y": jnp.asarray([0.5, 0.1])}
    cf = pc.counterfactual(
        three_classes, ev, {"c": 2}, rng_key=KEY, num_samples=50, model_kwargs={"n": 2}
    )
    u_y = ev["y"] - jnp.asarray([1.0, -2.0]) - 0.5 * ev["z"]
    np.testing.assert_allclose(
        cf["y"], np.broadcast_to(-2.0 + 0.5 * ev["z"] + u_y, (50, 2)), rtol=1e-5
    )
    g = np.asarray(cf.noise["c"])
    assert g.shape == (50, 2, 3) and len(np.unique(g[:, 0, 0])) == 50
    logits = np.stack([0 * ev["z"], ev["z"], -ev["z"]], -1)
    np.testing.assert_array_equal(np.argmax(logits + g, -1), np.broadcast_to([1, 2], (50, 2)))


@pc.causal_model
def event_classes():
    z = numpyro.sample("z", dist.Normal(jnp.zeros(4), 1.0).to_event(1))
    c = numpyro.sample("c", dist.Categorical(logits=jnp.stack([0 * z, z], -1)).to_event(1))
    numpyro.sample("y", dist.Normal(c.sum() + z.sum(), 1.0))


def test_discrete_event_site_observed_and_latent():
    # a categorical event (to_event): exact when observed; a named refusal when a
    # latent the engines would have to enumerate element by element
    ev = {"z": jnp.asarray([0.1, 0.2, -0.3, 1.0]), "c": jnp.asarray([0, 1, 1, 0]), "y": 1.0}
    cf = pc.counterfactual(event_classes, ev, {"c": jnp.ones(4, int)}, rng_key=KEY, num_samples=2)
    np.testing.assert_allclose(cf["y"], 3.0, rtol=1e-5)  # u_y = 1 - 2 - 1 = -2
    with pytest.raises(AbductionError, match=r"\['c'\] hold an event.*numpyro.plate"):
        pc.counterfactual(event_classes, {"y": 1.0}, {"c": jnp.ones(4, int)}, rng_key=KEY)
