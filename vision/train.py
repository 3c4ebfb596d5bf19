"""Stage-1 trainer: fits any model of the VAE family to a uint8 frame store.

Read top to bottom: set up device, data and optimizers; restore a checkpoint if the run directory has one; loop
over steps (sample a batch, one ``model.train_step``, log, checkpoint); save the final checkpoint.

Resuming restores parameters, optimizer state, the step count and every random-number state, so on CPU an
interrupted-and-resumed run ends with exactly the parameters of an uninterrupted one.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from vision.checkpoint import CHECKPOINT_NAME, read_checkpoint, save_checkpoint
from vision.data.frames import FrameStore
from vision.data.ground_truth import GroundTruthData
from vision.images import to_tensor
from vision.models.base import VAEBase
from vision.runtime import (atomic_write_bytes, atomic_write_json, autocast_dtype, progress_bar, resolve_device,
                            seed_everything, set_num_threads)
from vision.viz import reconstruction_grid, save_png, traversal_grid

RESTART_METRICS = ("recon", "loss", "rotation")  # train.restart_metric


@dataclass
class TrainConfig:
    """Optimisation and logging schedule of a stage-1 run."""

    steps: int = 100_000
    batch_size: int = 64
    lr: float = 1e-4
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # Mixed precision: fp16 autocast + gradient scaling on CUDA, bf16 autocast on CPUs with native bf16
    # (AVX512-BF16/AMX; ~1.9x a fp32 step there). Losses and KL stay float32. false: plain fp32 everywhere.
    amp: bool = True
    log_every: int = 100  # scalars
    image_every: int = 2_000  # reconstructions and traversals
    ckpt_every: int = 2_000
    num_threads: int = 0  # torch CPU threads; 0: auto (vision.runtime.auto_num_threads)
    # Best of K initialisations (:func:`select_restart`): K candidates train ``restart_steps`` steps each from their
    # own initial weights, the one with the lowest ``restart_metric`` on held-out frames continues to ``steps``.
    restarts: int = 1
    restart_steps: int = 1_000
    # recon (reconstruction term) | loss (the full training objective) | rotation (rotation_gain of the active
    # latents' means: how far the code's axes are from its most independent directions)
    restart_metric: str = "recon"

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "image_every", "ckpt_every", "restarts", "restart_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name}: must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"train.lr: must be > 0, got {self.lr}")
        if self.restarts > 1 and self.restart_steps >= self.steps:
            raise ValueError(f"train.restart_steps: must be < train.steps ({self.steps}) when train.restarts > 1, "
                             f"got {self.restart_steps}")
        if self.restart_metric not in RESTART_METRICS:
            raise ValueError(f"train.restart_metric: unknown {self.restart_metric!r}; choose from {RESTART_METRICS}")


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
    images_per_second: float | None  # None when nothing was trained (the run had already finished)
    resumed_from: int
    checkpoint: str
    train_seconds: float = 0.0  # training time of the whole run, summed over resumes (evaluation excluded)
    extra: dict[str, Any] = field(default_factory=dict)


def kl_order(kl_per_latent: np.ndarray | list[float]) -> np.ndarray:
    """Latent indices sorted by decreasing KL (most informative first)."""
    return np.argsort(-np.asarray(kl_per_latent), kind="stable")


CURVE_NAME = "metrics_curve.json"  # scores against steps and training seconds (train(evaluate=...))
LATENT_STATS_IMAGES = 4096  # frames (evenly spread over the store) the latent statistics are fitted on


def train(
    model: VAEBase,
    store: FrameStore,
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    progress: bool = True,
    extra: dict[str, Any] | None = None,
    evaluate: Callable[[VAEBase], dict[str, float]] | None = None,
    eval_every: int = 0,
    ground_truth: GroundTruthData | None = None,
) -> TrainResult:
    """Train ``model`` on ``store`` for ``cfg.steps`` steps, resuming from ``run_dir/checkpoint.pt`` if present.

    Writes tensorboard events, reconstructions/traversals and atomic checkpoints into ``run_dir``. ``extra`` is
    stored in every checkpoint (the stage CLIs put the resolved config there).

    With ``evaluate`` (model -> named scores) and ``eval_every`` > 0, the model is scored every ``eval_every``
    steps and at the last step: scores go to tensorboard (``metrics/…``) and, with the step and the training
    seconds spent so far (evaluation time excluded, summed over resumes), to ``run_dir/metrics_curve.json``.

    A model with a ``batch_sampler(store, ground_truth)`` hook (DC-IGN) draws its own batches: the hook returns
    ``draw(batch_size, generator) -> (uint8 frames, train_step keyword arguments)``, fed by the same checkpointed
    generator as the uniform draw. ``ground_truth`` is the data it renders from (None: the frames have no factors).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / CHECKPOINT_NAME
    for stale in run_dir.glob(f".{CHECKPOINT_NAME}.*.tmp"):  # a write killed mid-way (atomic_write_bytes' temp file)
        stale.unlink(missing_ok=True)
    device = resolve_device(cfg.device)
    set_num_threads(cfg.num_threads)
    seed_everything(cfg.seed)
    c, h, w = model.input_shape
    if store.observation_shape != (h, w, c):
        raise ValueError(f"frames: store images are {store.observation_shape} (H, W, C), the model expects {(h, w, c)}")

    # Data: uint8 on the device (on CUDA the whole set moves once; batches are indexed there).
    frames = torch.from_numpy(store.frames).to(device)
    sampler = torch.Generator(device="cpu").manual_seed(cfg.seed)
    draw = model.batch_sampler(store, ground_truth) if hasattr(model, "batch_sampler") else None
    # Conv nets train channels-last: the frames' own HWC layout, and what oneDNN's bf16 kernels want (≈1.5x a
    # contiguous bf16 step, measured on a 2-core AVX512-BF16 CPU; bench/train_throughput.py gives the total).
    fmt = torch.channels_last if model.cfg.arch == "conv64" else torch.contiguous_format
    model.to(device, memory_format=fmt).train()
    optimizers = model.configure_optimizers(cfg.lr)
    use_amp = cfg.amp and autocast_dtype(device) is not None
    scaler = torch.amp.GradScaler("cuda") if use_amp and device.type == "cuda" else None

    start, prior_seconds = 0, 0.0
    curve_path = run_dir / CURVE_NAME
    curve: list[dict[str, float]] = []
    if ckpt_path.exists():
        payload = read_checkpoint(ckpt_path, map_location=device)
        model.load_state_dict(payload["state_dict"])
        for name, opt in optimizers.items():
            opt.load_state_dict(payload["optimizers"][name])
        state = payload["extra"].get("rng", {})
        if "sampler" in state:  # RNG states are CPU byte tensors, whatever map_location moved them to
            sampler.set_state(state["sampler"].cpu())
            torch.set_rng_state(state["torch"].cpu())
            if device.type == "cuda" and "cuda" in state:
                torch.cuda.set_rng_state(state["cuda"].cpu(), device)
        if scaler is not None and "scaler" in payload["extra"]:
            scaler.load_state_dict(payload["extra"]["scaler"])
        start = int(payload["step"])
        prior_seconds = float(payload["extra"].get("train_seconds", 0.0))
    if curve_path.exists():  # rows past the checkpoint were made by a run that was killed before saving them
        curve = [r for r in json.loads(curve_path.read_text()) if r["step"] <= start]
    eval_seconds = 0.0

    def train_seconds() -> float:
        return prior_seconds + time.perf_counter() - t0 - eval_seconds

    def checkpoint(step: int) -> None:
        rng = {"sampler": sampler.get_state(), "torch": torch.get_rng_state()}
        if device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(device)
        meta = {**(extra or {}), "rng": rng, "train_seconds": train_seconds()}
        if scaler is not None:
            meta["scaler"] = scaler.state_dict()
        save_checkpoint(ckpt_path, model, step, optimizers, meta)

    # Events after the checkpoint were written by a run killed before saving them; the checkpoint's own step stays.
    writer = SummaryWriter(str(run_dir / "tb"), purge_step=start + 1 if start else None)
    preview = store.frames[np.linspace(0, len(store) - 1, 8).astype(int)]
    terms: dict[str, float] = {}
    kl = torch.zeros(model.latent_dim)
    t0, n_images = time.perf_counter(), 0
    bar = progress_bar(total=cfg.steps, initial=start, desc=f"stage1 {model.family}", disable=not progress, dynamic_ncols=True)
    try:
        for step in range(start, cfg.steps):
            if draw is None:
                idx = torch.randint(len(store), (cfg.batch_size,), generator=sampler)
                batch, step_kwargs = frames[idx.to(device)], {}
            else:
                rendered, step_kwargs = draw(cfg.batch_size, sampler)
                batch = torch.from_numpy(rendered).to(device)
            x = to_tensor(batch, device, memory_format=fmt)
            out = model.train_step(x, step, optimizers, scaler=scaler, autocast=use_amp, **step_kwargs)
            n_images += cfg.batch_size
            done = step + 1
            # On CUDA the check waits for the GPU, so it runs on logging steps only there.
            if (device.type != "cuda" or done % cfg.log_every == 0) and not torch.isfinite(out.loss):
                kept = f"last good checkpoint kept: {ckpt_path}" if ckpt_path.exists() else "no checkpoint was written yet"
                raise TrainingDiverged(
                    f"loss is {out.loss.item()} at step {step} "
                    f"({', '.join(f'{k}={v.item():.4g}' for k, v in out.terms.items())}); stopped, {kept}"
                )
            if done % cfg.log_every == 0 or done == cfg.steps:
                # a deterministic model (AE, DAE) has no KL: its always-zero KL scalars are not logged
                terms = {k: float(v) for k, v in out.terms.items() if model.stochastic or k != "kl"}
                for k, v in terms.items():
                    writer.add_scalar(f"loss/{k}", v, done)
                if out.kl_per_latent is not None and model.stochastic:
                    kl = out.kl_per_latent.float().cpu()
                    for j, v in enumerate(kl.tolist()):
                        writer.add_scalar(f"kl_per_latent/z{j}", v, done)
                writer.add_scalar("perf/images_per_second", n_images / (time.perf_counter() - t0), done)
                bar.set_postfix(loss=f"{terms['loss']:.1f}", kl=f"{terms.get('kl', 0.0):.2f}")
            if done % cfg.image_every == 0 or done == cfg.steps:
                writer.add_image("reconstructions", reconstruction_grid(model, preview), done, dataformats="HWC")
                writer.add_image("traversals", traversal_grid(model, preview[0], kl_order(kl), num_latents=TRAVERSAL_ROWS), done, dataformats="HWC")
            if evaluate is not None and eval_every > 0 and (done % eval_every == 0 or done == cfg.steps):
                te = time.perf_counter()
                rng_state = torch.get_rng_state()
                model.eval()
                scores = evaluate(model)
                model.train()
                torch.set_rng_state(rng_state)
                for k, v in scores.items():
                    writer.add_scalar(f"metrics/{k}", v, done)
                eval_seconds += time.perf_counter() - te
                curve.append({"step": done, "train_seconds": round(train_seconds(), 2), **scores})
                atomic_write_json(curve_path, curve)
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
        images_per_second=n_images / seconds if seconds > 0 and n_images else None,
        resumed_from=start,
        checkpoint=str(ckpt_path),
        train_seconds=round(train_seconds(), 2) if start < cfg.steps else prior_seconds,
    )


