"""The CausalVAE quick experiment's thresholds (Pendulum 32 x 32, the graph
learned with A started at zero)."""

import json

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("causal_vae_experiment")]


def test_quick_experiment_thresholds(tmp_path):
    from probcausal.cli import main

    out = tmp_path / "results.json"
    assert main(["experiment", "causal-vae", "--quick", "--no-progress", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    r = results["pendulum"]
    assert min(r["label_corr"].values()) >= 0.9, r["label_corr"]
    assert r["graph_shd"] <= 1, r["learned_graph"]
    assert r["acyclicity"] < 1e-6
    for c, other in (("theta", "phi"), ("phi", "theta")):
        moved = r["cf_corr"][c]
        # both shadow concepts move correctly, the non-descendant stays
        for k in ("length", "mid", other):
            assert moved[k] >= 0.9, (c, moved)
        assert set(r["descendants"][c]) == {"length", "mid"}
    # do on the shadow's concepts (exact functions of their parents in the
    # training images) moves the shadow alone: the decoder in parts
    for c in ("length", "mid"):
        assert r["descendants"][c] == []
        assert min(r["cf_corr"][c].values()) >= 0.9, (c, r["cf_corr"][c])
    assert results["wall_seconds"] < 300
