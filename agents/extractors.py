"""Features extractors that put a vision model inside an SB3 policy (DARLA_FT: the encoder is fine-tuned by RL).

The extractor is built from the architecture alone; weights are copied in *after* the algorithm has built its
policy, by :func:`load_vision_weights`. Loading them in ``__init__`` would not survive: PPO/A2C's ``ortho_init``
re-initialises every layer of the features extractor once the policy is constructed.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from vision.models import build_model
from vision.models.base import ModelConfig


class VisionExtractor(BaseFeaturesExtractor):
    """Images (N, C, H, W) in [0, 1] (SB3's preprocessed pixels) -> latent means μ(x) of a vision model.

    The extractor keeps the model's encoder only (the decoder, and a β-VAE_DAE's DAE, play no part in acting), so
    the optimiser updates exactly the weights that produce the policy's input and saved policies stay small. The
    model's ``encode`` does not depend on train/eval mode (μ involves no sampling), so SB3's ``set_training_mode``
    cannot change what the policy sees.
    """

    def __init__(self, observation_space: gym.spaces.Box, model_config: ModelConfig, input_shape: Sequence[int]) -> None:
        shape = tuple(int(s) for s in input_shape)
        if tuple(observation_space.shape) != shape:
            raise ValueError(f"observation shape {tuple(observation_space.shape)} (C, H, W) does not match the vision "
                             f"model's input shape {shape}")
        model = build_model(model_config, shape, pretrained=False)
        super().__init__(observation_space, features_dim=model.latent_dim)
        model.decoder = None  # unused by encode(); dropping it keeps it out of the policy's state and optimiser
        for name, p in model.named_parameters():  # other families' extra parts (e.g. a discriminator) stay frozen
            p.requires_grad_(name.startswith("encoder."))
        self.vision = model

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        # Standardised μ, as the DARLA wrapper emits it (the statistics are buffers: fixed, never trained).
        return self.vision.standardize(self.vision.encode(observations)[0])

    def encoder_state(self) -> dict[str, torch.Tensor]:
        """The encoder's current weights (detached copies)."""
        return {k: v.detach().clone() for k, v in self.vision.encoder.state_dict().items()}


def vision_extractors(policy: nn.Module) -> list[VisionExtractor]:
    """Every VisionExtractor inside ``policy`` (actor, critic, and target copies for off-policy algorithms)."""
    return [m for m in policy.modules() if isinstance(m, VisionExtractor)]


def load_vision_weights(policy: nn.Module, state_dict: Mapping[str, Any]) -> int:
    """Copy a vision model's encoder weights (the ``encoder.*`` entries of its state dict) and its latent statistics
    into every VisionExtractor of ``policy``; returns how many extractors were loaded.

    Call it after the algorithm is constructed (see the module docstring). The copy is in place, so optimisers
    built over the extractor's parameters keep pointing at the loaded weights.
    """
    extractors = vision_extractors(policy)
    if not extractors:
        raise ValueError("policy: has no VisionExtractor to load vision weights into")
    encoder = _encoder_entries(state_dict)
    for ex in extractors:
        ex.vision.encoder.load_state_dict(encoder)
        for name in ("latent_mean", "latent_std"):  # the standardisation the DARLA wrapper applies (absent: identity)
            if name in state_dict:
                getattr(ex.vision, name).copy_(state_dict[name])
    return len(extractors)


def _encoder_entries(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    return {k[len("encoder."):]: v for k, v in state_dict.items() if k.startswith("encoder.")}


def encoder_matches(policy: nn.Module, state_dict: Mapping[str, Any]) -> bool:
    """Whether every VisionExtractor's encoder weights equal the ``encoder.*`` entries of ``state_dict``."""
    expected = _encoder_entries(state_dict)
    for ex in vision_extractors(policy):
        current = ex.vision.encoder.state_dict()
        if current.keys() != expected.keys():
            return False
        if not all(torch.equal(current[k].cpu(), expected[k].cpu()) for k in current):
            return False
    return True


__all__ = ["VisionExtractor", "vision_extractors", "load_vision_weights", "encoder_matches"]
