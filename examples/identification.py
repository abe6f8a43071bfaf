"""Identification on the napkin graph: estimand, plug-in value, ground truth.

    w -> r -> x -> y,   w <-> x (latent u1),   w <-> y (latent u2)

No back-door or front-door set exists, yet P(y | do(x)) is identifiable. The
model is written in NumPyro with the confounders as sites we then hide.
"""

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd

import probcausal as pc


@pc.causal_model
def napkin():
    u1 = numpyro.sample("u1", dist.Bernoulli(0.5))
    u2 = numpyro.sample("u2", dist.Bernoulli(0.5))
    w = numpyro.sample("w", dist.Bernoulli(0.2 + 0.3 * u1 + 0.4 * u2))
    r = numpyro.sample("r", dist.Bernoulli(0.2 + 0.6 * w))
    x = numpyro.sample("x", dist.Bernoulli(0.1 + 0.5 * r + 0.35 * u1))
    numpyro.sample("y", dist.Bernoulli(0.1 + 0.4 * x + 0.45 * u2))


def main():
    hidden = ["u1", "u2"]
    graph = pc.ADMG.from_model(napkin, hidden=hidden)
    print(graph)
    print("back-door sets:", pc.backdoor_adjustment_sets(graph, "x", "y"))
    print("front-door set:", pc.frontdoor_set(graph, "x", "y"))
    estimand = napkin.identify("x", "y", hidden=hidden)
    print(estimand)

    key = jax.random.PRNGKey(0)
    n = 400_000
    sample = pc.interventional(napkin, {}, rng_key=key, num_samples=n)
    data = pd.DataFrame({v: np.asarray(sample[v]) for v in ("w", "r", "x", "y")})
    truth = pc.interventional(napkin, {"x": 1}, rng_key=jax.random.PRNGKey(1), num_samples=n)
    se = 1 / np.sqrt(n)
    print(
        f"estimand on {n} samples:  P(y=1 | do(x=1)) = "
        f"{estimand.evaluate(data, intervention={'x': 1}, outcome={'y': 1}):.4f}"
    )
    print(
        f"ground truth (simulated do):  {float(truth['y'].mean()):.4f} (+- {2 * se:.4f}); "
        "exact 0.1 + 0.4 + 0.45 / 2 = 0.725"
    )
    print(f"naive P(y=1 | x=1):           {data.y[data.x == 1].mean():.4f}")


if __name__ == "__main__":
    main()
