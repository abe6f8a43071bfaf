"""Modular-DCM on a front-door SCM whose mediator is an image of a digit.

The ground truth, simulated in code with scikit-learn's handwritten digits:

- ``U ~ Bernoulli(1/2)`` is latent and confounds the digit class ``D`` and ``Y``;
- ``D | U``: 3 classes, ``P(D | U)`` below;
- ``C ~ Bernoulli(1/2)``: the colour of the ink;
- ``I``: an 8x8 RGB image of a handwritten digit ``K`` in colour ``C``, where
  ``K = D`` with probability 0.85 and one of the two other classes otherwise;
- ``Y | I, U``: binary, through the digit the image shows, ``P(Y = 1 | K, U)``.

So ``D -> I -> Y``, ``C -> I``, ``D <-> Y``: a front-door graph, where
``P(Y | do(D))`` is identifiable but differs from the confounded ``P(Y | D)``.
The conditional image generator ``P(I | D, C)`` is trained first (the
"pretrained model") and plugged into the Modular-DCM frozen; the other modules
are trained around it. The generator the quick run pretrains (seed 0) ships with
the package (``weights/digits_generator.npz``, written by
:func:`write_shipped_generator`): a run with the same pretraining configuration
loads it instead of training it again; ``train=True`` (``--train``) trains it.

Run ``probcausal experiment modular-dcm [--quick] [--train] --out results.json``.
"""

from __future__ import annotations

import json
import time
from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from probcausal.identification import ADMG
from probcausal.models.modular_dcm import Discrete, Image, ModularDCM

__all__ = [
    "GRAPH",
    "VARIABLES",
    "digit_images",
    "simulate",
    "true_interventional",
    "true_observational",
    "true_ett",
    "pretrain_image_generator",
    "shipped_image_generator",
    "write_shipped_generator",
    "digit_classifier",
    "train",
    "run",
]

CLASSES = 3
P_U = np.array([0.5, 0.5])
P_D = np.array([[0.85, 0.10, 0.05], [0.05, 0.35, 0.60]])  # P(D | U)
FLIP = 0.15
P_K = np.full((CLASSES, CLASSES), FLIP / 2) + np.eye(CLASSES) * (1 - 1.5 * FLIP)  # P(K | D)
P_Y = np.array([[0.05, 0.75], [0.15, 0.85], [0.30, 0.95]])  # P(Y = 1 | K, U)
COLOURS = np.array([[1.0, 0.45, 0.1], [0.15, 0.55, 1.0]], dtype=np.float32)

GRAPH = ADMG(directed=[("D", "I"), ("C", "I"), ("I", "Y")], bidirected=[("D", "Y")])
VARIABLES = {"D": Discrete(CLASSES), "C": Discrete(2), "I": Image((8, 8, 3)), "Y": Discrete(2)}

QUICK = dict(
    units=20_000,
    pretrain_steps=6000,
    steps=3000,
    batch_size=256,
    pack=4,
    draws=10_000,
    learning_rate=1e-3,
    noise_dim=8,
    confounder_dim=4,
)
FULL = dict(QUICK, units=50_000, steps=12_000, batch_size=512, draws=50_000, learning_rate=5e-4)


