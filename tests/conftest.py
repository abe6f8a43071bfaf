"""Test configuration: CPU only, fixed seeds, hypothesis profiles."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# the default run draws 10 examples per property (each random model compiles its
# own programs); HYPOTHESIS_PROFILE=deep searches 300, randomized
settings.register_profile(
    "default",
    deadline=None,
    max_examples=10,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# a longer, randomized search for counterexamples: HYPOTHESIS_PROFILE=deep make test-fast
settings.register_profile(
    "deep",
    deadline=None,
    max_examples=300,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)
