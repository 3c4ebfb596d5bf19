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
from contextlib import contextmanager
from typing import Any, Iterator, Sequence, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from agents.config import AgentConfig
from vision.models.base import ModelConfig
from vision.train import TrainConfig
from vision.wrappers import LATENT_MODES

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit its schema."""


# ----- stage 1 ---------------------------------------------------------------------------------------------
DATA_SOURCES = ("dsprites", "env", "frames")
COVERAGES = ("source", "source+target-factors", "held-out-combinations", "randomised")


@dataclass
class DataConfig:
    """Where stage-1 frames come from."""

    source: str = "dsprites"  # dsprites | env | frames
    num_images: int = 100_000  # images rendered (dsprites) or frames collected (env)
    path: str = ""  # frames: a FrameStore .npz, or a folder of images (resized to 64x64)
    env_id: str = ""  # env: any registered Gymnasium id, e.g. darla/Pickup-v0, CarRacing-v3 (frames resized to 64x64)
    imports: list[str] = field(default_factory=list)  # env: modules to import first (they register non-darla ids)
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    coverage: str = "source"  # env: source | source+target-factors | held-out-combinations | randomised
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
    # Also score these metrics every `every` training steps (0: only at the end): tensorboard `metrics/…` and
    # RUN_DIR/metrics_curve.json (each metric's headline score against steps and training minutes).
    every: int = 0

    def __post_init__(self) -> None:
        if self.every < 0:
            raise ValueError(f"eval.every: must be >= 0, got {self.every}")
        if self.every and not self.metrics:
            raise ValueError("eval.every: needs eval.metrics (the metrics to score during training)")


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


# ----- stage 2 ---------------------------------------------------------------------------------------------
VEC_ENVS = ("dummy", "subproc")


@dataclass
class EnvConfig:
    """The environment a stage-2 agent trains in (source domain) and is evaluated in (every listed domain)."""

    id: str = "darla/Sprites-v0"  # any registered Gymnasium id with uint8 image observations
    kwargs: dict[str, Any] = field(default_factory=dict)  # extra gym.make keyword arguments
    domain_kwarg: str = "domain"  # gym.make keyword selecting the visual domain; "" for envs without domains
    train_domain: str = "source"
    # Domains evaluated during training; empty: the train domain plus every domain `envs.domains(id)` lists
    # (just the train domain for envs without named domains).
    eval_domains: list[str] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)  # modules to import first (they register non-darla env ids)
    n_envs: int = 8
    vec_env: str = "dummy"  # dummy | subproc

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("env.id: required")
        if self.n_envs < 1:
            raise ValueError(f"env.n_envs: must be >= 1, got {self.n_envs}")
        if self.vec_env not in VEC_ENVS:
            raise ValueError(f"env.vec_env: unknown {self.vec_env!r}; choose from {VEC_ENVS}")


@dataclass
class VisionRefConfig:
    """The stage-1 vision module a variant uses (ignored by pixel variants: BASELINE, AUG)."""

    # A stage-1 run directory or checkpoint file. Required by DARLA (a beta_vae_dae run), DARLA_ENT (a beta_vae_dae
    # run differing from DARLA's only by a low, measured-entangled β), PIXEL_VAE (a β = 1 VAE run), DARLA_DAE (a
    # dae run) and DARLA_FT (a beta_vae_dae run); RANDOM_ENC borrows its architecture.
    run: str = ""
    latent: str = "mean"  # mean | sample | mean+logvar (frozen-encoder variants)
    resize: bool = True  # resize env frames whose H×W differ from the checkpoint's input
    check_family: bool = True  # refuse a checkpoint whose family is not the one the variant names
    # bf16 frozen encoder where the CPU has native bf16 (the fused conv64 path, vision.wrappers.FrozenEncoder);
    # latents within a few hundredths of a latent's sd of fp32 (docs/stage2.md). fp32 when false.
    amp: bool = False

    def __post_init__(self) -> None:
        if self.latent not in LATENT_MODES:
            raise ValueError(f"vision.latent: unknown {self.latent!r}; choose from {LATENT_MODES}")


@dataclass
class Stage2TrainConfig:
    """Training length, evaluation and checkpoint schedule of a stage-2 run."""

    total_timesteps: int = 200_000
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N (policy and frozen encoder)
    eval_every: int = 10_000  # env steps between evaluations on every domain
    eval_episodes: int = 10  # per domain and evaluation
    eval_envs: int = 2  # parallel envs per evaluated domain
    deterministic_eval: bool = True
    ckpt_every: int = 10_000  # env steps between checkpoints (resume points)
    save_replay_buffer: bool = True  # off-policy algorithms: checkpoint the replay buffer too (exact resume)
    num_threads: int = 0  # torch CPU threads; 0: auto (vision.runtime.auto_num_threads)

    def __post_init__(self) -> None:
        for name in ("total_timesteps", "eval_every", "eval_episodes", "eval_envs", "ckpt_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name}: must be >= 1, got {getattr(self, name)}")
        if self.num_threads < 0:
            raise ValueError(f"train.num_threads: must be >= 0, got {self.num_threads}")


@dataclass
class Stage2Config:
    run: RunConfig = field(default_factory=lambda: RunConfig(dir="runs/stage2"))
    env: EnvConfig = field(default_factory=EnvConfig)
    vision: VisionRefConfig = field(default_factory=VisionRefConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    train: Stage2TrainConfig = field(default_factory=Stage2TrainConfig)


# ----- loading ---------------------------------------------------------------------------------------------
def _one_line(e: OmegaConfBaseException) -> str:
    key = getattr(e, "full_key", None)
    msg = str(getattr(e, "msg", None) or e).strip().splitlines()[0]
    return f"{key}: {msg}" if key else msg


@contextmanager
def _config_errors() -> Iterator[None]:
    """Turn OmegaConf and schema validation errors into one-line :class:`ConfigError`s naming the key."""
    try:
        yield
    except ConfigError:
        raise
    except OmegaConfBaseException as e:
        raise ConfigError(_one_line(e)) from None
    except ValueError as e:
        raise ConfigError(str(e).splitlines()[0]) from None


def _yaml_problem(path: Path, e: Exception) -> str:
    """A YAML parse error as ``file:line:column: problem`` (1-based, like compilers), or its first line."""
    mark, problem = getattr(e, "problem_mark", None), getattr(e, "problem", None)
    if mark is None or not problem:
        return f"{path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    context = getattr(e, "context", None)
    return f"{path}:{mark.line + 1}:{mark.column + 1}: {problem}{f' {context}' if context else ''}"


def _merge_overrides(cfg: Any, overrides: Sequence[str]) -> Any:
    # `key=` (what a shell makes of key='') means the empty string, not YAML's null
    overrides = [f"{ov}''" if ov.endswith("=") else ov for ov in overrides]
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r}: expected key=value")
        try:
            OmegaConf.from_dotlist([ov])
        except OmegaConfBaseException:
            raise
        except Exception as e:  # the value is parsed as YAML
            raise ConfigError(f"override {ov!r}: value is not valid YAML ({str(e).splitlines()[0]})") from None
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides))) if overrides else cfg


def load_config(schema: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Schema defaults ← YAML file ← dotted overrides, validated into an instance of ``schema``."""
    with _config_errors():
        cfg = OmegaConf.structured(schema)
        if path is not None:
            p = Path(path)
            if not p.is_file():
                raise ConfigError(f"config: no such file {p}")
            try:
                loaded = OmegaConf.load(p)
            except Exception as e:  # YAML syntax errors come from yaml, not omegaconf
                raise ConfigError(f"config: {_yaml_problem(p, e)} (not valid YAML)") from None
            cfg = OmegaConf.merge(cfg, loaded)
        return OmegaConf.to_object(_merge_overrides(cfg, overrides))  # type: ignore[return-value]  # runs __post_init__


def apply_overrides(cfg: T, overrides: Sequence[str]) -> T:
    """A copy of the config instance ``cfg`` with dotted ``overrides`` applied and validated."""
    with _config_errors():
        return OmegaConf.to_object(_merge_overrides(OmegaConf.structured(cfg), overrides))  # type: ignore[return-value]


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config instance as plain dicts/lists (for JSON/YAML)."""
    return dataclasses.asdict(cfg)


def to_yaml(cfg: Any) -> str:
    """A config instance as YAML text."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
