"""No inference: every ancestor of the evidence is observed."""

from __future__ import annotations

from probcausal.infer.abduction._base import Engine


class Exact(Engine):
    """``"exact"``: no latent ancestor of the evidence, so nothing to infer (the
    noise follows from the evidence site by site)."""

    def refusal(self, info, latents):
        if latents:
            return (
                f"method='exact' needs every ancestor of the evidence observed, but "
                f"{latents} are latent. Observe them, or use method='auto'."
            )
        return None

    def posterior(self, problem, rng_key, num_samples):
        return {}
