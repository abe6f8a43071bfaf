"""The ``probcausal`` command line: ``probcausal experiment NAME [--quick] --out FILE``."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

EXPERIMENTS = {
    "avici": "probcausal.experiments.avici",
    "biols": "probcausal.experiments.biols",
    "causal-vae": "probcausal.experiments.causal_vae",
    "modular-dcm": "probcausal.experiments.modular_dcm",
}


def _experiment(args) -> int:
    module = importlib.import_module(EXPERIMENTS[args.name])
    options = {"train": True} if args.train else {}
    if args.train and "train" not in module.run.__code__.co_varnames:
        raise SystemExit(f"experiment {args.name} has no --train option")
    results = module.run(quick=args.quick, seed=args.seed, progress=not args.no_progress, **options)
    text = json.dumps(results, indent=2, default=float)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
        print(f"results written to {args.out}", file=sys.stderr)
    else:
        print(text)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="probcausal", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    exp = commands.add_parser(
        "experiment",
        help="run a research-system experiment and write its results as JSON",
        description="Run a research-system experiment; --quick is the CPU-sized run.",
    )
    exp.add_argument("name", choices=sorted(EXPERIMENTS))
    exp.add_argument("--quick", action="store_true", help="small run (CPU, minutes)")
    exp.add_argument("--out", help="write the results to this JSON file (default: stdout)")
    exp.add_argument("--seed", type=int, default=0)
    exp.add_argument("--no-progress", action="store_true", help="no progress bars")
    exp.add_argument(
        "--train",
        action="store_true",
        help="train here what ships pretrained (avici: the networks; modular-dcm: "
        "the image generator) instead of loading it",
    )
    args = parser.parse_args(argv)
    return _experiment(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
