"""JAX's persistent compilation cache, on by default: a new process reuses the
programs an earlier one compiled; PROBCAUSAL_CACHE_DIR moves or disables it, and a
cache the user gave JAX is left alone."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
QUERY = """
import jax, numpyro, numpyro.distributions as dist, probcausal as pc
def model():
    x = numpyro.sample("x", dist.Normal(0, 1))
    numpyro.sample("y", dist.Normal(2 * x, 1))
cf = pc.counterfactual(model, {"x": 1.0, "y": 2.5}, {"x": 0.0}, rng_key=jax.random.PRNGKey(0))
print(float(cf["y"][0]), jax.config.jax_compilation_cache_dir)
"""


def _run(env_cache: str | None, jax_cache: str | None = None) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PROBCAUSAL_CACHE_DIR",)}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env["PYTHONPATH"] = str(ROOT)
    if env_cache is not None:
        env["PROBCAUSAL_CACHE_DIR"] = env_cache
    if jax_cache is not None:
        env["JAX_COMPILATION_CACHE_DIR"] = jax_cache
    done = subprocess.run(
        [sys.executable, "-c", QUERY], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    value, where = done.stdout.split()
    return float(value), where


@pytest.mark.slow
def test_programs_persist_across_processes(tmp_path):
    cache = tmp_path / "cache"
    first, where = _run(str(cache))
    assert where == str(cache)
    entries = set(os.listdir(cache))
    assert entries  # every program, small ones included
    second, _ = _run(str(cache))
    assert first == second == 0.5  # y' = 0 + (2.5 - 2)
    assert set(os.listdir(cache)) == entries  # the second process compiled nothing new


@pytest.mark.slow
def test_the_cache_can_be_moved_disabled_or_left_to_the_user(tmp_path):
    assert _run("off")[1] == "None"
    own = tmp_path / "mine"
    value, where = _run(str(tmp_path / "ours"), jax_cache=str(own))
    assert value == 0.5 and where == str(own)
    assert not (tmp_path / "ours").exists()


@pytest.mark.slow
def test_processes_that_share_one_cache_give_the_same_answers(tmp_path):
    # processes compiling and reading the same programs at once (a test run on
    # several workers): each reads a whole entry or none, and recompiles then
    cache = tmp_path / "shared"
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update(PYTHONPATH=str(ROOT), PROBCAUSAL_CACHE_DIR=str(cache))
    runs = [
        subprocess.Popen([sys.executable, "-c", QUERY], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outs = [r.communicate(timeout=300)[0].split() for r in runs]
    assert [r.returncode for r in runs] == [0, 0, 0]
    assert [float(o[0]) for o in outs] == [0.5, 0.5, 0.5]
    assert {o[1] for o in outs} == {str(cache)} and any(cache.iterdir())
