"""The shared counterfactual suite: models, data, closed-form answers, timing.

Plain NumPy only, so every tool's runner (probcausal, the hand-written JAX floor,
ChiRho, DoWhy-gcm), each in its own virtual environment, imports the same
definitions and draws the same data from the same seeds.

Models (every mechanism has unit-variance additive noise unless said otherwise):

- ``encouragement``: x ~ N(0, 1); h = 0.5 x + u_h; y = 0.7 x + 0.4 h + u_y.
- ``mediation_linear``: x ~ N(0, 1); m = 2 x + u_m; y = 0.5 x + 3 m + u_y.
- ``mediation_logistic``: x ~ N(0, 1); m ~ Bernoulli(sigmoid(1.5 x - 0.5));
  y ~ Bernoulli(sigmoid(-1 + 0.8 x + 2 m)).
- ``categorical``: z ~ N(0, 1); c ~ Categorical(softmax(0, z, -z)) (3 classes);
  y = beta[c] + 0.5 z + u_y with beta = (0, 1, 3).
"""

from __future__ import annotations

import json
import math
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

H_COEF, XY_COEF, HY_COEF = 0.5, 0.7, 0.4
MED_A, MED_B, MED_C = 2.0, 3.0, 0.5
LOGIT_M = (-0.5, 1.5)  # intercept, slope on x
LOGIT_Y = (-1.0, 0.8, 2.0)  # intercept, x, m
CAT_BETA = np.array([0.0, 1.0, 3.0])
CAT_Z = 0.5
TREATED, CONTROL = 1.0, 0.0
MULTI_ACTIONS = (-2.0, -1.0, 0.0, 1.0, 2.0)
PARTIAL_ACTION = 1.0  # do(x = 1) with x unobserved
POSTERIOR_SAMPLES = 1000


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


@dataclass(frozen=True)
class Query:
    """One row of the suite: a model, its evidence, the action and the answer."""

    name: str
    model: str
    units: int
    description: str
    exact: bool  # the evidence determines every noise term: error must be ~0

    @property
    def key(self) -> str:
        return f"{self.name}@{self.units}"


def queries() -> list[Query]:
    full = "encouragement, x h y observed, do(h=2), y counterfactual per unit"
    out = [Query("full_evidence", "encouragement", n, full, True) for n in SIZES]
    out += [
        Query(
            "partial_evidence",
            "encouragement",
            1_000,
            "encouragement, h y observed (x latent), do(x=1), posterior mean of y per unit",
            False,
        ),
        Query(
            "mediation_linear",
            "mediation_linear",
            100_000,
            "NDE and NIE of x on y through m, treated 1 vs control 0 (100k draws)",
            False,
        ),
        Query(
            "mediation_logistic",
            "mediation_logistic",
            100_000,
            "NDE and NIE, Bernoulli mediator and outcome with logistic links (100k draws)",
            False,
        ),
        Query(
            "multi_world",
            "encouragement",
            1_000,
            "encouragement, full evidence, five worlds do(h=-2..2) on the same units",
            True,
        ),
        Query(
            "categorical",
            "categorical",
            1_000,
            "3-class treatment c, z c y observed, do(c=2), y counterfactual per unit",
            True,
        ),
    ]
    return out


SIZES = (1, 1_000, 100_000, 1_000_000)


def by_key(key: str) -> Query:
    for q in queries():
        if q.key == key:
            return q
    raise KeyError(f"no query {key!r}; choose one of {[q.key for q in queries()]}")


# ---- data ----


