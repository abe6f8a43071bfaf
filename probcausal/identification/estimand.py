"""Estimands: expression trees of observational probabilities, with exact evaluation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from probcausal.errors import EstimandDataError

__all__ = ["Estimand", "Factor", "Prob", "Product", "Quotient", "Sum", "joint_table"]


class Expr:
    """Base of the expression nodes; ``free`` is the set of variables it depends on."""

    free: frozenset

    def __str__(self):
        return _render(self, {}, frozenset())

    def __mul__(self, other):
        return product([self, other])


@dataclass(frozen=True)
class Prob(Expr):
    """The observational ``P(vars | given)``."""

    vars: frozenset
    given: frozenset = frozenset()

    @property
    def free(self):
        return self.vars | self.given


@dataclass(frozen=True)
class Sum(Expr):
    over: frozenset
    body: Expr

    @property
    def free(self):
        return self.body.free - self.over


@dataclass(frozen=True)
class Product(Expr):
    factors: tuple

    @property
    def free(self):
        return frozenset().union(*(f.free for f in self.factors))


@dataclass(frozen=True)
class Quotient(Expr):
    num: Expr
    den: Expr

    @property
    def free(self):
        return self.num.free | self.den.free


# -- smart constructors (the usual cancellations) --------------------------------------


def marginal_sum(over: Iterable, body: Expr) -> Expr:
    """``Σ_over body``, simplified: empty sums vanish, marginals of joints stay joints."""
    over = frozenset(over) & body.free
    if not over:
        return body
    if isinstance(body, Prob) and not (over & body.given):
        return Prob(body.vars - over, body.given) if body.vars - over else _ONE
    if isinstance(body, Sum):
        return marginal_sum(over | body.over, body.body)
    return Sum(over, body)


def product(factors: Iterable[Expr]) -> Expr:
    flat = []
    for f in factors:
        if isinstance(f, Prob) and not f.vars:
            continue  # P(∅ | ...) = 1
        if isinstance(f, Product):
            flat.extend(f.factors)
        elif f is not _ONE:
            flat.append(f)
    if not flat:
        return _ONE
    return flat[0] if len(flat) == 1 else Product(tuple(flat))


def quotient(num: Expr, den: Expr) -> Expr:
    if den is _ONE:
        return num
    if isinstance(num, Prob) and isinstance(den, Prob) and not num.given and not den.given:
        if den.vars <= num.vars:
            return Prob(num.vars - den.vars, den.vars)
    return Quotient(num, den)


class _One(Expr):
    free = frozenset()

    def __str__(self):
        return "1"


_ONE = _One()


# -- evaluation -------------------------------------------------------------------------


class Factor:
    """A table over named discrete variables: ``vars`` (tuple) and ``table`` (ndarray)."""

    def __init__(self, vars: tuple, table: np.ndarray):
        self.vars = tuple(vars)
        self.table = np.asarray(table, dtype=float)

    def align(self, order: tuple) -> np.ndarray:
        perm = [self.vars.index(v) for v in order if v in self.vars]
        t = np.transpose(self.table, perm)
        shape = [t.shape[perm.index(self.vars.index(v))] if v in self.vars else 1 for v in order]
        return t.reshape(shape)

    def sum(self, over) -> Factor:
        axes = tuple(i for i, v in enumerate(self.vars) if v in over)
        return Factor(tuple(v for v in self.vars if v not in over), self.table.sum(axis=axes))


def _binary(a: Factor, b: Factor, op) -> Factor:
    order = tuple(dict.fromkeys(a.vars + b.vars))
    return Factor(order, op(a.align(order), b.align(order)))


def _divide(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b == 0, 0.0, a / np.where(b == 0, 1.0, b))


def joint_table(data: Any, variables: Iterable) -> tuple[Factor, dict]:
    """Plug-in joint ``P(V)`` from discrete data (DataFrame or dict of arrays).

    Returns the factor and each variable's domain (sorted distinct values).
    """
    variables = list(variables)
    try:
        columns = set(data.keys())
    except AttributeError:
        raise EstimandDataError(
            f"data must be a pandas DataFrame or a dict of columns, got {type(data).__name__}"
        ) from None
    missing = [v for v in variables if v not in columns]
    if missing:
        raise EstimandDataError(
            f"the estimand needs column(s) {sorted(map(str, missing))}, which the data lack; "
            f"the data have {sorted(map(str, columns))}. Measure them, or identify the "
            "query from a graph in which they are latent."
        )
    cols = {v: np.asarray(data[v]) for v in variables}
    lengths = {len(c) for c in cols.values()}
    if len(lengths) > 1:
        raise EstimandDataError(f"the data's columns have different lengths {sorted(lengths)}")
    if not lengths or 0 in lengths:
        raise EstimandDataError("the data have no rows")
    for v, c in cols.items():
        if np.issubdtype(c.dtype, np.number):
            bad = int(np.sum(~np.isfinite(c)))
        else:
            bad = int(sum(x is None or x != x for x in c))
        if bad:
            raise EstimandDataError(
                f"column {v!r} holds {bad} missing (NaN, None or infinite) value(s): a "
                "plug-in estimate would count them as a category or drop them silently. "
                "Drop or impute those rows first."
            )
    domains = {v: np.unique(cols[v]) for v in variables}
    idx = [np.searchsorted(domains[v], cols[v]) for v in variables]
    counts = np.zeros([len(domains[v]) for v in variables])
    np.add.at(counts, tuple(idx), 1.0)
    return Factor(tuple(variables), counts / counts.sum()), domains


def _evaluate(expr: Expr, joint: Factor, memo: dict) -> Factor:
    if id(expr) in memo:
        return memo[id(expr)][1]
    if expr is _ONE:
        out = Factor((), np.array(1.0))
    elif isinstance(expr, Prob):
        num = joint.sum(set(joint.vars) - (expr.vars | expr.given))
        out = num
        if expr.given:
            out = _binary(num, joint.sum(set(joint.vars) - expr.given), _divide)
    elif isinstance(expr, Sum):
        out = _evaluate(expr.body, joint, memo).sum(expr.over)
    elif isinstance(expr, Product):
        out = _evaluate(expr.factors[0], joint, memo)
        for f in expr.factors[1:]:
            out = _binary(out, _evaluate(f, joint, memo), np.multiply)
    elif isinstance(expr, Quotient):
        out = _binary(_evaluate(expr.num, joint, memo), _evaluate(expr.den, joint, memo), _divide)
    else:  # pragma: no cover - closed set of node types
        raise TypeError(f"unknown estimand node {type(expr).__name__}")
    memo[id(expr)] = (expr, out)
    return out


def _normalize(expr: Expr) -> Expr:
    if isinstance(expr, Sum):
        return marginal_sum(expr.over, _normalize(expr.body))
    if isinstance(expr, Product):
        return product(_normalize(f) for f in expr.factors)
    if isinstance(expr, Quotient):
        return quotient(_normalize(expr.num), _normalize(expr.den))
    return expr


def _render(expr: Expr, rename: dict, taken: frozenset) -> str:
    """The formula with bound variables that shadow free ones primed (x -> x')."""
    name = lambda v: rename.get(v, str(v))
    names = lambda vs: ", ".join(sorted(name(v) for v in vs))
    if isinstance(expr, Prob):
        return f"P({names(expr.vars)}" + (f" | {names(expr.given)})" if expr.given else ")")
    if isinstance(expr, Sum):
        inner = dict(rename)
        for v in expr.over:
            if v in taken:
                inner[v] = name(v) + "'"
        bound = ", ".join(sorted(inner.get(v, str(v)) for v in expr.over))
        return f"Σ_{{{bound}}} [{_render(expr.body, inner, taken | expr.over)}]"
    if isinstance(expr, Product):
        return " ".join(_render(f, rename, taken) for f in expr.factors)
    if isinstance(expr, Quotient):
        return f"({_render(expr.num, rename, taken)}) / ({_render(expr.den, rename, taken)})"
    return str(expr)


class Estimand:
    """An identified causal query ``P(outcome | do(treatment))`` as an expression.

    ``str(estimand)`` is the formula; :meth:`evaluate` gives its plug-in value on
    discrete data; :meth:`table` gives the whole table over outcome and treatment.
    """

    def __init__(self, expr: Expr, treatment: Iterable, outcome: Iterable, variables, given=()):
        self.expr = expr
        self.treatment = tuple(treatment)
        self.outcome = tuple(outcome)
        self.given = tuple(given)
        self.variables = tuple(variables)

    def __str__(self):
        cond = [f"do({', '.join(map(str, self.treatment))})"] if self.treatment else []
        cond += [str(g) for g in self.given]
        lhs = ", ".join(map(str, self.outcome)) + (f" | {', '.join(cond)}" if cond else "")
        free = frozenset(self.treatment) | frozenset(self.outcome) | frozenset(self.given)
        return f"P({lhs}) = {_render(self.expr, {}, free)}"

    __repr__ = __str__

    def simplify(self) -> Estimand:
        """Rebuild the tree through the simplifying constructors: empty sums vanish,
        nested sums merge, sums of joint probabilities become marginals, products
        flatten, factors equal to one drop, and ``P(A, B) / P(B)`` becomes ``P(A | B)``.
        Estimands from :func:`~probcausal.identify` are built this way already.

        Examples
        --------
        >>> from probcausal.identification.estimand import Estimand, Prob, Quotient, Sum
        >>> f = frozenset
        >>> raw = Quotient(Sum(f("z"), Prob(f("xyz"))), Sum(f("yz"), Prob(f("xyz"))))
        >>> str(Estimand(raw, [], ["y"], "xyz").simplify())
        'P(y) = P(y | x)'
        """
        return Estimand(
            _normalize(self.expr), self.treatment, self.outcome, self.variables, self.given
        )

    def table(self, data: Any) -> tuple[Factor, dict]:
        """The estimand over every outcome, treatment and given value: a
        :class:`Factor` over ``outcome + treatment + given`` (in that order), and the
        variables' domains."""
        if isinstance(data, Factor):
            joint = data
            domains = {v: np.arange(joint.table.shape[i]) for i, v in enumerate(joint.vars)}
        else:
            joint, domains = joint_table(data, self.variables)
        out = _evaluate(self.expr, joint, {})
        order = self.outcome + self.treatment + self.given
        extra = set(out.vars) - set(order)
        if extra:  # ID leaves the result constant in these: average over P(extra)
            weights = joint.sum(set(joint.vars) - extra)
            out = _binary(out, weights, np.multiply).sum(extra)
        return Factor(
            order, np.broadcast_to(out.align(order), [len(domains[v]) for v in order])
        ), domains

    def evaluate(
        self,
        data: Any,
        intervention: Mapping[str, Any] | None = None,
        outcome: Mapping[str, Any] | None = None,
        given: Mapping[str, Any] | None = None,
    ) -> float:
        """``P(outcome | do(intervention), given)`` on ``data``, a DataFrame / dict of
        discrete arrays (plug-in frequencies) or a :class:`Factor` holding ``P(V)``."""
        intervention, outcome = dict(intervention or {}), dict(outcome or {})
        given = dict(given or {})
        missing = (
            (set(self.treatment) - set(intervention))
            | (set(self.outcome) - set(outcome))
            | (set(self.given) - set(given))
        )
        if missing:
            raise EstimandDataError(
                f"evaluate needs values for {sorted(map(str, missing))}: pass them in "
                "`intervention`, `outcome` or `given`"
            )
        table, domains = self.table(data)
        index = []
        for v in table.vars:
            value = {**given, **intervention, **outcome}[v]
            hits = np.flatnonzero(domains[v] == value)
            if hits.size == 0:
                raise ValueError(
                    f"value {value!r} of {v!r} is not in its domain {domains[v].tolist()}"
                )
            index.append(int(hits[0]))
        return float(table.table[tuple(index)])
