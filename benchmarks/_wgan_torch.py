"""The WGAN-GP loop of benchmarks/adversarial.py written in PyTorch (CPU).

Same model (three MLP generators with a shared confounder noise), same critic
(two hidden layers with layer norm), same batch, n_critic, gradient penalty and
Adam settings. Prints one JSON line: steps per second in the steady state.
Run by benchmarks/adversarial.py inside its own virtual environment.
"""

import argparse
import json
import time

import numpy as np
import torch
from torch import nn


def mlp(i, o, hidden):
    layers, sizes = [], [i, *hidden, o]
    for a, b in zip(sizes[:-2], sizes[1:-1], strict=True):
        layers += [nn.Linear(a, b), nn.LeakyReLU(0.01)]
    return nn.Sequential(*layers, nn.Linear(sizes[-2], sizes[-1]))


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.gx, self.gz, self.gy = mlp(3, 1, (32, 32)), mlp(2, 1, (32, 32)), mlp(4, 1, (32, 32))

    def forward(self, n):
        dev = self.gx[0].weight.device
        c = torch.randn(n, 2, device=dev)
        x = self.gx(torch.cat([c, torch.randn(n, 1, device=dev)], -1))
        z = self.gz(torch.cat([x, torch.randn(n, 1, device=dev)], -1))
        y = self.gy(torch.cat([z, c, torch.randn(n, 1, device=dev)], -1))
        return torch.cat([x, y, z], -1)


class Critic(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(3, 64), nn.LayerNorm(64), nn.LeakyReLU(0.01),
            nn.Linear(64, 64), nn.LayerNorm(64), nn.LeakyReLU(0.01),
            nn.Linear(64, 1),
        )  # fmt: skip

    def forward(self, v):
        return self.net(v)[:, 0]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--n-critic", type=int, default=5)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    u = rng.standard_normal(20000)
    x = u + rng.standard_normal(20000)
    z = np.tanh(x) + 0.3 * rng.standard_normal(20000)
    y = z + 1.5 * u + 0.5 * rng.standard_normal(20000)
    dev = torch.device(a.device)
    data = torch.tensor(np.stack([x, y, z], -1), dtype=torch.float32, device=dev)
    gen, critic = Model().to(dev), Critic().to(dev)
    opt_g = torch.optim.Adam(gen.parameters(), lr=1e-4, betas=(0.5, 0.9))
    opt_c = torch.optim.Adam(critic.parameters(), lr=1e-4, betas=(0.5, 0.9))

    def step():
        for _ in range(a.n_critic):
            real = data[torch.randint(0, data.shape[0], (a.batch,), device=dev)]
            with torch.no_grad():
                fake = gen(a.batch)
            eps = torch.rand(a.batch, 1, device=dev)
            mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
            grad = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)[0]
            gp = ((grad.pow(2).sum(-1) + 1e-12).sqrt() - 1).pow(2).mean()
            loss = critic(fake).mean() - critic(real).mean() + 10.0 * gp
            opt_c.zero_grad()
            loss.backward()
            opt_c.step()
        g_loss = -critic(gen(a.batch)).mean()
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        return loss.detach()

    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        last = step()
    last = float(last)  # waits for the device
    seconds = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "steps_per_second": a.steps / seconds,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "device": a.device,
                "final_critic_loss": last,
            }
        )
    )


if __name__ == "__main__":
    main()
