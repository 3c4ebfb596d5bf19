"""Stage-1 trainer throughput against an independent plain fp32 PyTorch loop of the same network.

    python bench/train_throughput.py [--steps 300] [--repeats 2] [--arch conv64|mlp] [--batch 64] [--threads 1]
    python bench/train_throughput.py --device cuda --batch 256 --steps 1000    # GPU: fp16 AMP vs plain fp32

The reference is written here from scratch (its own ``nn.Sequential`` conv64 or MLP, Bernoulli β-VAE loss, Adam),
so it shares no code with darla: it is what a user would write by hand, in fp32. The darla side is the stage-1
trainer with its defaults (bf16 autocast on CPUs with native bf16, channels-last conv, logging and checkpoints
on their normal schedule). Both run in this process, interleaved (A B A B …) so machine noise hits both; the best
images/s of each is compared. Prints darla/plain (target ≥ 1.7 on a CPU with native bf16), and the trainer
with ``amp=false`` as a third row, so the fp32 cost of darla's own bookkeeping is visible too.

On CUDA (``--device cuda``) both loops keep the frame set on the GPU (darla's trainer does; a plain loop that
copied every batch from host memory would be measuring the bus), darla autocasts to fp16 with gradient scaling,
and the clock stops only after ``torch.cuda.synchronize`` so queued kernels are counted. ``bench/gpu_check.py``
imports these loops.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vision.data.dsprites import DSprites
from vision.data.frames import FrameStore
from vision.models import ModelConfig, build_model
from vision.runtime import autocast_dtype, resolve_device
from vision.train import TrainConfig, train

LATENTS, BETA, LR = 10, 4.0, 1e-4


def plain_networks(arch: str, hidden: int) -> tuple[nn.Module, nn.Module]:
    """Encoder and decoder written out by hand: conv64 (Burgess/disentanglement_lib) or a two-layer MLP."""
    if arch == "conv64":
        enc = nn.Sequential(
            nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(), nn.Conv2d(64, 64, 4, 2, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(1024, hidden), nn.ReLU(), nn.Linear(hidden, 2 * LATENTS))
        dec = nn.Sequential(
            nn.Linear(LATENTS, hidden), nn.ReLU(), nn.Linear(hidden, 1024), nn.ReLU(), nn.Unflatten(1, (64, 4, 4)),
            nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1))
    else:
        enc = nn.Sequential(nn.Flatten(), nn.Linear(4096, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                            nn.Linear(hidden, 2 * LATENTS))
        dec = nn.Sequential(nn.Linear(LATENTS, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                            nn.Linear(hidden, 4096), nn.Unflatten(1, (1, 64, 64)))
    return enc, dec


def dsprites_store(n: int = 20_000) -> FrameStore:
    """``n`` procedural dSprites frames (seed 0) with their factors: the benchmark's training set."""
    ds = DSprites()
    f = ds.sample_factors(n, np.random.default_rng(0))
    return FrameStore(ds.render(f), f, ds.factor_names, ds.factor_sizes)


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA kernels, so a timer read afterwards counts them (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_loop(frames: np.ndarray, steps: int, batch: int, arch: str, hidden: int, device: str = "cpu") -> float:
    """The reference: a hand-written fp32 β-VAE training loop (on CPU unless ``device`` says otherwise). Returns images/s."""
    dev = torch.device(device)
    torch.manual_seed(0)
    enc, dec = plain_networks(arch, hidden)
    enc, dec = enc.to(dev), dec.to(dev)
    opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=LR)
    data = torch.from_numpy(frames).to(dev)  # a no-op on CPU; on CUDA the set moves once, as darla's does
    g = torch.Generator().manual_seed(0)
    synchronize(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(len(data), (batch,), generator=g).to(dev)
        x = data[idx].float().div(255).permute(0, 3, 1, 2)
        mu, logvar = enc(x).chunk(2, 1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        recon = F.binary_cross_entropy_with_logits(dec(z), x, reduction="none").flatten(1).sum(1).mean()
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()
        loss = recon + BETA * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    synchronize(dev)
    return steps * batch / (time.perf_counter() - t0)


def darla_loop(store: FrameStore, steps: int, batch: int, arch: str, hidden: int, amp: bool,
               device: str = "cpu") -> float:
    """The darla stage-1 trainer with its default logging/checkpoint schedule. Returns images/s."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_dim=LATENTS, beta=BETA, arch=arch, hidden=hidden), (1, 64, 64), len(store))
    cfg = TrainConfig(steps=steps, batch_size=batch, lr=LR, device=device, amp=amp)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        train(model, store, cfg, d, progress=False)
        synchronize(torch.device(device))
        return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--arch", default="conv64", choices=("conv64", "mlp"))
    p.add_argument("--hidden", type=int, default=0, help="dense width (default: 256 for conv64, 1200 for mlp)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for both loops")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    hidden = a.hidden or (256 if a.arch == "conv64" else 1200)
    store = dsprites_store()
    if device.type == "cuda":  # CUDA context, cuDNN autotuning and allocator warm-up stay out of the first timing
        plain_loop(store.frames, 20, a.batch, a.arch, hidden, str(device))
    rows: dict[str, list[float]] = {"plain fp32 loop": [], "darla (default)": [], "darla amp=false": []}
    for _ in range(a.repeats):
        rows["plain fp32 loop"].append(plain_loop(store.frames, a.steps, a.batch, a.arch, hidden, str(device)))
        rows["darla (default)"].append(darla_loop(store, a.steps, a.batch, a.arch, hidden, amp=True, device=str(device)))
        rows["darla amp=false"].append(darla_loop(store, a.steps, a.batch, a.arch, hidden, amp=False, device=str(device)))
    amp = autocast_dtype(device)
    print(f"{device}, torch threads {torch.get_num_threads()}, {a.arch} (hidden {hidden}), {a.steps} steps × batch {a.batch}, "
          f"{a.repeats} repeats; darla's autocast dtype here: {amp}")
    for name, v in rows.items():
        print(f"{name:17s}: {max(v):8.0f} images/s  (runs: {', '.join(f'{x:.0f}' for x in v)})")
    base = max(rows["plain fp32 loop"])
    target = "(target >= 1.7 with native bf16)" if device.type == "cpu" else "(fp16 autocast + gradient scaling)"
    print(f"ratio darla/plain          : {max(rows['darla (default)']) / base:.3f}  {target}")
    print(f"ratio darla amp=false/plain: {max(rows['darla amp=false']) / base:.3f}")


if __name__ == "__main__":
    main()
