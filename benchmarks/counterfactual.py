"""Counterfactual query speed: probcausal vs a hand-written jitted JAX function.

Pearl's encouragement model with fully observed units, do(h=2): the answer is
exact, so both sides do the same arithmetic (abduct u_h, u_y; recompute h, y in
the counterfactual world). Reports the first call (tracing + compilation) and the
steady state (median of repeated calls) separately, and their ratio.

Run: ``make bench`` or ``python benchmarks/counterfactual.py [--sizes 1 1000 ...]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import probcausal as pc  # noqa: E402
from tests.scms import encouragement  # noqa: E402


@jax.jit
def hand_written(x, h, y, h_new):
    """The same counterfactual, written out: abduction, action, prediction."""
    u_y = y - 0.7 * x - 0.4 * h
    h_cf = jnp.broadcast_to(h_new, h.shape)
    y_cf = 0.7 * x + 0.4 * h_cf + u_y
    return x, h_cf, y_cf


def timed(fn, repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        runs.append(time.perf_counter() - t0)
    return first, statistics.median(runs)


def data(n):
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(k[0], (n,))
    h = 0.5 * x + jax.random.normal(k[1], (n,))
    y = 0.7 * x + 0.4 * h + jax.random.normal(k[2], (n,))
    return jax.block_until_ready((x, h, y))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 1_000, 100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    key = jax.random.PRNGKey(0)
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}")
    header = (
        f"{'units':>9} | {'pc first':>9} | {'hand first':>10} | {'pc steady':>10} | "
        f"{'hand steady':>11} | {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        x, h, y = data(n)
        ev = {"x": x, "h": h, "y": y}

        def query(ev=ev, n=n):
            return pc.counterfactual(
                encouragement, ev, {"h": 2.0}, rng_key=key, num_samples=1, model_kwargs={"n": n}
            )["y"]

        def hand(x=x, h=h, y=y):
            return hand_written(x, h, y, 2.0)[2]

        pc_first, pc_steady = timed(query, args.repeats)
        hw_first, hw_steady = timed(hand, args.repeats)
        print(
            f"{n:>9,} | {pc_first * 1e3:>7.1f}ms | {hw_first * 1e3:>8.1f}ms | "
            f"{pc_steady * 1e3:>8.3f}ms | {hw_steady * 1e3:>9.3f}ms | "
            f"{pc_steady / hw_steady:>5.2f}x"
        )


if __name__ == "__main__":
    main()
