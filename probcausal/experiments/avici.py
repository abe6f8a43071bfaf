"""AVICI against PC, GES and the empty graph on simulated domains and on Sachs.

``probcausal experiment avici [--quick] [--train] --out results.json``

Each simulated domain is a :class:`probcausal.data.Domain`; the held-out data sets
are drawn with a seed no training run uses. AVICI predicts edge probabilities in
one forward pass; PC (Fisher-z, alpha 0.05) and GES (BIC) from causal-learn see the
pooled raw values (they cannot use the intervention indicators) and return CPDAGs.

Scoring, per data set, then averaged:

* ``auroc``, ``auprc``: edge scores over the ``d (d - 1)`` ordered pairs. AVICI's
  scores are its probabilities; a PC/GES edge ``i -> j`` scores 1, an undirected
  edge scores 0.5 in both directions; the empty graph scores 0 everywhere.
* ``shd``: structural Hamming distance over unordered pairs: 0 when the pair
  agrees, 1 for a reversed, undirected-for-directed, missing or extra edge (2 for a
  missing or extra 2-cycle). AVICI's graph is its probabilities above 0.5.
* ``f1``: of the predicted directed edges (an undirected edge predicts both).
* ``seconds_per_dataset``: steady-state wall time of one data set (AVICI: one
  jitted forward pass, compilation reported apart in ``compile_seconds``).
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from dataclasses import asdict

import jax
import numpy as np

from probcausal.data.sachs import load_sachs
from probcausal.data.scm import Domain, simulate
from probcausal.metrics import scores, shd
from probcausal.models.avici.discover import discover, predict
from probcausal.models.avici.io import pretrained
from probcausal.models.avici.pretrain import NETWORK, training_domains
from probcausal.models.avici.train import train_avici

__all__ = ["DOMAINS", "evaluate", "run", "scores", "shd"]

_BASE = Domain(num_variables=10, num_observations=150, num_interventions=50)

#: name -> (domain, which pretrained model, in-distribution?)
DOMAINS = {
    "linear_er_gaussian": (_BASE, "linear", True),
    "linear_sf_laplace": (_BASE.replace(graph="sf", noise="laplace"), "linear", True),
    "linear_sf_in_gaussian": (_BASE.replace(graph="sf_in"), "linear", False),
    "linear_er_cauchy": (_BASE.replace(noise="cauchy"), "linear", False),
    "linear_er_gaussian_d20": (_BASE.replace(num_variables=20), "linear", False),
    "rff_er_gaussian": (_BASE.replace(mechanism="rff"), "nonlinear", True),
    "rff_sf_in_laplace_hetero": (
        _BASE.replace(mechanism="rff", graph="sf_in", noise="laplace", heteroscedastic=True),
        "nonlinear",
        False,
    ),
}
QUICK_DOMAINS = ("linear_er_gaussian", "linear_sf_in_gaussian", "rff_er_gaussian")
QUICK = {"datasets": 30, "train_steps": 1500}
FULL = {"datasets": 100, "train_steps": 5000}
#: the held-out data sets use this seed; training uses others
EVAL_SEED = 20_221_128


def _cpdag_scores(graph: np.ndarray) -> np.ndarray:
    """causal-learn's encoding (``G[j, i] = 1, G[i, j] = -1`` for ``i -> j``, both
    -1 undirected) as edge scores (1 directed, 0.5 undirected both ways)."""
    g, gt = np.asarray(graph), np.asarray(graph).T
    directed = (gt == 1) & (g == -1)  # i -> j
    undirected = (g == -1) & (gt == -1)
    bidirected = (g == 1) & (gt == 1)  # an edge, no direction
    return np.where(directed, 1.0, np.where(undirected | bidirected, 0.5, 0.0))


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def run_pc(values: np.ndarray) -> np.ndarray:
    from causallearn.search.ConstraintBased.PC import pc

    cg = _quiet(pc, values, 0.05, "fisherz", show_progress=False, verbose=False)
    return _cpdag_scores(cg.G.graph)


def run_ges(values: np.ndarray) -> np.ndarray:
    from causallearn.search.ScoreBased.GES import ges

    record = _quiet(ges, values, score_func="local_score_BIC")
    return _cpdag_scores(record["G"].graph)


def _mean(rows: list[dict]) -> dict[str, float]:
    return {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}


def evaluate(net, domain: Domain, num_datasets: int, *, baselines=("pc", "ges"), seed=EVAL_SEED):
    """Scores of AVICI, the baselines and the empty graph on ``num_datasets`` held-out
    data sets of ``domain``."""
    batch = jax.device_get(simulate(jax.random.key(seed), domain, num_datasets))
    t0 = time.perf_counter()
    jax.block_until_ready(predict(net, batch.inputs[:1]))
    compile_seconds = time.perf_counter() - t0
    times = []
    probs = []
    for i in range(num_datasets):
        t0 = time.perf_counter()
        probs.append(np.asarray(predict(net, batch.inputs[i : i + 1]))[0])
        times.append(time.perf_counter() - t0)
    truths = [np.asarray(g) for g in batch.graphs]
    out = {
        "avici": {
            **_mean([scores(p, t) for p, t in zip(probs, truths, strict=True)]),
            "seconds_per_dataset": float(np.median(times)),
            "compile_seconds": compile_seconds,
        },
        "empty": {
            **_mean([scores(np.zeros_like(t), t) for t in truths]),
            "seconds_per_dataset": 0.0,
        },
    }
    runners = {"pc": run_pc, "ges": run_ges}
    for name in baselines:
        rows, times = [], []
        for values, truth in zip(batch.values, truths, strict=True):
            t0 = time.perf_counter()
            predicted = runners[name](np.asarray(values, np.float64))
            times.append(time.perf_counter() - t0)
            rows.append(scores(predicted, truth))
        out[name] = {**_mean(rows), "seconds_per_dataset": float(np.median(times))}
    return out


def sachs(net) -> dict:
    """AVICI, PC, GES and the empty graph against the 18-edge consensus network
    (scored as directed edges; the consensus has a cycle)."""
    data, consensus = load_sachs()
    names = list(data.columns)
    import networkx as nx

    truth = nx.to_numpy_array(consensus, nodelist=names)
    values = np.log(data.to_numpy(np.float64))  # the measurements are log-normal
    t0 = time.perf_counter()
    found = discover(values, model=net, names=names)
    avici_seconds = time.perf_counter() - t0
    out = {
        "avici": {**scores(found.probabilities.to_numpy(), truth), "seconds": avici_seconds},
        "empty": scores(np.zeros_like(truth), truth),
        "edges": {
            "avici": sorted(map(list, found.graph.edges)),
            "consensus": sorted(map(list, consensus.edges)),
        },
    }
    for name, runner in (("pc", run_pc), ("ges", run_ges)):
        t0 = time.perf_counter()
        predicted = runner(values)
        out[name] = {**scores(predicted, truth), "seconds": time.perf_counter() - t0}
    return out


def _sachs_network(nets: dict):
    """The network to score Sachs with: protein signalling is nonlinear, so the
    nonlinear network when it was loaded, else the linear one, else none."""
    return nets.get("nonlinear", nets.get("linear"))


def run(
    quick: bool = True,
    *,
    train: bool = False,
    seed: int = 0,
    progress: bool = True,
    domains=None,
) -> dict:
    """Run the experiment; returns the results dict that ``--out`` writes."""
    cfg = QUICK if quick else FULL
    names = domains or (QUICK_DOMAINS if quick else tuple(DOMAINS))
    start = time.perf_counter()
    nets, info = {}, {}
    for kind in sorted({DOMAINS[n][1] for n in names}):
        if train:
            net, fit = train_avici(
                training_domains(kind),
                cfg["train_steps"],
                rng_key=jax.random.key(seed),
                batch_size=8,
                learning_rate=1e-3,
                warmup_steps=cfg["train_steps"] // 10,
                progress=progress,
                **NETWORK,
            )
            info[kind] = {
                "trained_here": True,
                "steps": cfg["train_steps"],
                "final_cross_entropy": float(fit.metrics["cross_entropy"][-100:].mean()),
            }
        else:
            net, info[kind] = pretrained(kind)
        nets[kind] = net
    results = {}
    for name in names:
        domain, kind, in_distribution = DOMAINS[name]
        results[name] = evaluate(nets[kind], domain, cfg["datasets"])
        results[name]["in_distribution"] = in_distribution
        results[name]["domain"] = asdict(domain)
        if progress:
            row = {m: round(results[name][m]["auroc"], 3) for m in ("avici", "pc", "ges")}
            print(f"{name}: AUROC {row}", flush=True)
    sachs_net = _sachs_network(nets)
    if sachs_net is not None:
        results["sachs"] = sachs(sachs_net)
    results["models"] = info
    results["config"] = {"quick": quick, "train": train, **cfg}
    results["wall_seconds"] = time.perf_counter() - start
    results["device"] = jax.devices()[0].device_kind
    return results
