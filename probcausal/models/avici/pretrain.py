"""Train the shipped AVICI models: ``python -m probcausal.models.avici.pretrain``.

``linear`` is trained on linear SCMs, ``nonlinear`` on random-Fourier-feature
(GP-like) SCMs with additive and heteroscedastic noise; both on Erdős–Rényi and
scale-free graphs with 10 variables, Gaussian noise (ER) and Laplace noise (SF),
100 rows of which up to 30 are single-node interventions. The held-out domains of
``probcausal experiment avici`` change the graph prior (``sf_in``), the noise
(Cauchy) and the size (20 variables).

``--init NAME_OR_FILE`` continues training a shipped or saved network; the saved
record then lists every stage under ``history``. The shipped networks were trained
in three stages (docs/avici.md gives the commands).
"""

from __future__ import annotations

import argparse
import time

import jax

from probcausal.data.scm import Domain
from probcausal.models.avici.io import PRETRAINED, load_avici, pretrained, save_avici
from probcausal.models.avici.train import train_avici

__all__ = ["NETWORK", "continued_info", "training_domains"]

#: the architecture of the shipped models
NETWORK = {"dim": 32, "layers": 2, "heads": 2}


def training_domains(kind: str, num_variables=(10,)) -> list[Domain]:
    """The mixture of domains a shipped model is trained on (one sub-batch each)."""
    if kind not in ("linear", "nonlinear"):
        raise ValueError(f"kind must be 'linear' or 'nonlinear', got {kind!r}")
    base = Domain(
        mechanism="linear" if kind == "linear" else "rff",
        num_observations=70,
        num_interventions=30,
        intervention_fraction=(0.0, 1.0),
    )
    domains = []
    for d in num_variables:
        for graph, noise in (("er", "gaussian"), ("sf", "laplace")):
            hetero = kind == "nonlinear" and noise == "laplace"
            domains.append(
                base.replace(num_variables=d, graph=graph, noise=noise, heteroscedastic=hetero)
            )
    return domains


def continued_info(previous: dict, info: dict) -> dict:
    """The record of a network trained in stages: ``info`` of the new stage, with
    ``history`` listing every stage (those of ``previous``, a saved record, then
    this one) and ``steps`` and ``seconds`` summed over them.

    >>> first = {"steps": 6, "seconds": 2.0}
    >>> second = continued_info(first, {"steps": 4, "seconds": 1.0})
    >>> [stage["steps"] for stage in second["history"]], second["steps"]
    ([6, 4], 10)
    >>> third = continued_info(second, {"steps": 2, "seconds": 1.0})
    >>> [stage["steps"] for stage in third["history"]], third["seconds"]
    ([6, 4, 2], 4.0)
    """
    if not previous:
        return info
    stages = [*previous.get("history", [previous]), dict(info)]
    return {
        **info,
        "history": stages,
        "steps": sum(int(e.get("steps", 0)) for e in stages),
        "seconds": round(sum(float(e.get("seconds", 0.0)) for e in stages), 1),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("linear", "nonlinear"))
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=8, help="data sets per domain per step")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="default: <kind>.npz")
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument(
        "--init",
        default=None,
        help="continue training a network: a shipped name (linear, nonlinear) or a .npz file",
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    domains = training_domains(args.kind)
    init, previous = None, {}
    if args.init is not None:
        load = pretrained if args.init in PRETRAINED else load_avici
        init, previous = load(args.init)
    start = time.perf_counter()
    net, result = train_avici(
        domains,
        args.steps,
        rng_key=jax.random.key(args.seed),
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_steps=min(500, args.steps // 10),
        progress=not args.no_progress,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=500 if args.checkpoint_dir else None,
        resume=args.resume,
        net=init,
        **({} if init is not None else NETWORK),
    )
    seconds = time.perf_counter() - start
    ce = result.metrics["cross_entropy"]
    info = {
        "kind": args.kind,
        "steps": args.steps,
        "batch_size_per_domain": args.batch_size,
        "domains": [repr(d) for d in domains],
        "seconds": round(seconds, 1),
        "device": jax.devices()[0].device_kind,
        "final_cross_entropy": float(ce[-500:].mean()),
        "seed": args.seed,
        "learning_rate": args.learning_rate,
    }
    info = continued_info(previous, info)
    save_avici(net, args.out or f"{args.kind}.npz", info)
    print(
        f"{args.kind}: {args.steps} steps in {seconds:.0f} s on {info['device']}, "
        f"cross-entropy {ce[:100].mean():.4f} -> {info['final_cross_entropy']:.4f}, "
        f"compile {result.compile_seconds:.0f} s, {result.steps_per_second} steps/s"
    )


if __name__ == "__main__":
    main()
