"""Time to identify P(y | do(x)) on random ADMGs of 10, 20 and 40 nodes.

Random DAG over a random order (edge probability 3/n), then a bidirected edge on
each pair with probability 1/n; x and y drawn with y a descendant of x. Reports
the median and maximum over graphs, and the share that is identifiable.

Run: ``python benchmarks/identification.py [--graphs 30]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from probcausal.identification import ADMG, NotIdentifiableError, identify  # noqa: E402


def random_case(n: int, rng: np.random.Generator):
    nodes = [f"v{i}" for i in range(n)]
    pairs = [(nodes[i], nodes[j]) for i in range(n) for j in range(i + 1, n)]
    directed = [p for p in pairs if rng.random() < 3.0 / n]
    bidirected = [p for p in pairs if rng.random() < 1.0 / n]
    g = ADMG(directed, bidirected, nodes=nodes)
    while True:
        x = nodes[rng.integers(n)]
        below = sorted(g.descendants([x]) - {x})
        if below:
            return g, x, below[rng.integers(len(below))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graphs", type=int, default=30)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 40])
    args = parser.parse_args(argv)
    print(f"{'nodes':>5} | {'median':>9} | {'max':>9} | identifiable")
    for n in args.sizes:
        rng = np.random.default_rng(n)
        times, yes = [], 0
        for _ in range(args.graphs):
            g, x, y = random_case(n, rng)
            t0 = time.perf_counter()
            try:
                identify(g, x, y)
                yes += 1
            except NotIdentifiableError:
                pass
            times.append(time.perf_counter() - t0)
        print(
            f"{n:>5} | {statistics.median(times) * 1e3:>7.2f}ms | {max(times) * 1e3:>7.2f}ms | "
            f"{yes}/{args.graphs}"
        )


if __name__ == "__main__":
    main()
