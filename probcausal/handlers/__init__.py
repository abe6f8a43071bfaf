"""Effect handlers giving NumPyro programs causal meaning.

- :class:`do`: interventions (values, batches, shifts, stochastic);
- :class:`TwinWorld`, :class:`MultiWorld`: counterfactual worlds sharing noise;
- :class:`observe`: evidence for the factual world;
- :class:`WorldValue`: an action that reads another world (nested counterfactuals).

Handler order: ``do``, ``observe``/``condition`` and the world handlers commute;
they may be stacked in any order around (or inside) the model.
"""

from probcausal.handlers.do import WorldValue, action_label, do
from probcausal.handlers.observe import observe
from probcausal.handlers.worlds import MultiWorld, TwinWorld

__all__ = ["MultiWorld", "TwinWorld", "WorldValue", "action_label", "do", "observe"]
