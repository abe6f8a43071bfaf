"""Neural mechanisms: Flax NNX generators, critics and encoders as mechanisms
``x = G(parents, u)`` of causal models.

:func:`sample` declares a neural site inside a model; :class:`MLPGenerator` and
:class:`ConvGenerator` are generators, :class:`Critic` and :class:`ConvCritic`
critics for :class:`~probcausal.infer.WGANGP`, :class:`Encoder` an amortized
posterior (used by :class:`EncoderGuide`), and :class:`Frozen` plugs a
pretrained module in as a constant; :func:`with_params` gives a module its
trained parameters from a NumPyro fit.
"""

from probcausal.nn.conv import ConvCritic, ConvGenerator
from probcausal.nn.frozen import Frozen, with_params
from probcausal.nn.guides import EncoderGuide
from probcausal.nn.mlp import MLP, Critic, Encoder, MLPGenerator, flatten_values
from probcausal.nn.sites import gumbel_softmax, one_hot, sample

__all__ = [
    "MLP",
    "ConvCritic",
    "ConvGenerator",
    "Critic",
    "Encoder",
    "EncoderGuide",
    "Frozen",
    "MLPGenerator",
    "flatten_values",
    "gumbel_softmax",
    "one_hot",
    "sample",
    "with_params",
]
