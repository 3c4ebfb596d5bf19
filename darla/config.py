"""Typed experiment configs: YAML files validated against dataclass schemas, with dotted overrides.

>>> cfg = load_config(Stage1Config, "configs/dsprites/beta_vae.yaml", ["model.beta=8", "train.steps=2000"])  # doctest: +SKIP

Unknown keys, wrong types and bad values raise :class:`ConfigError` with a one-line message naming the key.
Schemas of a component live beside the component (``vision.models.base.ModelConfig``,
``vision.train.TrainConfig``, …); this module composes them into one schema per stage.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vision.models.base import ModelConfig
from vision.train import TrainConfig

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit its schema."""


# ----- stage 1 ---------------------------------------------------------------------------------------------
DATA_SOURCES = ("dsprites", "env", "frames")
COVERAGES = ("source", "source+target-factors", "randomised")


@dataclass
class DataConfig:
    """Where stage-1 frames come from."""

    source: str = "dsprites"  # dsprites | env | frames
    num_images: int = 100_000  # images rendered (dsprites) or frames collected (env)
    path: str = ""  # frames: a FrameStore .npz
    env_id: str = ""  # env: a registered Gymnasium id, e.g. darla/Pickup-v0
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    coverage: str = "source"  # env: source | source+target-factors | randomised
    policy: str = "random"  # env: random | explore
    seed: int = 0

    def __post_init__(self) -> None:
        if self.source not in DATA_SOURCES:
            raise ValueError(f"data.source: unknown {self.source!r}; choose from {DATA_SOURCES}")
        if self.coverage not in COVERAGES:
            raise ValueError(f"data.coverage: unknown {self.coverage!r}; choose from {COVERAGES}")
        if self.num_images < 1:
            raise ValueError(f"data.num_images: must be >= 1, got {self.num_images}")
        if self.source == "env" and not self.env_id:
            raise ValueError("data.env_id: required when data.source is 'env'")
        if self.source == "frames" and not self.path:
            raise ValueError("data.path: required when data.source is 'frames'")


@dataclass
class EvalConfig:
    """Metrics run at the end of stage 1 (names from ``vision.metrics``; empty: none)."""

    metrics: list[str] = field(default_factory=list)
    num_points: int = 10_000
    seed: int = 0


@dataclass
class RunConfig:
    """Where a run lives. Rerunning a command with an existing run directory resumes it."""

    dir: str = "runs/stage1"
    resume: bool = True


@dataclass
class Stage1Config:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# ----- loading ---------------------------------------------------------------------------------------------
def _one_line(e: OmegaConfBaseException) -> str:
    key = getattr(e, "full_key", None)
    msg = str(getattr(e, "msg", None) or e).strip().splitlines()[0]
    return f"{key}: {msg}" if key else msg


def load_config(schema: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Schema defaults ← YAML file ← dotted overrides, validated into an instance of ``schema``."""
    try:
        cfg = OmegaConf.structured(schema)
        if path is not None:
            p = Path(path)
            if not p.is_file():
                raise ConfigError(f"config: no such file {p}")
            try:
                loaded = OmegaConf.load(p)
            except Exception as e:  # YAML syntax errors come from yaml, not omegaconf
                raise ConfigError(f"config: {p} is not valid YAML ({str(e).splitlines()[0]})") from None
            cfg = OmegaConf.merge(cfg, loaded)
        for ov in overrides:
            if "=" not in ov:
                raise ConfigError(f"override {ov!r}: expected key=value")
        if overrides:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]  # runs each dataclass's __post_init__
    except OmegaConfBaseException as e:
        raise ConfigError(_one_line(e)) from None
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(str(e).splitlines()[0]) from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config instance as plain dicts/lists (for JSON/YAML)."""
    return dataclasses.asdict(cfg)


def to_yaml(cfg: Any) -> str:
    """A config instance as YAML text."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
