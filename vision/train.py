"""Stage-1 trainer: fits any model of the VAE family to a uint8 frame store.

Read top to bottom: set up device, data and optimizers; restore a checkpoint if the run directory has one; loop
over steps (sample a batch, one ``model.train_step``, log, checkpoint); save the final checkpoint.

Resuming restores parameters, optimizer state, the step count and every random-number state, so on CPU an
interrupted-and-resumed run ends with exactly the parameters of an uninterrupted one.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from vision.checkpoint import CHECKPOINT_NAME, read_checkpoint, save_checkpoint
from vision.data.frames import FrameStore
from vision.images import to_tensor
from vision.models.base import VAEBase
from vision.runtime import resolve_device, seed_everything
from vision.viz import reconstruction_grid, save_png, traversal_grid


@dataclass
class TrainConfig:
    """Optimisation and logging schedule of a stage-1 run."""

    steps: int = 100_000
    batch_size: int = 64
    lr: float = 1e-4
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # mixed precision, CUDA only
    log_every: int = 100  # scalars
    image_every: int = 2_000  # reconstructions and traversals
    ckpt_every: int = 2_000
    num_threads: int = 0  # torch CPU threads; 0 keeps torch's default

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "image_every", "ckpt_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name}: must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"train.lr: must be > 0, got {self.lr}")


TRAVERSAL_ROWS = 12  # the most informative latents (by KL) shown in traversal pictures


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    """Summary of a finished (or already finished) training run."""

    step: int
    terms: dict[str, float]
    kl_per_latent: list[float]
    seconds: float
    images_per_second: float
    resumed_from: int
    checkpoint: str
    extra: dict[str, Any] = field(default_factory=dict)


def kl_order(kl_per_latent: np.ndarray | list[float]) -> np.ndarray:
    """Latent indices sorted by decreasing KL (most informative first)."""
    return np.argsort(-np.asarray(kl_per_latent), kind="stable")


LATENT_STATS_IMAGES = 4096  # frames (evenly spread over the store) the latent statistics are fitted on


def train(
    model: VAEBase,
    store: FrameStore,
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    progress: bool = True,
    extra: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` on ``store`` for ``cfg.steps`` steps, resuming from ``run_dir/checkpoint.pt`` if present.

    Writes tensorboard events, reconstructions/traversals and atomic checkpoints into ``run_dir``. ``extra`` is
    stored in every checkpoint (the stage CLIs put the resolved config there).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / CHECKPOINT_NAME
    device = resolve_device(cfg.device)
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    seed_everything(cfg.seed)
    c, h, w = model.input_shape
    if store.observation_shape != (h, w, c):
        raise ValueError(f"frames: store images are {store.observation_shape} (H, W, C), the model expects {(h, w, c)}")

    # Data: uint8 on the device (on CUDA the whole set moves once; batches are indexed there).
    frames = torch.from_numpy(store.frames).to(device)
    sampler = torch.Generator(device="cpu").manual_seed(cfg.seed)
    model.to(device).train()
    optimizers = model.configure_optimizers(cfg.lr)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None

    start = 0
    if ckpt_path.exists():
        payload = read_checkpoint(ckpt_path, map_location=device)
        model.load_state_dict(payload["state_dict"])
        for name, opt in optimizers.items():
            opt.load_state_dict(payload["optimizers"][name])
        state = payload["extra"].get("rng", {})
        if "sampler" in state:
            sampler.set_state(state["sampler"])
            torch.set_rng_state(state["torch"])
            if device.type == "cuda" and "cuda" in state:
                torch.cuda.set_rng_state(state["cuda"], device)
        if scaler is not None and "scaler" in payload["extra"]:
            scaler.load_state_dict(payload["extra"]["scaler"])
        start = int(payload["step"])

    def checkpoint(step: int) -> None:
        rng = {"sampler": sampler.get_state(), "torch": torch.get_rng_state()}
        if device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(device)
        meta = {**(extra or {}), "rng": rng}
        if scaler is not None:
            meta["scaler"] = scaler.state_dict()
        save_checkpoint(ckpt_path, model, step, optimizers, meta)

    writer = SummaryWriter(str(run_dir / "tb"), purge_step=start if start else None)
    preview = store.frames[np.linspace(0, len(store) - 1, 8).astype(int)]
    terms: dict[str, float] = {}
    kl = torch.zeros(model.latent_dim)
    t0, n_images = time.perf_counter(), 0
    bar = tqdm(total=cfg.steps, initial=start, desc=f"stage1 {model.family}", disable=not progress, dynamic_ncols=True)
    try:
        for step in range(start, cfg.steps):
            idx = torch.randint(len(store), (cfg.batch_size,), generator=sampler)
            x = to_tensor(frames[idx.to(device)], device)
            out = model.train_step(x, step, optimizers, scaler=scaler, autocast=use_amp)
            if not torch.isfinite(out.loss):
                last = f"step {start}" if not ckpt_path.exists() else f"{ckpt_path}"
                raise TrainingDiverged(
                    f"loss is {out.loss.item()} at step {step} "
                    f"({', '.join(f'{k}={v.item():.4g}' for k, v in out.terms.items())}); "
                    f"stopped, last good checkpoint kept: {last}"
                )
            n_images += cfg.batch_size
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                terms = {k: float(v) for k, v in out.terms.items()}
                for k, v in terms.items():
                    writer.add_scalar(f"loss/{k}", v, done)
                if out.kl_per_latent is not None:
                    kl = out.kl_per_latent.float().cpu()
                    for j, v in enumerate(kl.tolist()):
                        writer.add_scalar(f"kl_per_latent/z{j}", v, done)
                writer.add_scalar("perf/images_per_second", n_images / (time.perf_counter() - t0), done)
                bar.set_postfix(loss=f"{terms['loss']:.1f}", kl=f"{terms.get('kl', 0.0):.2f}")
            if done % cfg.image_every == 0 or done == cfg.steps:
                writer.add_image("reconstructions", reconstruction_grid(model, preview), done, dataformats="HWC")
                writer.add_image("traversals", traversal_grid(model, preview[0], kl_order(kl), num_latents=TRAVERSAL_ROWS), done, dataformats="HWC")
            if done == cfg.steps:  # the final model carries its latent statistics (policies standardise μ)
                pick = np.linspace(0, len(store) - 1, min(len(store), LATENT_STATS_IMAGES)).astype(int)
                model.fit_latent_stats(to_tensor(frames[torch.from_numpy(pick).to(device)], device))
            if done % cfg.ckpt_every == 0 or done == cfg.steps:
                checkpoint(done)
            bar.update(1)
    finally:
        bar.close()
        writer.close()

    seconds = time.perf_counter() - t0
    final_step = max(start, cfg.steps)
    if start >= cfg.steps and not terms:  # already finished: report the stored state
        with torch.no_grad():
            x = to_tensor(preview, device)
            model.eval()
            out = model.loss(x, final_step)
            terms = {k: float(v) for k, v in out.terms.items()}
            if out.kl_per_latent is not None:
                kl = out.kl_per_latent.float().cpu()
            model.train()
    save_png(run_dir / "reconstructions.png", reconstruction_grid(model, preview))
    save_png(run_dir / "traversals.png", traversal_grid(model, preview[0], kl_order(kl), num_latents=TRAVERSAL_ROWS))
    return TrainResult(
        step=final_step,
        terms=terms,
        kl_per_latent=[float(v) for v in kl.tolist()],
        seconds=seconds,
        images_per_second=n_images / seconds if seconds > 0 and n_images else math.nan,
        resumed_from=start,
        checkpoint=str(ckpt_path),
    )
