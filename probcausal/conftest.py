"""Doctest configuration: CPU only."""

import os

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")


# doctests that train or compile networks (over ~7 s on 2 cores): skipped by
# `make test-fast`, run by `make test`
SLOW_DOCTESTS = {
    "probcausal.data.scm.simulate",
    "probcausal.infer.adversarial.WGANGP",
    "probcausal.models.avici.discover.discover",
    "probcausal.models.avici.model.AVICI",
    "probcausal.models.avici.train.train_avici",
    "probcausal.nn.conv.ConvCritic",
    "probcausal.nn.conv.ConvGenerator",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.name in SLOW_DOCTESTS:
            item.add_marker(pytest.mark.slow)
