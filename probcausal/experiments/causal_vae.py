"""CausalVAE on the Pendulum and Flow scenes: concepts, graph and
counterfactual images against the generator's truth.

``probcausal experiment causal-vae [--quick] --out results.json``

Per data set (rendered by :mod:`probcausal.data.concepts`, split 80/20 into
training and test images), :class:`probcausal.CausalVAE` is fitted with the
graph learned (``A`` started at zero, the label graph first) and scored:

* ``label_corr``: ``|corr(z_j, u_j)|`` per concept between the encoded concept
  and its label, over the test images;
* ``graph_shd``: the structural Hamming distance of the learned concept graph to
  the truth (a reversed edge counts once);
* ``cf_corr``: for each intervened concept ``c``, ``do(c = v)`` with ``v`` a
  shuffled test label per image, through ``pc.counterfactual`` on
  ``m.causal_model()`` (the encoder abducts); a pixel *reader* (an MLP trained on
  the generator's images only, never the model's: the training images and
  renders of the scene with each concept drawn independently from its
  marginal, so that it reads each concept off its own object) reads every
  concept off each counterfactual
  image and ``cf_corr[c][k]`` is the correlation of the read concept ``k`` with
  the generator's counterfactual truth (the scene re-rendered with ``c = v`` and
  every descendant recomputed). Descendants must move with ``v``;
  non-descendants must stay. ``reader_corr`` is the reader's own accuracy on real
  test images; ``cf_ceiling`` the same correlations read off the generator's own
  counterfactual images, the ceiling of ``cf_corr``. (A reader trained on the
  real images alone misreads scenes that no real image shows, such as a shadow
  that disagrees with its pendulum: read that way, the ceiling of ``mid``
  under ``do(mid)`` was 0.18.)

Quick mode: Pendulum at 32 x 32 (2-core CPU, minutes); full mode: Pendulum and
Flow at 96 x 96. Both intervene on every concept, with the decoder in one
network per object (``PARTS``).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from probcausal.data.concepts import flow_data, pendulum_data
from probcausal.infer.training import fit as run_fit
from probcausal.metrics import shd
from probcausal.models.causal_vae import CausalVAE
from probcausal.nn import MLP

__all__ = ["QUICK", "FULL", "PARTS", "evaluate", "run", "train_reader"]

#: one decoder network per object: the Pendulum's pendulum, sun and shadow, Flow's
#: ball, water and jet (see docs/causal_vae.md, "do on a concept that is an exact
#: function of its parents")
PARTS = {
    "pendulum": [("theta",), ("phi",), ("length", "mid")],
    "flow": [("ball",), ("water",), ("hole", "flow")],
}
QUICK = {
    "pendulum": dict(
        scene="pendulum", size=32, steps=6000, interventions="all", decoder_parts=PARTS["pendulum"]
    ),
}
FULL = {
    "pendulum": dict(
        scene="pendulum",
        size=96,
        steps=30000,
        interventions="all",
        decoder_parts=PARTS["pendulum"],
    ),
    "flow": dict(
        scene="flow",
        size=96,
        steps=30000,
        interventions="all",
        rows=8000,
        decoder_parts=PARTS["flow"],
    ),
}
QUICK_RUN = dict(seed=0, cf_images=500, reader_steps=3000)
FULL_RUN = dict(seed=0, cf_images=2000, reader_steps=8000)


def _data(setting, key):
    if setting["scene"] == "pendulum":
        return pendulum_data(setting["size"])
    return flow_data(setting.get("rows", 8000), setting["size"], rng_key=key)


def train_reader(x, labels, *, rng_key, steps: int = 3000, hidden=(256, 128), progress=False):
    """A pixel reader: an MLP from images to standardized concept labels, fitted
    by least squares with Adam on the given (real) images. Returns ``read(x) ->
    labels`` in label units."""
    x = np.asarray(x, np.float32).reshape(len(x), -1)
    mean, std = labels.mean(0), labels.std(0)
    u = jnp.asarray((labels - mean) / std)
    net = MLP(x.shape[1], labels.shape[1], hidden=hidden, rngs=nnx.Rngs(0))
    graph, params = nnx.split(net)
    opt = optax.adam(optax.cosine_decay_schedule(2e-3, steps, alpha=0.05))

    def loss_fn(p, xb, ub):
        return jnp.mean((nnx.merge(graph, p)(xb) - ub) ** 2)

    def step(state, key, data):
        p, o = state
        xs, us = data
        idx = jax.random.randint(key, (128,), 0, xs.shape[0])
        loss, g = jax.value_and_grad(loss_fn)(p, xs[idx], us[idx])
        upd, o = opt.update(g, o, p)
        return (optax.apply_updates(p, upd), o), {"loss": loss}

    result = run_fit(
        step,
        (params, opt.init(params)),
        steps,
        rng_key=rng_key,
        data=(jnp.asarray(x), u),
        progress=progress,
        description="pixel reader",
    )
    trained = nnx.merge(graph, result.state[0])

    def read(images):
        flat = jnp.asarray(np.asarray(images, np.float32).reshape(len(images), -1))
        return np.asarray(trained(flat)) * std + mean

    return read


def _reader_data(train, key):
    """The reader's images: the real training images and as many renders of the
    scene with every concept drawn independently from its training marginal, so
    that it reads each concept off its own object, also in scenes (such as the
    intervened ones) where the concepts disagree with their mechanisms."""
    cols = [
        np.asarray(jax.random.permutation(jax.random.fold_in(key, j), train.labels[:, j]))
        for j in range(train.labels.shape[1])
    ]
    mixed = np.stack(cols, -1)
    x = np.concatenate([train.x, train.scene.render(mixed, train.size)])
    return x, np.concatenate([train.labels, mixed.astype(np.float32)])


def _corr(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.std() < 1e-12 or b.std() < 1e-12:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def evaluate(setting: dict, *, seed: int, cf_images: int, reader_steps: int, progress=False):
    """Fit CausalVAE on one data set of ``setting`` and score it."""
    key = jax.random.key(seed)
    k_data, k_split, k_fit, k_reader, k_cf, k_vals = jax.random.split(key, 6)
    data = _data(setting, k_data)
    train, test = data.split(k_split, 0.2)
    m = CausalVAE(data.names, decoder_parts=setting.get("decoder_parts"))
    t0 = time.perf_counter()
    m.fit(train.x, train.labels, rng_key=k_fit, steps=setting["steps"], progress=progress)
    fit_seconds = time.perf_counter() - t0
    z = m.encode(test.x)
    names = data.names
    label_corr = {c: abs(_corr(z[:, j], test.labels[:, j])) for j, c in enumerate(names)}
    learned = m.adjacency(binary=True)
    read = train_reader(*_reader_data(train, k_reader), rng_key=k_reader, steps=reader_steps)
    reader_corr = {c: _corr(read(test.x)[:, j], test.labels[:, j]) for j, c in enumerate(names)}
    targets = names if setting["interventions"] == "all" else setting["interventions"]
    rows = test.take(np.arange(min(cf_images, len(test.x))))
    cf_corr, cf_ceiling, moved = {}, {}, {}
    for t, c in enumerate(targets):
        j = names.index(c)
        values = np.asarray(
            jax.random.permutation(jax.random.fold_in(k_vals, t), rows.labels[:, j])
        )
        cf = m.counterfactual(rows.x, {c: values}, rng_key=jax.random.fold_in(k_cf, t))
        truth, truth_x = rows.counterfactual({c: values})
        seen, ceiling = read(np.asarray(cf["x"][0])), read(truth_x)
        cf_corr[c] = {k: _corr(seen[:, i], truth[:, i]) for i, k in enumerate(names)}
        cf_ceiling[c] = {k: _corr(ceiling[:, i], truth[:, i]) for i, k in enumerate(names)}
        moved[c] = sorted(data.scene.descendants(c))
    return dict(
        label_corr=label_corr,
        graph_shd=int(shd(learned, data.adjacency)),
        learned_graph=learned.tolist(),
        label_graph=None if m.label_graph is None else m.label_graph.adjacency.tolist(),
        cf_corr=cf_corr,
        cf_ceiling=cf_ceiling,
        descendants=moved,
        reader_corr=reader_corr,
        fit_seconds=fit_seconds,
        acyclicity=float(m.history["acyclicity"][-1]),
        image_size=int(setting["size"]),
    )


def run(*, quick: bool = True, seed: int | None = None, progress: bool = True, **overrides) -> dict:
    """Every data set of the mode; returns ``{name: scores, "config": ...,
    "wall_seconds": ...}``."""
    settings = QUICK if quick else FULL
    cfg = dict(QUICK_RUN if quick else FULL_RUN, **overrides)
    if seed is not None:
        cfg["seed"] = seed
    t0 = time.perf_counter()
    results = {}
    for name, setting in settings.items():
        row = evaluate(
            setting,
            seed=cfg["seed"],
            cf_images=cfg["cf_images"],
            reader_steps=cfg["reader_steps"],
        )
        results[name] = dict(row, setting=dict(setting))
        if progress:
            worst = {c: round(min(v.values()), 3) for c, v in row["cf_corr"].items()}
            print(
                f"causal-vae {name}: graph_shd {row['graph_shd']} label_corr "
                f"{ {k: round(v, 3) for k, v in row['label_corr'].items()} } "
                f"worst cf_corr {worst} ({row['fit_seconds']:.1f} s)",
                flush=True,
            )
    results["config"] = dict(cfg, quick=quick)
    results["wall_seconds"] = time.perf_counter() - t0
    return results