def digit_images():
    """Grey images (N, 8, 8) in [0, 1] and labels of the digits 0 to 2 of
    scikit-learn's handwritten digits (shipped with scikit-learn: no download)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - scikit-learn is in the extras
        raise ImportError(
            "the digits experiment needs scikit-learn: pip install 'probcausal[experiments]'"
        ) from e
    digits = load_digits()
    keep = digits.target < CLASSES
    return (digits.images[keep] / 16.0).astype(np.float32), digits.target[keep]


def colourize(grey, colour):
    """Grey images ``(..., 8, 8)`` and colour labels ``(...)`` -> RGB ``(..., 8, 8, 3)``."""
    return grey[..., None] * COLOURS[np.asarray(colour)][..., None, None, :]


def simulate(key, n, digits=None):
    """``n`` units of the ground-truth SCM: ``({"D", "C", "I", "Y"}, latents)``
    with integer labels, RGB images, and the latents ``{"U", "K"}``."""
    grey, labels = digit_images() if digits is None else digits
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    u = rng.binomial(1, P_U[1], n)
    d = (rng.random(n)[:, None] > np.cumsum(P_D[u], 1)).sum(1)
    c = rng.binomial(1, 0.5, n)
    k = (rng.random(n)[:, None] > np.cumsum(P_K[d], 1)).sum(1)
    pick = np.empty(n, dtype=int)
    for cls in range(CLASSES):
        pool = np.flatnonzero(labels == cls)
        pick[k == cls] = rng.choice(pool, (k == cls).sum())
    image = colourize(grey[pick], c)
    y = rng.binomial(1, P_Y[k, u])
    return {"D": d, "C": c, "I": image, "Y": y}, {"U": u, "K": k}


def true_interventional():
    """``P(Y = 1 | do(D = d))`` for each d, by enumeration of the SCM."""
    return P_K @ (P_Y @ P_U)


def _p_u_given_d():
    """``P(U = u | D = d)`` as a (u, d) table."""
    return P_D * P_U[:, None] / (P_U @ P_D)


def true_observational():
    """``P(D = d)`` and ``P(Y = 1 | D = d)``, by enumeration."""
    p_u_d = _p_u_given_d()
    p_y = np.array(
        [sum(p_u_d[u, d] * P_K[d] @ P_Y[:, u] for u in range(2)) for d in range(CLASSES)]
    )
    return P_U @ P_D, p_y


def true_ett():
    """``P(Y_{D=d'} = 1 | D = d)`` as a (d, d') table: the effect of treatment on
    the treated, a counterfactual (identifiable in the front-door graph)."""
    p_u_d = _p_u_given_d()
    return np.array(
        [
            [sum(p_u_d[u, d] * P_K[e] @ P_Y[:, u] for u in range(2)) for e in range(CLASSES)]
            for d in range(CLASSES)
        ]
    )


def pretrain_image_generator(
    data, *, steps, rng_key, batch_size=256, pack=1, noise_dim=8, learning_rate=5e-4, progress=True
):
    """Train the conditional image generator ``P(I | C, D)`` on the data and return
    it (an NNX module ``I = G([C, D] one-hot, u)``, ``u ~ N(0, I)``): a conditional
    WGAN-GP, itself the Modular-DCM of the image given its parents."""
    dcm = _generator_dcm(noise_dim)
    dcm.fit(
        {v: data[v] for v in ("D", "C", "I")},
        steps=steps,
        rng_key=rng_key,
        train=["I"],
        batch_size=batch_size,
        pack=pack,
        learning_rate=learning_rate,
        progress=progress,
    )
    return dcm.generator("I")


def _generator_dcm(noise_dim: int) -> ModularDCM:
    """The Modular-DCM of the image given its parents, whose one module is the
    image generator."""
    graph = ADMG(directed=[("D", "I"), ("C", "I")])
    return ModularDCM(
        graph,
        {v: VARIABLES[v] for v in ("D", "C", "I")},
        noise_dim=noise_dim,
        hidden=(256, 256),
        image_networks="mlp",
        seed=1,
    )


_SHIPPED = "digits_generator.npz"
_PRETRAIN_KEYS = ("units", "pretrain_steps", "batch_size", "pack", "noise_dim")


def _pretrain_config(cfg: dict, seed: int) -> dict:
    """What the pretrained generator depends on: the data and its training."""
    return {"seed": seed, **{k: cfg[k] for k in _PRETRAIN_KEYS}}


def shipped_image_generator(config: dict | None = None) -> nnx.Module | None:
    """The shipped pretrained image generator, or ``None`` when it was trained
    with another configuration than ``config`` (:func:`_pretrain_config`; default
    the quick run's, seed 0) or is not installed."""
    config = _pretrain_config(QUICK, 0) if config is None else config
    path = resources.files("probcausal.experiments") / "weights" / _SHIPPED
    if not path.is_file():
        return None
    with path.open("rb") as f, np.load(f) as saved:
        if json.loads(str(saved["config"])) != config:
            return None
        gen = _generator_dcm(config["noise_dim"]).generator("I")
        graphdef, state = nnx.split(gen)
        leaves, treedef = jax.tree.flatten(state)
        loaded = [saved[f"leaf{i}"] for i in range(len(leaves))]
    if [a.shape for a in loaded] != [a.shape for a in leaves]:
        raise ValueError(f"the shipped {_SHIPPED} does not fit the image generator")
    return nnx.merge(graphdef, jax.tree.unflatten(treedef, [jnp.asarray(a) for a in loaded]))


def write_shipped_generator(path: str, *, progress: bool = True) -> dict:
    """Pretrain the quick run's image generator (seed 0) and write it to ``path``
    (the package's ``weights/digits_generator.npz``); returns its configuration."""
    config = _pretrain_config(QUICK, 0)
    k_pre, _, _, data = _inputs(QUICK, 0)
    generator = _pretrain(QUICK, data, k_pre, progress)
    leaves = jax.tree.leaves(nnx.state(generator))
    arrays = {f"leaf{i}": np.asarray(a) for i, a in enumerate(leaves)}
    np.savez_compressed(path, config=json.dumps(config), **arrays)
    return config


def _pretrain(cfg: dict, data, rng_key, progress: bool) -> nnx.Module:
    """:func:`pretrain_image_generator` with the run's configuration."""
    return pretrain_image_generator(
        data,
        steps=cfg["pretrain_steps"],
        rng_key=rng_key,
        batch_size=cfg["batch_size"],
        pack=cfg["pack"],
        progress=progress,
    )


def _inputs(cfg: dict, seed: int):
    """The keys of pretraining and fitting, the digits and the simulated data."""
    k_data, k_pre, k_fit = jax.random.split(jax.random.key(seed), 3)
    digits = digit_images()
    data, _ = simulate(k_data, cfg["units"], digits)
    return k_pre, k_fit, digits, data


def digit_classifier(digits=None):
    """Logistic regression of the digit class, fitted on the real digits in both
    colours. Returns ``probabilities(images (n, 8, 8, 3)) -> (n, 3)``, a JAX
    function (differentiable, so critics can read images through it)."""
    from sklearn.linear_model import LogisticRegression

    grey, labels = digit_images() if digits is None else digits
    x = np.concatenate([colourize(grey, 0), colourize(grey, 1)])
    y = np.concatenate([labels, labels])
    clf = LogisticRegression(max_iter=2000).fit(x.reshape(len(x), -1), y)
    w, b = jnp.asarray(clf.coef_.T, jnp.float32), jnp.asarray(clf.intercept_, jnp.float32)
    return lambda images: jax.nn.softmax(images.reshape(images.shape[0], -1) @ w + b, -1)


def _nan_to_none(table):
    return [[None if np.isnan(x) else float(x) for x in row] for row in np.asarray(table)]


def _state_bytes(module):
    return [np.asarray(a).tobytes() for a in jax.tree.leaves(nnx.state(module))]


def train(
    *,
    quick: bool = True,
    seed: int = 0,
    progress: bool = True,
    train_generator: bool = False,
    **overrides,
) -> dict:
    """Simulate the data, pretrain the image generator (or load the shipped one,
    when it was pretrained with this configuration and ``train_generator`` is
    false), fit the Modular-DCM around it (frozen). Returns a dict with ``dcm``,
    ``data``, ``digits``, ``classify``, ``history``, ``pretrained_unchanged``,
    ``config`` and ``timings``."""
    cfg = dict(QUICK if quick else FULL, **overrides)
    k_pre, k_fit, digits, data = _inputs(cfg, seed)
    timings = {}

    t0 = time.perf_counter()
    shipped = None if train_generator else shipped_image_generator(_pretrain_config(cfg, seed))
    generator = shipped if shipped is not None else _pretrain(cfg, data, k_pre, progress)
    timings["pretrain_seconds"] = time.perf_counter() - t0
    timings["image_generator"] = "shipped" if shipped is not None else "trained"
    before = _state_bytes(generator)

    classify = digit_classifier(digits)
    dcm = ModularDCM(
        GRAPH,
        VARIABLES,
        noise_dim=cfg["noise_dim"],
        confounder_dim=cfg["confounder_dim"],
        image_networks="mlp",
        seed=seed,
    )
    t0 = time.perf_counter()
    history = dcm.fit(
        data,
        pretrained={"I": generator},
        steps=cfg["steps"],
        rng_key=k_fit,
        batch_size=cfg["batch_size"],
        pack=cfg["pack"],
        critic_features={"I": classify},
        learning_rate=cfg["learning_rate"],
        progress=progress,
    )
    timings["fit_seconds"] = time.perf_counter() - t0
    unchanged = before == _state_bytes(generator) == _state_bytes(dcm.generator("I"))
    return dict(
        dcm=dcm,
        data=data,
        digits=digits,
        classify=classify,
        history=history,
        pretrained_unchanged=unchanged,
        config=dict(cfg, quick=quick, seed=seed),
        timings=timings,
    )


_train = train  # in `run`, the name `train` is the command line's --train flag


def run(
    *, quick: bool = True, seed: int = 0, progress: bool = True, train: bool = False, **overrides
) -> dict:
    """Run the experiment; returns the results (see the module docstring).
    ``train=True`` pretrains the image generator here, not loading the shipped one."""
    trained = _train(quick=quick, seed=seed, progress=progress, train_generator=train, **overrides)
    dcm, data, classify = trained["dcm"], trained["data"], trained["classify"]
    cfg, timings, history = trained["config"], trained["timings"], trained["history"]
    unchanged = trained["pretrained_unchanged"]
    k_do, k_obs, k_cf = jax.random.split(jax.random.key(seed + 1), 3)

    t0 = time.perf_counter()
    truth = true_interventional()
    naive = np.array([data["Y"][data["D"] == d].mean() for d in range(CLASSES)])
    learned, correct = [], []
    for d in range(CLASSES):
        draws = dcm.interventional(
            {"D": d},
            num_samples=cfg["draws"],
            rng_key=jax.random.fold_in(k_do, d),
            outcome=["I", "Y"],
        )
        learned.append(float(jnp.mean(draws["Y"])))
        labels = np.asarray(jnp.argmax(classify(draws["I"]), -1))
        correct.append(float(np.mean(labels == d)))
    learned = np.array(learned)

    obs = dcm.interventional({}, num_samples=cfg["draws"], rng_key=k_obs, outcome=["D", "Y"])

    def joint(d, y):  # the empirical P(D, Y)
        counts = np.zeros((CLASSES, 2))
        np.add.at(counts, (np.asarray(d), np.asarray(y)), 1)
        return counts / counts.sum()

    tv_joint = 0.5 * np.abs(joint(obs["D"], obs["Y"]) - joint(data["D"], data["Y"])).sum()

    # the effect of treatment on the treated, P(Y_{D=e} = 1 | D = d): counterfactual
    ett = np.full((CLASSES, CLASSES), np.nan)
    for d in range(CLASSES):
        for e in range(CLASSES):
            if d != e:
                cf = dcm.counterfactual(
                    {"D": d},
                    {"D": e},
                    num_samples=cfg["draws"] // 5,
                    rng_key=jax.random.fold_in(k_cf, 3 * d + e),
                )
                ett[d, e] = float(jnp.mean(cf["Y"]))
    off = ~np.eye(CLASSES, dtype=bool)
    ett_truth = true_ett()
    timings["evaluate_seconds"] = time.perf_counter() - t0

    return {
        "tv_interventional": float(np.abs(learned - truth).mean()),
        "tv_naive": float(np.abs(naive - truth).mean()),
        "tv_joint_observational": float(tv_joint),
        "image_class_accuracy": float(np.mean(correct)),
        "pretrained_unchanged": bool(unchanged),
        "ett_error": float(np.abs(ett - ett_truth)[off].mean()),
        "p_y_do_d": {"learned": learned.tolist(), "true": truth.tolist()},
        "ett": {"learned": _nan_to_none(ett), "true": _nan_to_none(ett_truth)},
        "p_y_given_d": {"data": naive.tolist(), "true": true_observational()[1].tolist()},
        "image_class_accuracy_per_class": correct,
        "final_wasserstein": {
            "+".join(map(str, m)): float(np.mean(h["wasserstein"][-100:]))
            for m, h in history.items()
        },
        "module_steps_per_second": {
            "+".join(map(str, m)): t["steps_per_second"] for m, t in dcm.timings.items()
        },
        "config": cfg,
        "timings": timings,
    }
