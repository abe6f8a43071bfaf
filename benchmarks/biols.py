"""BIOLS: fit time against the problem size.

- ``fit``: per setting (latents ``d``, features ``D``, the order known or learned;
  the paper's design of 4,000 rows, 4 restarts vectorized), the wall time of
  ``BIOLS.fit`` for ``--steps`` steps, its compilation and its steady-state steps
  per second (the training loop's own timing);
- ``neural``: the nonlinear decoders (``"mlp"`` on a GELU MLP projection,
  ``"conv"`` on the chemdata images, 64 of them a step; 400 warm-start steps,
  ``--steps`` ELBO steps): the wall time of the whole fit, and per stage its compilation and
  steps per second;
- ``likelihood``: one gradient of the collapsed likelihood from the full ``x``
  (``O(n D d)``) against the per-context statistics the fit uses (``O(K d³)``),
  both jitted, steady state.

Run: ``python benchmarks/biols.py [--steps 400] [--json FILE]``.
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
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import probcausal as pc  # noqa: E402
from probcausal.models.biols import likelihood as lik  # noqa: E402

SETTINGS = [
    (5, 100, "known"),
    (5, 100, "learned"),
    (5, 2500, "learned"),
    (10, 100, "learned"),
    (20, 100, "learned"),
    (20, 100, "known"),
]


def _fit_seconds(m, data, steps: int) -> float:
    """Wall seconds of fitting ``m`` to ``data`` for ``steps`` steps."""
    t0 = time.perf_counter()
    m.fit(
        data.x,
        targets=data.targets,
        values=data.values,
        rng_key=jax.random.key(1),
        steps=steps,
        progress=False,
    )
    return time.perf_counter() - t0


def bench_fit(d: int, dim: int, order: str, steps: int) -> dict:
    projection = "blocks" if dim == 2500 else "linear"
    data = pc.data.latent_scm_data(jax.random.key(0), d, dim, projection=projection)
    m = pc.BIOLS(d, order=data.order if order == "known" else None, restarts=4)
    return {
        "d": d,
        "D": dim,
        "order": order,
        "steps": steps,
        "fit_seconds": _fit_seconds(m, data, steps),
        "compile_seconds": m.history["compile_seconds"],
        "steps_per_second": m.history["steps_per_second"],
    }


NEURAL = [(5, 100, "mlp"), (20, 100, "mlp"), (5, 2500, "conv")]


def bench_neural(d: int, dim: int, decoder: str, steps: int) -> dict:
    projection = "blocks" if decoder == "conv" else "mlp"
    data = pc.data.latent_scm_data(jax.random.key(0), d, dim, projection=projection)
    batch = 64 if decoder == "conv" else 512  # 64 images a step on a CPU
    m = pc.BIOLS(d, decoder, restarts=4, warm_start_steps=400, batch_size=batch)
    seconds = _fit_seconds(m, data, steps)
    stages = {"linear": m.history["linear"], "elbo": m.history}
    stages["latent_scm"] = m.history["latent_scm"]
    return {
        "d": d,
        "D": dim,
        "decoder": decoder,
        "batch_size": batch,
        "steps": steps,
        "fit_seconds": seconds,
        **{f"{k}_compile_seconds": v["compile_seconds"] for k, v in stages.items()},
        **{f"{k}_steps_per_second": v["steps_per_second"] for k, v in stages.items()},
    }


def _time(fn, *args, repeats: int = 20) -> float:
    jax.block_until_ready(fn(*args))
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def bench_likelihood(d: int, dim: int) -> dict:
    data = pc.data.latent_scm_data(jax.random.key(0), d, dim)
    contexts, context = np.unique(data.targets, axis=0, return_inverse=True)
    rows = (
        jnp.asarray(context.ravel()),
        jnp.asarray(contexts),
        jnp.asarray(np.where(data.targets, data.values, 0.0)),
    )
    x = jnp.asarray(data.x)
    basis = jnp.linalg.svd(x - x.mean(0), full_matrices=False)[2][:d]
    projected = lik.project_data(x, basis, rows[0], rows[2], len(contexts))
    theta = (jnp.asarray(data.weights), jnp.asarray(data.noise_scale))
    coef, bias = jnp.eye(d), jnp.zeros(dim)

    full = jax.jit(
        jax.grad(
            lambda c, b: lik.collapsed_log_likelihood(x, *rows, *theta, c @ basis, b, 0.1),
            argnums=(0, 1),
        )
    )
    reduced = jax.jit(
        jax.grad(
            lambda c, b: lik.projected_log_likelihood(projected, rows[1], *theta, c, b, 0.1),
            argnums=(0, 1),
        )
    )
    t_full, t_reduced = _time(full, coef, bias), _time(reduced, coef, bias)
    return {
        "d": d,
        "D": dim,
        "full_x_seconds": t_full,
        "projected_seconds": t_reduced,
        "ratio": t_full / t_reduced,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    results = {"device": str(jax.devices()[0]), "fit": [], "likelihood": []}
    for d, dim in ((5, 100), (5, 2500), (20, 100), (20, 2500)):
        row = bench_likelihood(d, dim)
        results["likelihood"].append(row)
        print(
            f"likelihood gradient d={d:<3} D={dim:<5} full x {row['full_x_seconds'] * 1e3:8.2f} ms"
            f"  projected {row['projected_seconds'] * 1e3:7.2f} ms  ({row['ratio']:.1f}x)",
            flush=True,
        )
    for d, dim, order in SETTINGS:
        row = bench_fit(d, dim, order, args.steps)
        results["fit"].append(row)
        print(
            f"fit d={d:<3} D={dim:<5} order {order:<8} {row['fit_seconds']:6.1f} s "
            f"(compile {row['compile_seconds']:.1f} s, {row['steps_per_second']:.0f} steps/s)",
            flush=True,
        )
    results["neural"] = []
    for d, dim, decoder in NEURAL:
        row = bench_neural(d, dim, decoder, args.steps)
        results["neural"].append(row)
        print(
            f"fit d={d:<3} D={dim:<5} decoder {decoder:<5} {row['fit_seconds']:6.1f} s "
            f"(ELBO: compile {row['elbo_compile_seconds']:.1f} s, "
            f"{row['elbo_steps_per_second']:.0f} steps/s)",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
