"""Probabilities of causation with Gumbel-max (counterfactually stable) mechanisms.

Aspirin x and headache relief y: P(y | x=1) = 0.9, P(y | x=0) = 0.4.
"""

import jax
import numpyro
import numpyro.distributions as dist

import probcausal as pc


def aspirin():
    x = numpyro.sample("x", dist.Bernoulli(0.5))
    return numpyro.sample("y", dist.Bernoulli(0.4 + 0.5 * x))


def main():
    kw = dict(rng_key=jax.random.PRNGKey(0), num_samples=20000)
    pn = pc.probability_of_necessity(aspirin, "x", "y", **kw)
    ps = pc.probability_of_sufficiency(aspirin, "x", "y", **kw)
    pns = pc.probability_of_necessity_and_sufficiency(aspirin, "x", "y", **kw)
    print(f"PN  = {float(pn):.3f}  (0.5 / 0.9 = 0.556)")
    print(f"PS  = {float(ps):.3f}  (0.5 / 0.6 = 0.833)")
    print(f"PNS = {float(pns):.3f}  (0.5)")


if __name__ == "__main__":
    main()
