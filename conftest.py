"""Settings for every test and doctest, set before JAX is imported.

The suite compiles thousands of small programs that run once: XLA's LLVM
optimisation passes dominate their compile time and gain nothing at run time, so
tests compile without them (the programs and their numbers are the same: XLA's CPU
backend makes no fast-math reassociation either way). Compiled programs persist in
a cache of the session's own (removed at its end), shared with the examples and
experiments the tests run in subprocesses.
"""

import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    ).strip()
_CACHE = None
if "PROBCAUSAL_CACHE_DIR" not in os.environ:
    _CACHE = os.environ["PROBCAUSAL_CACHE_DIR"] = tempfile.mkdtemp(prefix="probcausal-tests-")


def pytest_unconfigure(config):
    if _CACHE is not None:
        shutil.rmtree(_CACHE, ignore_errors=True)
