"""ChiRho (Pyro, PyTorch CPU) on the shared suite, in its own environment.

Models follow ChiRho's counterfactual idiom: each endogenous mechanism is a
``TransformedDistribution`` of its exogenous noise, so ``MultiWorldCounterfactual``
abducts the noise of an observed site exactly and shares it across worlds;
``condition`` supplies the evidence, ``do`` the actions, and ``gather`` reads a
world. Latent parents are inferred with SVI (``AutoNormal``, mean-field ELBO),
then the counterfactual is drawn with ``Predictive``.

``.bench/chirho/bin/python run_chirho.py --query KEY --json OUT``.
"""

from __future__ import annotations

import os
import sys
import time

T0 = time.perf_counter()
import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402
import torch  # noqa: E402
from chirho.counterfactual.handlers import MultiWorldCounterfactual  # noqa: E402
from chirho.indexed.ops import IndexSet, gather  # noqa: E402
from chirho.interventional.handlers import do  # noqa: E402
from chirho.observational.handlers import condition  # noqa: E402
from pyro.distributions.transforms import AffineTransform  # noqa: E402

IMPORT_S = time.perf_counter() - T0

sys.path.insert(0, os.path.dirname(__file__))
import spec  # noqa: E402

torch.set_grad_enabled(False)
SVI_STEPS = 2000


def noisy(loc):
    """loc + N(0, 1) noise, with the noise explicit for abduction."""
    return dist.TransformedDistribution(
        dist.Normal(torch.zeros_like(loc), 1.0), [AffineTransform(loc, 1.0)]
    )


def encouragement(n):
    with pyro.plate("units", n):
        x = pyro.sample("x", noisy(torch.zeros(n)))
        h = pyro.sample("h", noisy(spec.H_COEF * x))
        return pyro.sample("y", noisy(spec.XY_COEF * x + spec.HY_COEF * h))


def encouragement_latent_x(n):
    with pyro.plate("units", n):
        x = pyro.sample("x", dist.Normal(torch.zeros(n), 1.0))
        h = pyro.sample("h", noisy(spec.H_COEF * x))
        return pyro.sample("y", noisy(spec.XY_COEF * x + spec.HY_COEF * h))


BETA = torch.tensor(spec.CAT_BETA, dtype=torch.float32)


def categorical(n):
    with pyro.plate("units", n):
        z = pyro.sample("z", noisy(torch.zeros(n)))
        logits = torch.stack([torch.zeros_like(z), z, -z], -1)
        c = pyro.sample("c", dist.Categorical(logits=logits))
        return pyro.sample("y", noisy(BETA[c] + spec.CAT_Z * z))


def mediation(n, logistic: bool):
    with pyro.plate("draws", n):
        x = pyro.sample("x", dist.Normal(torch.zeros(n), 1.0))
        if logistic:
            m = pyro.sample("m", dist.Bernoulli(logits=spec.LOGIT_M[0] + spec.LOGIT_M[1] * x))
            a, bx, bm = spec.LOGIT_Y
            return pyro.sample("y", dist.Bernoulli(logits=a + bx * x + bm * m))
        m = pyro.sample("m", noisy(spec.MED_A * x))
        return pyro.sample("y", noisy(spec.MED_C * x + spec.MED_B * m))


def tensors(q):
    return {k: torch.as_tensor(v) for k, v in spec.data_for(q).items()}


def full_evidence(q):
    d = tensors(q)

    def call():
        with MultiWorldCounterfactual(), do(actions={"h": torch.tensor(2.0)}), condition(data=d):
            y = encouragement(q.units)
            return gather(y, IndexSet(h={1})).reshape(q.units)

    return call, lambda y: y.numpy(), "one conditioned run, exact abduction"


def multi_world(q):
    d = tensors(q)
    acts = tuple(torch.tensor(a) for a in spec.MULTI_ACTIONS)

    def call():
        with MultiWorldCounterfactual(), do(actions={"h": acts}), condition(data=d):
            y = encouragement(q.units)
            worlds = [gather(y, IndexSet(h={k})).reshape(q.units) for k in range(1, len(acts) + 1)]
            return torch.stack(worlds, -1)

    return call, lambda y: y.numpy(), "one conditioned run, 5 worlds"


def categorical_query(q):
    d = tensors(q)
    d["c"] = d["c"].long()

    def call():
        with MultiWorldCounterfactual(), do(actions={"c": torch.tensor(2)}), condition(data=d):
            y = categorical(q.units)
            return gather(y, IndexSet(c={1})).reshape(q.units)

    return call, lambda y: y.numpy(), "one conditioned run, exact abduction"


def partial_evidence(q):
    d = tensors(q)
    n = q.units

    def factual():
        with condition(data=d):
            return encouragement_latent_x(n)

    def counterfactual():
        with (
            MultiWorldCounterfactual(),
            do(actions={"x": torch.tensor(spec.PARTIAL_ACTION)}),
            condition(data=d),
        ):
            y = encouragement_latent_x(n)
            return gather(y, IndexSet(x={1})).reshape(n)

    def call():
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        guide = pyro.infer.autoguide.AutoNormal(factual)
        optim = pyro.optim.ClippedAdam({"lr": 0.1, "lrd": 0.001 ** (1 / SVI_STEPS)})
        svi = pyro.infer.SVI(factual, guide, optim, pyro.infer.TraceMeanField_ELBO())
        with torch.enable_grad():
            for _ in range(SVI_STEPS):
                svi.step()
        draws = spec.POSTERIOR_SAMPLES
        pred = pyro.infer.Predictive(
            counterfactual, guide=guide, num_samples=draws, return_sites=["_RETURN"]
        )
        return pred()["_RETURN"].mean(0)

    return call, lambda y: y.numpy(), f"SVI AutoNormal {SVI_STEPS} steps + Predictive 1000 draws"


def mediation_query(q):
    logistic = q.name == "mediation_logistic"
    n = q.units
    t, c = torch.tensor(spec.TREATED), torch.tensor(spec.CONTROL)

    def call():
        # worlds of x: 0 factual, 1 control, 2 treated; of m: 0 as is, 1 = M(control)
        with (
            MultiWorldCounterfactual(),
            do(actions={"x": (c, t)}),
            do(actions={"m": lambda m: gather(m, IndexSet(x={1}))}),
        ):
            y = mediation(n, logistic)
            y_c = gather(y, IndexSet(x={1}, m={0})).reshape(n)
            y_t = gather(y, IndexSet(x={2}, m={0})).reshape(n)
            y_tmc = gather(y, IndexSet(x={2}, m={1})).reshape(n)
        return {"nde": (y_tmc - y_c).mean().item(), "nie": (y_t - y_tmc).mean().item()}

    method = "prior draws, nested do on m" + (", shared noise" if not logistic else "")
    return call, lambda fx: fx, method


BUILDERS = {
    "full_evidence": full_evidence,
    "multi_world": multi_world,
    "categorical": categorical_query,
    "partial_evidence": partial_evidence,
    "mediation_linear": mediation_query,
    "mediation_logistic": mediation_query,
}


def run_one(q, import_s):
    return spec.build_and_measure(
        "chirho",
        BUILDERS,
        q,
        import_s,
        seed=lambda: pyro.set_rng_seed(0),
        packages=("chirho", "pyro-ppl", "torch"),
    )


if __name__ == "__main__":
    spec.runner_main("chirho", run_one, IMPORT_S)
