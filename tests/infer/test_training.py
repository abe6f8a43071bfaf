"""The shared training loop: exact resume, NaN/inf detection with the last good
checkpoint kept, progress bar, data-parallel sharding over a device mesh."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from flax import nnx

import probcausal as pc
from probcausal.errors import TrainingDivergedError


def _noisy_descent(x, key, data):
    """SGD on (x - 3)^2 with gradient noise: the result depends on every step's key."""
    g = 2 * (x - 3.0) + jax.random.normal(key)
    x = x - 0.05 * g
    return x, {"loss": (x - 3.0) ** 2}


def _small_gan(seed=0):
    g = pc.nn.MLPGenerator(2, 1, hidden=(16,), rngs=nnx.Rngs(seed))

    def model():
        c = numpyro.sample("c", dist.Normal(0, 1))
        x = pc.nn.sample("x", pc.nn.MLPGenerator(1, 1, hidden=(16,), rngs=nnx.Rngs(seed + 1)), c)
        pc.nn.sample("y", g, x, c)

    critic = pc.nn.Critic(2, hidden=(16,), rngs=nnx.Rngs(seed + 2))
    gan = pc.infer.WGANGP(
        model,
        {("x", "y"): critic},
        generator_optimizer=optax.adam(1e-3),
        critic_optimizer=optax.adam(1e-3),
        n_critic=2,
        batch_size=32,
    )
    k = jax.random.split(jax.random.key(7), 2)
    x = jax.random.normal(k[0], (500,))
    data = {"x": x, "y": x**2 + 0.1 * jax.random.normal(k[1], (500,))}
    return gan, data


def test_fit_resume_equals_an_uninterrupted_run(tmp_path):
    kw = dict(rng_key=jax.random.key(0), chunk_size=25, progress=False)
    full = pc.infer.fit(_noisy_descent, jnp.float32(0.0), 200, **kw)
    d = tmp_path / "ckpt"
    pc.infer.fit(_noisy_descent, jnp.float32(0.0), 100, checkpoint_dir=d, **kw)
    resumed = pc.infer.fit(
        _noisy_descent, jnp.float32(0.0), 200, checkpoint_dir=d, resume=True, **kw
    )
    assert float(resumed.state) == float(full.state)
    np.testing.assert_array_equal(resumed.losses, full.losses)


def test_a_resumed_run_compiles_the_program_of_the_first(tmp_path):
    # Orbax restores arrays committed to a device; placed as the fresh state's, they
    # lower to the same program, which the persistent cache then serves
    from probcausal.infer import training

    def step(state, key, data):
        x, k = state
        x, metrics = _noisy_descent(x, jax.random.fold_in(key, 0), data)
        return (x, jax.random.split(k)[0]), metrics

    fresh = (jnp.float32(0.0), jax.random.key(1))
    d = tmp_path / "ckpt"
    pc.infer.fit(
        step, fresh, 50, rng_key=jax.random.key(0), chunk_size=25, checkpoint_dir=d, progress=False
    )
    ckpt = training._Checkpoints(d, None)
    start, restored, _ = training._resume(ckpt, fresh, 100, True)
    assert start == 50 and not any(leaf.committed for leaf in jax.tree.leaves(restored))
    run = training._chunk_runner(step)
    key = jax.random.key_data(jax.random.key(0))
    lowered = [run.lower(s, key, None, jnp.int32(start), 25).as_text() for s in (fresh, restored)]
    assert lowered[0] == lowered[1]


@pytest.mark.slow
def test_wgan_resume_gives_bitwise_equal_parameters(tmp_path):
    gan, data = _small_gan()
    kw = dict(rng_key=jax.random.key(1), chunk_size=50, progress=False)
    full = gan.fit(data, 200, **kw)
    d = tmp_path / "gan"
    first = gan.fit(data, 100, checkpoint_dir=d, **kw)
    assert sorted(os.listdir(d)) == ["100", "50"]
    resumed = gan.fit(data, 200, checkpoint_dir=d, resume=True, **kw)
    for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(full.metrics["loss"], resumed.metrics["loss"])
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(first.params), jax.tree.leaves(full.params), strict=True)
    )


