"""BIOLS: a latent causal graph learned from images with known interventions.

Five latent causes drive the intensities of five cells of a 50x50 image (the
"chemdata" blocks, linear in the latents). Each row of the data set carries its
intervention targets and values. BIOLS learns the node order, the weights and
noise scales of the latent SCM and the decoder; the script prints the posterior
edge probabilities against the true graph, a summary of the posterior noise
scales (ArviZ), and saves

* ``$PROBCAUSAL_OUT/biols_edges.png``: posterior edge probabilities and the truth;
* ``$PROBCAUSAL_OUT/biols_images.png``: images generated under a two-target
  intervention no training row has, beside the generator's (default ``out/``).

Run: ``python examples/biols.py`` (about half a minute on a CPU). The experiment
with its metrics over seeds: ``probcausal experiment biols --quick``.
"""

import os

import arviz as az
import jax
import matplotlib.pyplot as plt
import numpy as np

import probcausal as pc
from probcausal.experiments.biols import unseen_intervention
from probcausal.metrics import auroc, mcc, shd


def main():
    out = os.environ.get("PROBCAUSAL_OUT", "out")
    os.makedirs(out, exist_ok=True)
    data = pc.data.latent_scm_data(jax.random.key(0), num_latents=5, projection="blocks")
    print("images", data.x.shape, "targets per row", data.targets.sum(1).max())

    m = pc.BIOLS(num_latents=5, decoder="linear", restarts=4)
    m.fit(
        data.x,
        targets=data.targets,
        values=data.values,
        rng_key=jax.random.key(1),
        steps=800,
        progress=False,
    )
    probs = m.edge_probabilities(rng_key=jax.random.key(2))
    z_mean = m.encode(data.x, targets=data.targets, values=data.values)
    print("learned order", m.map_order(), "true order", data.order)
    print(
        f"SHD {shd((probs > 0.5) * 1, data.adjacency)}  "
        f"AUROC {auroc(probs, data.adjacency):.3f}  MCC {mcc(z_mean, data.z):.3f}"
    )
    print("edges:", sorted(m.graph(threshold=0.5).edges))
    idata = m.posterior(rng_key=jax.random.key(3), num_samples=500)
    print(az.summary(idata, var_names=["sigma"], kind="stats"))
    print("true sigma", np.round(data.noise_scale, 3))

    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3))
    for ax, table, title in (
        (axes[0], probs, "posterior P(edge)"),
        (axes[1], data.adjacency, "true graph"),
    ):
        ax.imshow(table, vmin=0, vmax=1, cmap="Greys")
        ax.set(title=title, xlabel="effect", ylabel="cause", xticks=range(5), yticks=range(5))
    fig.tight_layout()
    fig.savefig(os.path.join(out, "biols_edges.png"), dpi=100)

    actions = unseen_intervention(data)
    print("unseen intervention", {f"z{j}": v for j, v in actions.items()})
    draws = pc.interventional(
        m.causal_model(),
        {f"z{j}": v for j, v in actions.items()},
        rng_key=jax.random.key(4),
        num_samples=4,
    )
    _, truth = data.sample(jax.random.key(5), 4, actions)
    fig, axes = plt.subplots(2, 4, figsize=(7, 2.2))
    for j in range(4):
        for row, images in ((0, np.asarray(draws["x"]).reshape(4, 50, 50)), (1, truth)):
            # the five cells of the latents fill the top 10 of the 50 pixel rows
            axes[row, j].imshow(images[j][:10], vmin=-0.1, vmax=1.1, cmap="viridis")
            axes[row, j].axis("off")
    do = ", ".join(f"z{j}={v:g}" for j, v in actions.items())
    axes[0, 0].set_title(f"BIOLS, do({do})", fontsize=9, loc="left")
    axes[1, 0].set_title(f"generator, do({do})", fontsize=9, loc="left")
    fig.tight_layout()
    path = os.path.join(out, "biols_images.png")
    fig.savefig(path, dpi=100)
    print("figures:", os.path.join(out, "biols_edges.png"), path)


if __name__ == "__main__":
    main()
