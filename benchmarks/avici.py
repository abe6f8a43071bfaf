"""AVICI: simulator throughput and inference time against PC and GES.

- ``simulate``: data sets per second of :func:`probcausal.data.simulate`
  (d = 20, n = 200, batches of 1,000), compilation timed apart;
- ``inference``: seconds per data set (d = 20, n = 1,000, linear-Gaussian, ER) of
  the shipped ``linear`` AVICI network (one jitted forward pass, steady state)
  against causal-learn's PC (Fisher-z) and GES (BIC) on the same data sets.

Run: ``python benchmarks/avici.py [--datasets 5] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from probcausal.data import Domain, simulate  # noqa: E402
from probcausal.experiments.avici import run_ges, run_pc  # noqa: E402
from probcausal.models.avici import predict, pretrained  # noqa: E402


def bench_simulate(domain: Domain, batch: int = 1000, repeats: int = 3) -> dict:
    t0 = time.perf_counter()
    jax.block_until_ready(simulate(jax.random.key(0), domain, batch))
    compile_seconds = time.perf_counter() - t0
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(simulate(jax.random.key(r + 1), domain, batch))
        times.append(time.perf_counter() - t0)
    return {"compile_seconds": compile_seconds, "datasets_per_second": batch / min(times)}


def bench_inference(num_datasets: int, with_ges: bool) -> dict:
    domain = Domain(num_variables=20, num_observations=800, num_interventions=200)
    data = jax.device_get(simulate(jax.random.key(7), domain, num_datasets))
    net, _ = pretrained("linear")
    t0 = time.perf_counter()
    jax.block_until_ready(predict(net, data.inputs[:1]))
    out = {"avici_compile_seconds": time.perf_counter() - t0}
    times = {"avici": [], "pc": [], "ges": []}
    for i in range(num_datasets):
        t0 = time.perf_counter()
        jax.block_until_ready(predict(net, data.inputs[i : i + 1]))
        times["avici"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        run_pc(np.asarray(data.values[i], np.float64))
        times["pc"].append(time.perf_counter() - t0)
        if with_ges:
            t0 = time.perf_counter()
            run_ges(np.asarray(data.values[i], np.float64))
            times["ges"].append(time.perf_counter() - t0)
    for k, v in times.items():
        if v:
            out[f"{k}_seconds_per_dataset"] = float(np.median(v))
    out["pc_over_avici"] = out["pc_seconds_per_dataset"] / out["avici_seconds_per_dataset"]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=5)
    parser.add_argument("--no-ges", action="store_true", help="GES takes minutes at d = 20")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results = {"device": jax.devices()[0].device_kind}
    for name, domain in {
        "linear_gaussian": Domain(num_variables=20, num_observations=200),
        "rff_laplace_heteroscedastic": Domain(
            num_variables=20,
            num_observations=150,
            num_interventions=50,
            mechanism="rff",
            noise="laplace",
            heteroscedastic=True,
        ),
    }.items():
        results[f"simulate_{name}"] = r = bench_simulate(domain)
        print(
            f"simulate {name} (d=20, n=200): {r['datasets_per_second']:.0f} data sets/s, "
            f"compile {r['compile_seconds']:.1f} s",
            flush=True,
        )
    results["inference_d20_n1000"] = r = bench_inference(args.datasets, not args.no_ges)
    print("inference d=20, n=1000: " + ", ".join(f"{k} {v:.4g}" for k, v in r.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
