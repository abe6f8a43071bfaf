"""Settings for every test and doctest, set before JAX is imported: the CPU, and
a persistent compilation cache of the session's own (removed at its end), shared
with the examples and experiments the tests run in subprocesses, so that the
suite neither reads nor fills the user's cache."""

import os
import shutil
import tempfile

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
_CACHE = None
if "PROBCAUSAL_CACHE_DIR" not in os.environ:
    _CACHE = os.environ["PROBCAUSAL_CACHE_DIR"] = tempfile.mkdtemp(prefix="probcausal-tests-")


def pytest_unconfigure(config):
    if _CACHE is not None:
        shutil.rmtree(_CACHE, ignore_errors=True)


@pytest.hookimpl(trylast=True)  # after the doctests' slow markers are added
def pytest_collection_modifyitems(config, items):
    """The slow tests first (stably): with one worker per core, the long ones then
    run side by side from the start instead of one alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
