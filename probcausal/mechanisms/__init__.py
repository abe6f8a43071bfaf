"""Per-family noise outsourcing: sample noise, apply, abduct.

Every family of the design has a mechanism registered at import:

=====================================  ==========================================
family                                 mechanism
=====================================  ==========================================
Normal, Laplace, Logistic, Cauchy,     ``LocationScale``: ``x = loc + scale * u``
Gumbel
Exponential, HalfNormal, HalfCauchy    ``Scale``: ``x = scale * u``
Uniform                                ``UniformRange``
StudentT                               ``StandardT``: standard-t noise, fixed ``df``
MultivariateNormal                     ``MultivariateGaussian``: ``x = loc + L u``
TransformedDistribution (LogNormal)    the base family's, pushed through the transforms
Bernoulli, Categorical                 ``GumbelMax`` (truncated-Gumbel abduction)
Poisson, Binomial, NegativeBinomial,   ``InverseCDF`` (uniform noise)
GammaPoisson, Geometric,
ZeroInflatedPoisson
DiscreteUniform                        ``ShiftedUniformInteger``
Gamma (Chi2, InverseGamma), Beta       ``BisectionQuantile``: inverse CDF by bisection
Weibull, Kumaraswamy                   ``ClosedQuantile``
VonMises                               ``VonMisesAngle``: ``x = wrap(loc + e)``
TruncatedNormal, AsymmetricLaplace     ``Quantile`` (NumPyro's ``icdf``)
LowRankMultivariateNormal              ``MultivariateGaussian``
Dirichlet                              ``DirichletGammas``
FoldedDistribution                     the base's, a preimage drawn by its weight
Delta                                  ``NoNoise``
=====================================  ==========================================

Register another family with :func:`register`. A mechanism whose noise does not
depend on the distribution's parameters sets ``standard_noise = True``; queries
then draw that noise for all samples at once, before the model runs.
"""

from probcausal.mechanisms.base import (
    Mechanism,
    abduct,
    apply,
    is_exact,
    mechanism_for,
    noise_shape,
    possible,
    register,
    registered,
    sample_noise,
    standard_noise_mechanism,
    unwrapped,
)
from probcausal.mechanisms.delta import NoNoise
from probcausal.mechanisms.families import (
    BisectionQuantile,
    ClosedQuantile,
    DirichletGammas,
    MixtureGumbelMax,
    SequentialBinomials,
    ShiftedUniformInteger,
    VonMisesAngle,
)
from probcausal.mechanisms.gumbel_max import GumbelMax, posterior_gumbels
from probcausal.mechanisms.inverse_cdf import InverseCDF, discrete_icdf
from probcausal.mechanisms.location_scale import (
    LocationScale,
    MultivariateGaussian,
    Quantile,
    Scale,
    StandardT,
    UniformRange,
)

__all__ = [
    "BisectionQuantile",
    "ClosedQuantile",
    "DirichletGammas",
    "MixtureGumbelMax",
    "SequentialBinomials",
    "ShiftedUniformInteger",
    "VonMisesAngle",
    "GumbelMax",
    "InverseCDF",
    "LocationScale",
    "Mechanism",
    "MultivariateGaussian",
    "NoNoise",
    "Quantile",
    "Scale",
    "StandardT",
    "UniformRange",
    "abduct",
    "apply",
    "discrete_icdf",
    "is_exact",
    "mechanism_for",
    "noise_shape",
    "possible",
    "posterior_gumbels",
    "register",
    "registered",
    "sample_noise",
    "unwrapped",
    "standard_noise_mechanism",
]
