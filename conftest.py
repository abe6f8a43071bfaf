"""Settings for every test and doctest, set before JAX is imported: the CPU, and
a persistent compilation cache of the session's own (removed at its end), shared
with the examples and experiments the tests run in subprocesses, so that the
suite neither reads nor fills the user's cache."""

import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
_CACHE = None
if "PROBCAUSAL_CACHE_DIR" not in os.environ:
    _CACHE = os.environ["PROBCAUSAL_CACHE_DIR"] = tempfile.mkdtemp(prefix="probcausal-tests-")


def pytest_unconfigure(config):
    if _CACHE is not None:
        shutil.rmtree(_CACHE, ignore_errors=True)
