"""WGAN-GP training speed: probcausal vs the same loop in PyTorch.

The model is the confounded SCM of the adversarial tests: three MLP generators
(two hidden layers of 32) with a shared confounder noise, one critic (two hidden
layers of 64 with layer norm) on the joint (x, y, z); batch 256, n_critic 5,
gradient penalty 10, Adam. A step is n_critic critic updates and one generator
update. probcausal runs its own ``WGANGP.step`` in the jitted ``lax.scan`` chunks
``fit`` uses; compilation is timed apart from the steady state. PyTorch (CPU)
runs in its own virtual environment (``.bench/torch``, created by ``make bench``)
in a subprocess on the same machine, in the same run.

Run: ``make bench`` or ``python benchmarks/adversarial.py [--gpu] [--no-torch]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))


def probcausal_steps_per_second(batch, n_critic, chunk, repeats):
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from flax import nnx

    import probcausal as pc
    from tests.infer.test_adversarial import _confounded

    rngs = nnx.Rngs(0)
    gx = pc.nn.MLPGenerator(2, 1, hidden=(32, 32), rngs=rngs)
    gz = pc.nn.MLPGenerator(1, 1, hidden=(32, 32), rngs=rngs)
    gy = pc.nn.MLPGenerator(3, 1, hidden=(32, 32), rngs=rngs)

    def model():
        c = numpyro.sample("c", dist.Normal(jnp.zeros(2), 1.0).to_event(1))
        x = pc.nn.sample("x", gx, c, event_dims=(1,))
        z = pc.nn.sample("z", gz, x)
        pc.nn.sample("y", gy, z, c, event_dims=(0, 1))

    gan = pc.infer.WGANGP(
        model,
        {("x", "y", "z"): pc.nn.Critic(3, hidden=(64, 64), rngs=nnx.Rngs(1))},
        n_critic=n_critic,
        batch_size=batch,
    )
    data = gan.check_data(_confounded(jax.random.key(0), 20000))
    key = jax.random.key(1)

    @jax.jit
    def run_chunk(state, first):
        def body(s, i):
            return gan.step(s, jax.random.fold_in(key, i), data)

        return jax.lax.scan(body, state, first + jnp.arange(chunk))

    state = gan.init()
    t0 = time.perf_counter()
    state, metrics = jax.block_until_ready(run_chunk(state, 0))
    first = time.perf_counter() - t0
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        state, metrics = jax.block_until_ready(run_chunk(state, (r + 1) * chunk))
        times.append(time.perf_counter() - t0)
    times.sort()
    steady = times[len(times) // 2]
    return {
        "steps_per_second": chunk / steady,
        "first_chunk_seconds": first,
        "compile_seconds": first - steady,
        "device": str(jax.devices()[0].device_kind),
        "jax": jax.__version__,
    }


def torch_steps_per_second(batch, n_critic, python, device="cpu"):
    if shutil.which(python) is None:
        return {"error": f"no PyTorch environment at {python}; run `make bench` to create it"}
    out = subprocess.run(
        [python, os.path.join(HERE, "_wgan_torch.py"), "--batch", str(batch),
         "--n-critic", str(n_critic), "--device", device],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--n-critic", type=int, default=5)
    p.add_argument("--chunk", type=int, default=100)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--gpu", action="store_true", help="run probcausal on the accelerator")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--torch-python", default=os.path.join(HERE, "..", ".bench/torch/bin/python"))
    p.add_argument("--torch-device", default="cpu", help="cpu, or cuda for a GPU comparison")
    p.add_argument("--json", help="also write the figures to this file")
    a = p.parse_args()
    if not a.gpu:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    ours = probcausal_steps_per_second(a.batch, a.n_critic, a.chunk, a.repeats)
    theirs = (
        None
        if a.no_torch
        else torch_steps_per_second(a.batch, a.n_critic, a.torch_python, a.torch_device)
    )
    print(f"WGAN-GP, batch {a.batch}, n_critic {a.n_critic} (steps per second, steady state)")
    print(f"  probcausal ({ours['device']}): {ours['steps_per_second']:8.1f}"
          f"   compile {ours['compile_seconds']:.2f} s")  # fmt: skip
    if theirs is not None and "steps_per_second" in theirs:
        print(f"  PyTorch {theirs['torch']} {theirs['device']} ({theirs['threads']} threads):"
              f" {theirs['steps_per_second']:8.1f}")  # fmt: skip
        ratio = ours["steps_per_second"] / theirs["steps_per_second"]
        print(f"  ratio probcausal / PyTorch: {ratio:.1f}x")
    elif theirs is not None:
        print("  PyTorch:", theirs["error"])
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"probcausal": ours, "pytorch": theirs, "batch": a.batch,
                       "n_critic": a.n_critic}, f, indent=2)  # fmt: skip


if __name__ == "__main__":
    main()
