"""Modular-DCM training speed: WGAN-GP steps per second of each module.

Two models:

- ``front-door``: the discrete front-door SCM of the tests (D with 3 classes,
  binary M and Y, D <-> Y), MLP generators of two hidden layers of 32;
- ``digits``: the digits experiment (``probcausal experiment modular-dcm``): the
  frozen 8x8 RGB image generator inside the {D, Y} module, critics packed by 4
  and reading the image through a classifier.

Each module is fitted alone for ``--steps`` steps; the training loop times its
jitted chunks of 100 steps: the first (jit compilation included) apart, the
steady state over the others. Batch 256, n_critic 5; a step is 5 critic updates
and one generator update.

Run: ``python benchmarks/modular_dcm.py [--steps 600] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))


def _measure(name, module, make, data, steps, **kw):
    import jax

    dcm = make()
    dcm.fit(data, steps=steps, rng_key=jax.random.key(0), progress=False, train=[module[0]], **kw)
    (timing,) = dcm.timings.values()
    row = {"model": name, "module": "+".join(module), **timing}
    print(
        f"{name:11s} module {row['module']:4s} {row['steps_per_second']:8.1f} steps/s  "
        f"compile {row['compile_seconds']:5.1f} s"
    )
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)

    import jax

    from probcausal.experiments import modular_dcm as ex
    from probcausal.models.modular_dcm import Discrete, ModularDCM
    from tests.models.test_modular_dcm import FRONT_DOOR, _simulate

    device = jax.devices()[0]
    print(f"device: {device.device_kind} ({jax.default_backend()})")
    rows = []
    fd_vars = {"D": Discrete(3), "M": Discrete(2), "Y": Discrete(2)}
    for module in (("M",), ("D", "Y")):
        rows.append(
            _measure(
                "front-door",
                module,
                lambda: ModularDCM(FRONT_DOOR, fd_vars, hidden=(32, 32)),
                _simulate(jax.random.key(0), 20000),
                args.steps,
            )
        )
    data, _ = ex.simulate(jax.random.key(0), 20000)
    generator = ex.pretrain_image_generator(
        data, steps=20, rng_key=jax.random.key(1), pack=4, progress=False
    )
    classify = ex.digit_classifier()
    rows.append(
        _measure(
            "digits",
            ("D", "Y"),
            lambda: ModularDCM(ex.GRAPH, ex.VARIABLES, noise_dim=8, image_networks="mlp"),
            data,
            args.steps,
            pretrained={"I": generator},
            pack=4,
            critic_features={"I": classify},
        )
    )
    result = {
        "device": f"{device.device_kind} ({jax.default_backend()})",
        "batch_size": 256,
        "n_critic": 5,
        "rows": rows,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
