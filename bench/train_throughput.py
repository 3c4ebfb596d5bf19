"""Stage-1 trainer throughput vs a plain PyTorch loop with the identical network, loss, batch and optimizer.

    python bench/train_throughput.py [--steps 300] [--repeats 2] [--family beta_vae] [--device auto]

Both loops run in this process, interleaved (A B A B …) so machine noise hits both; the best images/s of each
is compared. Prints darla/plain (target ≥ 1.0 on CPU).
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

from vision.data.dsprites import DSprites
from vision.data.frames import FrameStore
from vision.models import ModelConfig, build_model
from vision.runtime import resolve_device
from vision.train import TrainConfig, train


def plain_loop(frames: np.ndarray, steps: int, batch: int, lr: float, device: torch.device, beta: float) -> float:
    """The reference: a hand-written β-VAE loop over the same conv64 network. Returns images/s."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_dim=10, beta=beta), (1, 64, 64)).to(device).train()
    enc, dec = model.encoder, model.decoder
    opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=lr)
    data = torch.from_numpy(frames).to(device)
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(len(data), (batch,), generator=g)
        x = data[idx.to(device)].float().div(255).permute(0, 3, 1, 2)
        mu, logvar = enc(x).chunk(2, 1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        recon = F.binary_cross_entropy_with_logits(dec(z), x, reduction="none").flatten(1).sum(1).mean()
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()
        loss = recon + beta * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def darla_loop(store: FrameStore, steps: int, batch: int, lr: float, device: torch.device, beta: float, family: str) -> float:
    """The darla trainer with its default logging/checkpoint schedule. Returns images/s."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(family=family, latent_dim=10, beta=beta), (1, 64, 64), len(store))
    cfg = TrainConfig(steps=steps, batch_size=batch, lr=lr, device=str(device))
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        train(model, store, cfg, d, progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--family", default="beta_vae")
    p.add_argument("--device", default="auto")
    a = p.parse_args()
    device = resolve_device(a.device)
    ds = DSprites()
    f = ds.sample_factors(20_000, np.random.default_rng(0))
    store = FrameStore(ds.render(f), f, ds.factor_names, ds.factor_sizes)
    plain, darla = [], []
    for _ in range(a.repeats):
        plain.append(plain_loop(store.frames, a.steps, a.batch, 1e-4, device, 4.0))
        darla.append(darla_loop(store, a.steps, a.batch, 1e-4, device, 4.0, a.family))
    print(f"device {device}, torch threads {torch.get_num_threads()}, {a.steps} steps × batch {a.batch}, {a.repeats} repeats")
    print(f"plain PyTorch loop : {max(plain):8.0f} images/s  (runs: {', '.join(f'{v:.0f}' for v in plain)})")
    print(f"darla trainer      : {max(darla):8.0f} images/s  (runs: {', '.join(f'{v:.0f}' for v in darla)})")
    print(f"ratio darla/plain  : {max(darla) / max(plain):.3f}  (target >= 1.0)")


if __name__ == "__main__":
    main()
