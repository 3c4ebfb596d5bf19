"""Typed configuration of a stage-2 agent (composed into ``darla.config.Stage2Config`` as its ``agent`` section)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agents.factory import ALGORITHMS
from agents.variants import VARIANTS


@dataclass
class AugmentConfig:
    """Image augmentation of the AUG variant, applied to training envs only (evaluation sees clean frames).

    The random shift is redrawn every frame (as in DrQ/RAD); the colour jitter once per episode, so colours stay
    consistent within an episode the way a changed visual domain would be.
    """

    pad: int = 4  # random shift: edge-pad by `pad` pixels, crop back at a random offset
    brightness: float = 0.3  # gain drawn from [1 - b, 1 + b]
    contrast: float = 0.3  # contrast factor drawn from [1 - c, 1 + c]
    hue: float = 0.1  # hue rotation drawn from [-h, h] of the full circle

    def __post_init__(self) -> None:
        if self.pad < 0:
            raise ValueError(f"agent.augment.pad: must be >= 0, got {self.pad}")
        for name in ("brightness", "contrast"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"agent.augment.{name}: must be in [0, 1), got {getattr(self, name)}")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"agent.augment.hue: must be in [0, 0.5], got {self.hue}")


@dataclass
class AgentConfig:
    """Which variant, which algorithm, and the hyper-parameters handed to it.

    ``hparams`` are the algorithm's constructor arguments (e.g. ``n_steps``, ``batch_size``, ``learning_rate``;
    see :mod:`agents.factory` for the accepted YAML forms), ``policy_kwargs`` go to the SB3 policy.
    """

    variant: str = "DARLA"  # see agents.variants.VARIANTS
    algo: str = "ppo"  # ppo | a2c | dqn | sac | td3 | ec
    policy: str = ""  # "" → the variant's policy (MlpPolicy on latents, CnnPolicy on pixels)
    hparams: dict[str, Any] = field(default_factory=dict)
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"agent.variant: unknown variant {self.variant!r}; choose from {list(VARIANTS)}")
        if self.algo not in ALGORITHMS:
            raise ValueError(f"agent.algo: unknown algorithm {self.algo!r}; choose from {sorted(ALGORITHMS)}")


__all__ = ["AgentConfig", "AugmentConfig"]