def test_divergence_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    def step(x, key, data):
        x = x + 1.0
        loss = jnp.where(x >= 37, jnp.nan, x)  # step 36 (0-based) produces the NaN
        return x, {"loss": loss}

    d = tmp_path / "ckpt"
    with pytest.raises(TrainingDivergedError, match="metric 'loss' became nan at step 36") as e:
        pc.infer.fit(
            step,
            jnp.float32(0.0),
            100,
            rng_key=jax.random.key(0),
            chunk_size=10,
            checkpoint_dir=d,
            progress=False,
        )
    assert e.value.step == 36 and e.value.last_checkpoint == 30
    assert "fit(..., resume=True) continues from it" in str(e.value)
    assert sorted(int(s) for s in os.listdir(d))[-1] == 30
    restored = pc.infer.fit(
        step,
        jnp.float32(0.0),
        30,
        rng_key=jax.random.key(0),
        chunk_size=10,
        checkpoint_dir=d,
        resume=True,
        progress=False,
    )
    assert float(restored.state) == 30.0


def test_nonfinite_state_is_detected_even_when_the_loss_is_finite():
    def step(x, key, data):
        return x / 0.0 * 0.0, {"loss": jnp.float32(1.0)}  # 0/0: NaN parameters

    with pytest.raises(TrainingDivergedError, match="the state holds NaN or infinite values"):
        pc.infer.fit(step, jnp.float32(0.0), 5, rng_key=jax.random.key(0), progress=False)


def test_progress_bar_shows_the_loss_and_can_be_turned_off(capsys):
    pc.infer.fit(_noisy_descent, jnp.float32(0.0), 20, rng_key=jax.random.key(0), chunk_size=10)
    assert "loss=" in capsys.readouterr().err
    pc.infer.fit(_noisy_descent, jnp.float32(0.0), 20, rng_key=jax.random.key(0), progress=False)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_fit_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="resume=True needs checkpoint_dir"):
        pc.infer.fit(_noisy_descent, 0.0, 5, rng_key=jax.random.key(0), resume=True)
    d = tmp_path / "c"
    pc.infer.fit(
        _noisy_descent,
        jnp.float32(0.0),
        20,
        rng_key=jax.random.key(0),
        checkpoint_dir=d,
        progress=False,
    )
    with pytest.raises(ValueError, match="latest checkpoint .* is at step 20, beyond num_steps=10"):
        pc.infer.fit(
            _noisy_descent,
            jnp.float32(0.0),
            10,
            rng_key=jax.random.key(0),
            checkpoint_dir=d,
            resume=True,
            progress=False,
        )
    with pytest.raises(ValueError, match="mesh must be None, 'auto'"):
        pc.infer.data_mesh("all")


_SHARDED = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np, numpyro, numpyro.distributions as dist, optax
    import probcausal as pc
    from tests.infer.test_training import _small_gan
    assert jax.device_count() == 4
    gan, data = _small_gan()
    kw = dict(rng_key=jax.random.key(3), chunk_size=20, progress=False)
    one = gan.fit(data, 40, **kw)
    four = gan.fit(data, 40, mesh="auto", **kw)
    sharding = jax.tree.leaves(four.state)[0].sharding
    assert len(sharding.device_set) == 4, sharding

    def model(y):
        mu = numpyro.param("mu", 0.0)
        with numpyro.plate("n", y.shape[0]):
            numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    y = 2.0 + jax.random.normal(jax.random.key(1), (4000,))
    svi_kw = dict(rng_key=jax.random.key(0), model_args=(y,), progress=False)
    s1 = pc.infer.fit_svi(model, lambda y: None, optax.adam(0.05), 100, **svi_kw)
    s4 = pc.infer.fit_svi(model, lambda y: None, optax.adam(0.05), 100, mesh="auto", **svi_kw)
    for name in ("loss", "generator_loss", "wasserstein"):
        np.testing.assert_allclose(four.metrics[name], one.metrics[name], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(s4.losses, s1.losses, rtol=1e-5)
    print("OK", np.abs(four.metrics["loss"] - one.metrics["loss"]).max())
    """
)


@pytest.mark.slow
def test_four_fake_devices_give_the_loss_curve_of_one():
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.getcwd(),
    )
    out = subprocess.run(
        [sys.executable, "-c", _SHARDED], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("OK")
