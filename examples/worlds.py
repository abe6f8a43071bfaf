"""The handlers directly: TwinWorld, MultiWorld and nested counterfactuals.

Queries are built from these; here they are used by hand with NumPyro's own
``seed``, ``trace`` and ``condition``.
"""

import numpyro
import numpyro.distributions as dist
from numpyro.handlers import condition, seed, trace

import probcausal as pc


def model():
    x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    m = numpyro.sample("m", dist.Normal(2.0 * x, 1.0))
    return numpyro.sample("y", dist.Normal(0.5 * x + 3.0 * m, 1.0))


def main():
    evidence = {"x": 1.0, "m": 2.5, "y": 8.0}
    twin = pc.TwinWorld(pc.do(condition(model, evidence), {"x": 0.0}))
    tr = trace(seed(twin, 0)).get_trace()
    print("TwinWorld y [factual, do(x=0)]:", tr["y"]["value"].tolist())

    def nested():
        with (
            pc.MultiWorld() as _,
            pc.do(actions={"x": 0.0}),
            pc.do(actions={"x": 1.0}),
            pc.do(actions={"x": 1.0, "m": pc.WorldValue(1)}),
            condition(data=evidence),
        ):
            return model()

    y = seed(nested, 0)()
    print("MultiWorld y [factual, do(x=0), do(x=1), do(x=1, m=M_0)]:", y.round(3).tolist())
    print("unit's natural direct effect:", round(float(y[3] - y[1]), 3), "(0.5)")


if __name__ == "__main__":
    main()
