"""Brute-force ground truth for identification tests.

A random binary SCM for an ADMG: one binary latent per bidirected edge, a random
conditional probability table for every observed variable given its parents and
its latents. Enumerating all joint assignments gives the exact observational
``P(V)`` and any interventional ``P(Y | do(X))``. Works for any ADMG with up to 8
observed variables (and a dozen bidirected edges).
"""

import itertools

import numpy as np

from probcausal.identification import ADMG, Factor


class BinarySCM:
    def __init__(self, graph: ADMG, rng: np.random.Generator):
        if len(graph.nodes) > 8:
            raise ValueError("the brute-force checker handles at most 8 observed variables")
        self.graph = graph
        self.nodes = graph.topological_order()
        self.latents = sorted(tuple(sorted(map(str, e))) for e in graph.bi.edges)
        self.p_latent = rng.uniform(0.2, 0.8, size=len(self.latents))
        self.inputs = {}
        self.cpt = {}
        for v in self.nodes:
            parents = sorted(graph.parents(v), key=self.nodes.index)
            lats = [i for i, e in enumerate(self.latents) if str(v) in e]
            self.inputs[v] = (parents, lats)
            self.cpt[v] = rng.uniform(0.05, 0.95, size=2 ** (len(parents) + len(lats)))

    def _assignments(self):
        n, m = len(self.nodes), len(self.latents)
        return np.array(list(itertools.product((0, 1), repeat=n + m)), dtype=int)

    def joint(self, do=None) -> Factor:
        """``P(V)`` (or ``P(V | do(...))``) as a Factor over the observed variables."""
        do = dict(do or {})
        a = self._assignments()
        n = len(self.nodes)
        obs, lat = a[:, :n], a[:, n:]
        weight = np.prod(np.where(lat == 1, self.p_latent, 1 - self.p_latent), axis=1)
        for j, v in enumerate(self.nodes):
            if v in do:
                weight = weight * (obs[:, j] == do[v])
                continue
            parents, lats = self.inputs[v]
            bits = [obs[:, self.nodes.index(p)] for p in parents] + [lat[:, i] for i in lats]
            index = np.zeros(len(a), dtype=int)
            for b in bits:
                index = index * 2 + b
            p1 = self.cpt[v][index]
            weight = weight * np.where(obs[:, j] == 1, p1, 1 - p1)
        table = np.zeros((2,) * n)
        np.add.at(table, tuple(obs.T), weight)
        return Factor(tuple(self.nodes), table)

    def interventional(self, treatment, outcome, given=()) -> np.ndarray:
        """``P(outcome | do(treatment), given)`` as an array over
        ``outcome + treatment + given`` values."""
        treatment, outcome, given = list(treatment), list(outcome), list(given)
        out = np.zeros((2,) * (len(outcome) + len(treatment) + len(given)))
        for xs in itertools.product((0, 1), repeat=len(treatment)):
            joint = self.joint(dict(zip(treatment, xs, strict=True)))
            yz = joint.sum(set(joint.vars) - set(outcome) - set(given))
            z = joint.sum(set(joint.vars) - set(given))
            num = yz.align(tuple(outcome + given))
            den = z.align(tuple(outcome + given))
            cond = num / den
            for zs in itertools.product((0, 1), repeat=len(given)):
                out[(Ellipsis, *xs, *zs)] = cond[(Ellipsis, *zs)]
        return out
