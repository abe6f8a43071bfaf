"""Quickstart: Pearl's encouragement model, a counterfactual, an ATE, ArviZ.

x: encouragement, h: homework hours, y: exam score (standardized).
Run: ``make demo`` (or ``python examples/quickstart.py``); the plot goes to
``$PROBCAUSAL_OUT`` (default ``out/``).
"""

import os

import arviz as az
import jax
import matplotlib.pyplot as plt
import numpyro
import numpyro.distributions as dist

import probcausal as pc


@pc.causal_model
def encouragement():
    x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    h = numpyro.sample("h", dist.Normal(0.5 * x, 1.0))
    return numpyro.sample("y", dist.Normal(0.7 * x + 0.4 * h, 1.0))


def main():
    out = os.environ.get("PROBCAUSAL_OUT", "out")
    os.makedirs(out, exist_ok=True)
    key = jax.random.PRNGKey(0)

    print("graph:", sorted(encouragement.graph().edges()))

    # A student with x=0.5, h=1, y=1.5: what if they had done 2 hours of homework?
    # Every site is observed, so abduction is exact: no sampling error.
    cf = encouragement.counterfactual(
        {"x": 0.5, "h": 1.0, "y": 1.5}, {"h": 2.0}, rng_key=key, num_samples=1000
    )
    print(f"y had h been 2: {float(cf['y'].mean()):.3f} (exact answer 1.9)")

    # Only the score is known: the latent x and h are inferred (the model is
    # linear-Gaussian, so by the exact conjugate posterior), and the counterfactual
    # is a distribution.
    cf2 = encouragement.counterfactual({"y": 1.5}, {"h": 2.0}, rng_key=key, num_samples=1000)
    print(f"given only y=1.5, E[y | do(h=2)] = {float(cf2['y'].mean()):.3f} ({cf2.method})")

    ate = pc.ate(encouragement, "h", "y", treated=1.0, control=0.0, rng_key=key)
    print(f"ATE of one more hour of homework: {float(ate):.3f} (exact 0.4)")

    idata = pc.to_inference_data(cf2)
    print(az.summary(idata, group="posterior_predictive", var_names=["y"], kind="stats"))
    az.plot_posterior(
        idata,
        group="posterior_predictive",
        var_names=["x", "y"],
        coords={"world": ["do(h=2.0)"]},
    )
    path = os.path.join(out, "quickstart_counterfactual.png")
    plt.savefig(path, dpi=80)
    print("saved", path)


if __name__ == "__main__":
    main()
