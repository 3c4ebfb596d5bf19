"""Vision checkpoints: one file holds weights, optimizer state and the metadata needed to rebuild the model.

A checkpoint path may be the ``.pt`` file or a stage-1 run directory (its ``checkpoint.pt`` is used).
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import torch

from vision.models import MODEL_FAMILIES, build_model
from vision.models.base import ModelConfig, VAEBase
from vision.runtime import atomic_torch_save, resolve_device, versions

FORMAT = "darla.vision/1"
CHECKPOINT_NAME = "checkpoint.pt"


class CheckpointError(ValueError):
    """A path that is not a readable darla vision checkpoint."""


def resolve_checkpoint(path: str | Path) -> Path:
    """File path of the checkpoint designated by ``path`` (a file or a run directory)."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / CHECKPOINT_NAME
    if not p.is_file():
        raise CheckpointError(f"checkpoint: no such file {p}")
    return p


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file (recorded by later stages to pin the vision module they used)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(
    path: str | Path,
    model: VAEBase,
    step: int,
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Atomically write ``model`` (+ optimizer states and ``extra``) with its rebuild metadata."""
    payload = {
        "format": FORMAT,
        "family": model.family,
        "model_config": dataclasses.asdict(model.cfg),
        "input_shape": list(model.input_shape),
        "dataset_size": model.dataset_size,
        "step": int(step),
        "versions": versions(),
        "state_dict": model.state_dict(),
        "optimizers": {k: o.state_dict() for k, o in (optimizers or {}).items()},
        "extra": extra or {},
    }
    return atomic_torch_save(path, payload)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint payload (raises :class:`CheckpointError` with the path on any problem)."""
    p = resolve_checkpoint(path)
    try:
        payload = torch.load(p, map_location=map_location, weights_only=False)
    except Exception as e:  # torch raises many types for a corrupt file
        raise CheckpointError(f"checkpoint: {p} is corrupt or not a torch file ({type(e).__name__}: {e})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint: {p} is not a darla vision checkpoint (format {FORMAT!r} expected)")
    if payload["family"] not in MODEL_FAMILIES:
        raise CheckpointError(f"checkpoint: {p} has unknown model family {payload['family']!r}")
    return payload


def model_from_payload(payload: dict[str, Any], device: str | torch.device = "cpu") -> VAEBase:
    """Rebuild the model a payload describes and load its weights (frozen sub-networks come from the payload)."""
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    cfg = ModelConfig(**{k: v for k, v in payload["model_config"].items() if k in fields})
    model = build_model(cfg, payload["input_shape"], payload.get("dataset_size", 0), pretrained=False)
    model.load_state_dict(payload["state_dict"])
    return model.to(device)


def load(path: str | Path, device: str | torch.device = "auto") -> VAEBase:
    """The trained vision model at ``path``, frozen and ready to encode: eval mode, no gradients.

    >>> model = load("runs/beta_vae")                 # doctest: +SKIP
    >>> mu, logvar = model.encode(images)             # doctest: +SKIP
    """
    dev = resolve_device(str(device)) if isinstance(device, str) else device
    model = model_from_payload(read_checkpoint(path, map_location=dev), dev)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