def encouragement_data(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    h = H_COEF * x + rng.standard_normal(n)
    y = XY_COEF * x + HY_COEF * h + rng.standard_normal(n)
    return {"x": x.astype(np.float32), "h": h.astype(np.float32), "y": y.astype(np.float32)}


def categorical_logits(z):
    z = np.asarray(z)
    return np.stack([np.zeros_like(z), z, -z], axis=-1)


def categorical_data(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(n)
    logits = categorical_logits(z)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    c = (rng.random(n)[:, None] > np.cumsum(p, -1)).sum(-1)
    y = CAT_BETA[c] + CAT_Z * z + rng.standard_normal(n)
    return {"z": z.astype(np.float32), "c": c.astype(np.int32), "y": y.astype(np.float32)}


def data_for(q: Query) -> dict[str, np.ndarray]:
    if q.model == "encouragement":
        d = encouragement_data(q.units)
        return {k: d[k] for k in ("h", "y")} if q.name == "partial_evidence" else d
    if q.model == "categorical":
        return categorical_data(q.units)
    return {}


# ---- closed-form answers ----


def truth(q: Query):
    """The exact answer: per-unit counterfactuals, posterior means, or effects."""
    if q.name == "full_evidence":
        d = encouragement_data(q.units)
        return d["y"].astype(np.float64) + HY_COEF * (2.0 - d["h"])
    if q.name == "multi_world":
        d = encouragement_data(q.units)
        return np.stack([d["y"] + HY_COEF * (a - d["h"]) for a in MULTI_ACTIONS], axis=-1)
    if q.name == "partial_evidence":
        d = encouragement_data(q.units)
        return d["y"] + partial_slope() * (PARTIAL_ACTION - partial_posterior_mean(d["h"], d["y"]))
    if q.name == "categorical":
        d = categorical_data(q.units)
        return d["y"] - CAT_BETA[d["c"]] + CAT_BETA[2]
    if q.name == "mediation_linear":
        return {"nde": MED_C * (TREATED - CONTROL), "nie": MED_A * MED_B * (TREATED - CONTROL)}
    if q.name == "mediation_logistic":
        return logistic_mediation()
    raise KeyError(q.name)


def partial_slope() -> float:
    """y_cf = y + s (a - x) under do(x = a), x latent: s = 0.7 + 0.4 * 0.5."""
    return XY_COEF + HY_COEF * H_COEF


def partial_posterior_mean(h, y):
    """E[x | h, y]: prior N(0, 1), h - 0.5 x ~ N(0, 1), y - 0.4 h - 0.7 x ~ N(0, 1)."""
    precision = 1.0 + H_COEF**2 + XY_COEF**2
    return (H_COEF * h + XY_COEF * (y - HY_COEF * h)) / precision


def partial_posterior_sd() -> float:
    """Posterior sd of y_cf given h, y (the Monte Carlo error scale of a mean)."""
    return partial_slope() / math.sqrt(1.0 + H_COEF**2 + XY_COEF**2)


def logistic_mediation() -> dict[str, float]:
    """NDE = E[Y(t, M(c))] - E[Y(c)], NIE = E[Y(t)] - E[Y(t, M(c))], with t = 1, c = 0.

    The treatment is set, so no integral over x remains: sums over m in {0, 1}."""
    pm = lambda x: sigmoid(LOGIT_M[0] + LOGIT_M[1] * x)  # noqa: E731
    py = lambda x, m: sigmoid(LOGIT_Y[0] + LOGIT_Y[1] * x + LOGIT_Y[2] * m)  # noqa: E731
    t, c = TREATED, CONTROL

    def e_y(x_y, x_m):
        return (1 - pm(x_m)) * py(x_y, 0) + pm(x_m) * py(x_y, 1)

    return {"nde": float(e_y(t, c) - e_y(c, c)), "nie": float(e_y(t, t) - e_y(t, c))}


def mediation_tolerance(q: Query) -> float:
    """Five standard errors of a difference of two Monte Carlo means (sd <= 3 * 2 for
    the linear model's differences, <= 1 for Bernoulli outcomes)."""
    sd = 6.0 if q.name == "mediation_linear" else 1.0
    return 5.0 * sd / math.sqrt(q.units)


def error(q: Query, answer) -> float:
    """Largest absolute error against :func:`truth`."""
    exact = truth(q)
    if isinstance(exact, dict):
        return max(abs(float(answer[k]) - exact[k]) for k in exact)
    a = np.asarray(answer, dtype=np.float64).reshape(np.shape(exact))
    return float(np.max(np.abs(a - exact)))


def tolerance(q: Query) -> float:
    if q.exact:
        return 1e-5  # float32 arithmetic on values of order 1-10 leaves ~1e-6
    if q.name == "partial_evidence":
        # max over 1000 units of a mean of POSTERIOR_SAMPLES draws: ~ 4.5 s.e.
        return 4.5 * partial_posterior_sd() / math.sqrt(POSTERIOR_SAMPLES)
    return mediation_tolerance(q)


# ---- timing ----


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class Result:
    tool: str
    query: str
    units: int
    supported: bool = True
    reason: str = ""
    import_s: float | None = None
    first_s: float | None = None
    steady_s: float | None = None
    repeats: int = 0
    peak_mb: float | None = None
    error: float | None = None
    tolerance: float | None = None
    method: str = ""
    extra: dict = field(default_factory=dict)


def measure(tool, q: Query, call, answer_of, *, import_s, method="", min_repeats=3, budget=10.0):
    """Time ``call()``: the first call (compilation included) apart from the steady
    state (median of repeats, up to ``budget`` seconds), the peak resident memory
    gained while it ran, and the error of ``answer_of(call())``."""
    rss0 = peak_rss_mb()
    t0 = time.perf_counter()
    out = call()
    first = time.perf_counter() - t0
    runs = []
    spent = 0.0
    while len(runs) < min_repeats or (spent < budget and len(runs) < 50):
        t0 = time.perf_counter()
        out = call()
        dt = time.perf_counter() - t0
        runs.append(dt)
        spent += dt
        if first > budget and len(runs) >= 1:
            break
    return Result(
        tool,
        q.name,
        q.units,
        import_s=import_s,
        first_s=first,
        steady_s=statistics.median(runs),
        repeats=len(runs),
        peak_mb=peak_rss_mb() - rss0,
        error=error(q, answer_of(out)),
        tolerance=tolerance(q),
        method=method,
    )


def versions(*packages: str) -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in packages}


def build_and_measure(tool, builders, q: Query, import_s, *, seed, packages) -> Result:
    """``builders[q.name](q)`` gives ``(call, answer_of, method)``; seed the tool's
    generator, build, :func:`measure`, and record the tool's package versions."""
    seed()
    call, answer_of, method = builders[q.name](q)
    res = measure(tool, q, call, answer_of, import_s=import_s, method=method)
    res.extra["versions"] = versions(*packages)
    return res


def unsupported(tool, q: Query, reason: str) -> Result:
    return Result(tool, q.name, q.units, supported=False, reason=reason)


def runner_main(tool: str, run_one, import_s: float, argv=None):
    """Command line of every runner: ``--query KEY --json PATH`` (one query per
    process, so peak memory and first-call times are the query's own).
    ``run_one(query, import_s)`` returns a :class:`Result` or raises
    ``NotImplementedError`` saying why the tool cannot express the query."""
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--query", required=True)
    p.add_argument("--json", required=True)
    args = p.parse_args(argv)
    q = by_key(args.query)
    try:
        res = run_one(q, import_s)
    except NotImplementedError as e:  # the tool cannot express the query
        res = unsupported(tool, q, str(e))
    with open(args.json, "w") as f:
        json.dump(asdict(res), f)
    status = "n/a" if not res.supported else f"{res.steady_s * 1e3:.3f} ms err {res.error:.2e}"
    print(f"{tool:>10} {q.key:<26} {status}", file=sys.stderr)
