"""y0 on the identification suite, in its own environment.

Reads the cases the orchestrator wrote (``--cases cases.json``): each an ADMG,
a treatment and outcome set, and for graphs of at most 8 nodes the exact
observational joint table of a random binary SCM with the true ``P(y | do(x))``.
For each case: yes/no, the time per ``identify`` call, and, when y0 returns an
estimand, its value evaluated on the joint table against the truth.

``.bench/y0/bin/python run_y0.py --cases cases.json --json OUT``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time

T0 = time.perf_counter()
import numpy as np  # noqa: E402
from y0.algorithm.identify import Identification, Unidentifiable, identify  # noqa: E402
from y0.dsl import Fraction, One, P, Probability, Product, Sum, Variable, Zero  # noqa: E402
from y0.graph import NxMixedGraph  # noqa: E402

IMPORT_S = time.perf_counter() - T0


def marginal(joint: np.ndarray, nodes: list[str], keep: dict[str, int]) -> float:
    """P(keep) from the joint table over ``nodes``."""
    index = tuple(keep.get(v, slice(None)) for v in nodes)
    return float(np.sum(joint[index]))


def evaluate(expr, joint, nodes, values: dict[str, int]) -> float:
    """The plug-in value of a y0 expression at ``values`` (free variables)."""
    if isinstance(expr, One):
        return 1.0
    if isinstance(expr, Zero):
        return 0.0
    if isinstance(expr, Sum):
        names = [v.name for v in expr.ranges]
        total = 0.0
        for bits in itertools.product((0, 1), repeat=len(names)):
            inner = {**values, **dict(zip(names, bits, strict=True))}
            total += evaluate(expr.expression, joint, nodes, inner)
        return total
    if isinstance(expr, Product):
        out = 1.0
        for e in expr.expressions:
            out *= evaluate(e, joint, nodes, values)
        return out
    if isinstance(expr, Fraction):
        den = evaluate(expr.denominator, joint, nodes, values)
        return evaluate(expr.numerator, joint, nodes, values) / den
    if isinstance(expr, Probability):
        dist = expr.distribution
        for v in (*dist.children, *dist.parents):
            if getattr(v, "interventions", None) or getattr(v, "star", None) is not None:
                raise ValueError(f"counterfactual variable {v} in an ID estimand")
        kids = {v.name: values[v.name] for v in dist.children}
        parents = {v.name: values[v.name] for v in dist.parents}
        den = marginal(joint, nodes, parents) if parents else 1.0
        return marginal(joint, nodes, {**kids, **parents}) / den
    raise TypeError(f"cannot evaluate {type(expr).__name__}: {expr}")


def table(expr, joint, nodes, treatment, outcome) -> np.ndarray:
    """P(outcome | do(treatment)) over ``outcome + treatment`` values."""
    out = np.zeros((2,) * (len(outcome) + len(treatment)))
    for bits in itertools.product((0, 1), repeat=len(outcome) + len(treatment)):
        out[bits] = evaluate(expr, joint, nodes, dict(zip(outcome + treatment, bits, strict=True)))
    return out


def run_case(case, repeats):
    g = NxMixedGraph.from_str_edges(directed=case["directed"], undirected=case["bidirected"])
    for v in case["nodes"]:
        if v not in {n.name for n in g.nodes()}:
            g.directed.add_node(Variable(v))
            g.undirected.add_node(Variable(v))
    treatment = [Variable(v) for v in case["treatment"]]
    outcome = [Variable(v) for v in case["outcome"]]
    query = P(*(y @ treatment for y in outcome))
    times, expr, answer = [], None, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        try:
            expr = identify(Identification.from_expression(graph=g, query=query))
            answer = True
        except Unidentifiable:
            answer = False
        times.append(time.perf_counter() - t0)
    row = {"name": case["name"], "identifiable": answer, "seconds": statistics.median(times)}
    if answer:
        row["estimand"] = str(expr)
    if answer and case.get("joint") is not None:
        joint = np.asarray(case["joint"], dtype=float).reshape((2,) * len(case["joint_nodes"]))
        try:
            got = table(expr, joint, case["joint_nodes"], case["treatment"], case["outcome"])
            row["error"] = float(np.max(np.abs(got - np.asarray(case["truth"]))))
        except (ValueError, TypeError, KeyError, ZeroDivisionError) as e:
            row["error"] = None
            row["evaluation_failed"] = f"{type(e).__name__}: {e}"
    return row


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--cases", required=True)
    p.add_argument("--json", required=True)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    cases = json.load(open(args.cases))
    from importlib.metadata import version

    rows = []
    for case in cases:
        rows.append(run_case(case, args.repeats))
        print(f"{'y0':>10} {case['name']:<34} {rows[-1]['identifiable']}", file=sys.stderr)
    out = {"tool": "y0", "version": version("y0"), "import_s": IMPORT_S, "rows": rows}
    json.dump(out, open(args.json, "w"))


if __name__ == "__main__":
    main()
