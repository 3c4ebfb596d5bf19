"""Stage-1 trainer (filled in below the config)."""
from __future__ import annotations

from dataclasses import dataclass


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
