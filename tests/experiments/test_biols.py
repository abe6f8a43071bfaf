"""The BIOLS quick experiment's thresholds (the order learned, d = 5, seeds 0-2)."""

import json

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("biols_experiment")]


def test_quick_experiment_thresholds(tmp_path):
    from probcausal.cli import main

    out = tmp_path / "results.json"
    assert main(["experiment", "biols", "--quick", "--no-progress", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    for name in ("linear_gaussian", "linear_zero"):
        r = results[name]
        assert len(r["shd"]) == 3
        assert max(r["shd"]) <= 1, (name, r["shd"])
        assert min(r["auroc"]) >= 0.95, (name, r["auroc"])
        assert min(r["mcc"]) >= 0.9, (name, r["mcc"])
        assert max(r["ood_rel_error"]) <= 0.15, (name, r["ood_rel_error"])
    # the encoder-free objective with zero values: the failure it is reported as
    base = results["encoder_free_zero"]
    assert min(base["shd"]) >= 1 and np.mean(base["mcc"]) < 0.8
    assert min(base["ood_rel_error"]) > 0.5
    chem = results["chemdata"]
    assert max(chem["shd"]) <= 2 and min(chem["auroc"]) >= 0.9
    assert results["wall_seconds"] < 300