RESTARTS_NAME = "restarts.json"  # the candidates of select_restart, their scores and the winner
RESTART_DIR = "restarts"  # run_dir/restarts/<k>: candidate k's own run directory
RESTART_SCORE_IMAGES = 2048  # held-out frames (evenly spread over the store) candidates are scored on


def restart_seed(seed: int, k: int) -> int:
    """Training seed of restart candidate ``k``: ``seed`` itself for k = 0 (so one restart is a plain run)."""
    return seed if k == 0 else int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


@torch.no_grad()
def heldout_terms(model: VAEBase, frames: np.ndarray, step: int, seed: int = 0, batch: int = 256) -> dict[str, float]:
    """Mean loss terms of ``model`` on ``frames`` (uint8, N×H×W×C) with a fixed posterior-sampling seed."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    rng_state = torch.get_rng_state()
    torch.manual_seed(seed)
    sums: dict[str, float] = {}
    for i in range(0, len(frames), batch):
        out = model.loss(to_tensor(frames[i:i + batch], device), step)
        for k, v in out.terms.items():
            sums[k] = sums.get(k, 0.0) + float(v) * len(frames[i:i + batch])
    torch.set_rng_state(rng_state)
    model.train(was_training)
    return {k: v / len(frames) for k, v in sums.items()}


RESTART_ACTIVE_KL = 0.5  # nats: a latent carries information for the rotation score when its mean KL exceeds this


def heldout_rotation_gain(model: VAEBase, frames: np.ndarray) -> float:
    """:func:`~vision.metrics.unsupervised.rotation_gain` of the posterior means of the latents with mean KL above
    ``RESTART_ACTIVE_KL`` (models without a posterior: whose means vary) on ``frames`` (uint8, N×H×W×C). No labels:
    it asks whether rotating two of the code's axes would make them more independent, as when x and y of a 2-D
    position are encoded along diagonals. A code with fewer than two such latents scores infinity: a candidate that
    has not left the blank-image plateau is no pick."""
    from vision.metrics.representation import encoder_from_model, mean_kl
    from vision.metrics.unsupervised import ACTIVE_SD, rotation_gain

    mu, logvar = encoder_from_model(model)(frames)
    active = mean_kl(mu, logvar) > RESTART_ACTIVE_KL if logvar is not None else mu.std(axis=0) > ACTIVE_SD
    if active.sum() < 2:
        return float("inf")
    return rotation_gain(mu[:, active].astype(np.float64))


def select_restart(build: Callable[[], VAEBase], store: FrameStore, cfg: TrainConfig, run_dir: str | Path, *,
                   progress: bool = True, extra: dict[str, Any] | None = None,
                   ground_truth: GroundTruthData | None = None) -> dict[str, Any]:
    """Best of ``cfg.restarts`` initialisations; the winner's checkpoint becomes ``run_dir/checkpoint.pt``.

    The β-VAE's code is decided in the first thousand steps and then stays (docs/stage1.md), so which latents a
    run ends with is a draw over initial weights. Candidate k is seeded with :func:`restart_seed`, built by
    ``build()`` and trained ``cfg.restart_steps`` steps in ``run_dir/restarts/<k>`` (resumable like any run); each
    is scored on the same held-out frames by ``cfg.restart_metric``, and the lowest continues — :func:`train` on
    ``run_dir`` then resumes the winner's checkpoint, parameters, optimiser and random state. No labels are used.
    Writes and returns ``run_dir/restarts.json``. ``ground_truth`` goes to :func:`train` (models that draw their
    own batches).
    """
    from dataclasses import replace

    run_dir = Path(run_dir)
    pick = np.linspace(0, len(store) - 1, min(len(store), RESTART_SCORE_IMAGES)).astype(int)
    held_out = store.frames[pick]
    candidates = []
    for k in range(cfg.restarts):
        seed = restart_seed(cfg.seed, k)
        seed_everything(seed)  # the candidate's initial weights
        model = build()
        cand_cfg = replace(cfg, seed=seed, steps=cfg.restart_steps, restarts=1)
        got = train(model, store, cand_cfg, run_dir / RESTART_DIR / str(k), progress=progress, extra=extra,
                    ground_truth=ground_truth)
        terms = heldout_terms(model, held_out, cfg.restart_steps)
        if cfg.restart_metric == "rotation":  # the other scores are loss terms heldout_terms already has
            terms["rotation"] = heldout_rotation_gain(model, held_out)
        candidates.append({"k": k, "seed": seed, "score": terms[cfg.restart_metric], "terms": terms,
                           "train_seconds": got.train_seconds,
                           "kl_per_latent": got.kl_per_latent, "checkpoint": got.checkpoint})
    best = min(candidates, key=lambda c: c["score"])
    summary = {"metric": cfg.restart_metric, "steps": cfg.restart_steps, "num_frames": len(held_out),
               "chosen": best["k"], "seconds": sum(c["train_seconds"] for c in candidates), "candidates": candidates}
    atomic_write_json(run_dir / RESTARTS_NAME, summary)
    atomic_write_bytes(run_dir / CHECKPOINT_NAME, Path(best["checkpoint"]).read_bytes())
    return summary
