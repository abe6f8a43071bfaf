"""A time series written with ``numpyro.contrib.control_flow.scan``: an
intervention at one step, and a counterfactual on an observed series.

x_t = 0.8 x_{t-1} + e_t, a demand series; sales y = sum_t x_t + noise. Had the
demand been pushed to 3 at step 2, how would the rest of the series, and the
sales, have gone?
"""

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.control_flow import scan

import probcausal as pc


def demand(T=6):
    def step(prev, _):
        x = numpyro.sample("x", dist.Normal(0.8 * prev, 0.5))
        return x, x

    x0 = numpyro.sample("x0", dist.Normal(1.0, 0.5))
    _, xs = scan(step, x0, jnp.arange(T))
    numpyro.sample("y", dist.Normal(xs.sum(), 0.5))


def main():
    key = jax.random.PRNGKey(0)
    print("graph:", sorted(pc.graph(demand).edges()))

    # rung 2: the series under do(x_2 = 3)
    r = pc.interventional(demand, {"x": {2: 3.0}}, rng_key=key, num_samples=2000)
    print("E[x_t | do(x_2 = 3)]:", [round(float(v), 2) for v in r["x"].mean(0)])

    # rung 3: one observed series, the same units' noise, step 2 pushed to 3
    xs = jnp.array([0.9, 0.6, 0.4, 0.5, 0.2, 0.1])
    evidence = {"x0": 1.0, "x": xs, "y": 2.9}
    cf = pc.counterfactual(demand, evidence, {"x": {2: 3.0}}, rng_key=key, num_samples=4)
    print("observed x:      ", [round(float(v), 3) for v in xs])
    print("had x_2 been 3:  ", [round(float(v), 3) for v in cf["x"][0]])
    print("sales: observed 2.9, counterfactual", round(float(cf["y"][0]), 3))
    # the steps before the action keep their values; after it, the same noise
    assert jnp.allclose(cf["x"][0, :2], xs[:2])
    assert abs(float(cf["x"][0, 3]) - (0.8 * 3.0 + (0.5 - 0.8 * 0.4))) < 1e-5


if __name__ == "__main__":
    main()
