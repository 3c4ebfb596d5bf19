"""DARLA's agent variants: which vision module, where it sits, and which policy learns on top.

| variant    | vision module expected              | placement                                   | default policy |
|------------|-------------------------------------|---------------------------------------------|----------------|
| BASELINE   | none                                | pixels, learned end to end                  | CnnPolicy      |
| DARLA      | β-VAE_DAE (``beta_vae_dae``)        | frozen, in the env wrapper                  | MlpPolicy      |
| DARLA_ENT  | β-VAE_DAE, low β (``beta_vae_dae``) | frozen, in the env wrapper                  | MlpPolicy      |
| PIXEL_VAE  | β = 1 VAE (``vae``)                 | frozen, in the env wrapper                  | MlpPolicy      |
| DARLA_DAE  | DAE bottleneck (``dae``)            | frozen, in the env wrapper                  | MlpPolicy      |
| DARLA_FT   | β-VAE_DAE (``beta_vae_dae``)        | policy features extractor, fine-tuned by RL | CnnPolicy      |
| DC_IGN     | DC-IGN (``dc_ign``), weakly supervised | frozen, in the env wrapper               | MlpPolicy      |
| RANDOM_ENC | any architecture, untrained         | frozen, in the env wrapper                  | MlpPolicy      |
| AUG        | none                                | pixels + random shift/colour jitter         | CnnPolicy      |

DARLA_ENT is the paper's entangled counterpart of DARLA's own vision: the same β-VAE_DAE (same DAE checkpoint,
same ``dae_layer``, same latent count) trained with a β low enough to be measurably entangled. DARLA and DARLA_ENT
accept the same family, so no check here can tell them apart: the distinction is the β chosen by stage-1
measurement (DCI, domain invariance) and recorded in the config (``model.beta`` of the stage-1 run). PIXEL_VAE is
a pixel-space β = 1 VAE, which changes both the reconstruction target and β at once; it is kept as its own
variant (a ``beta_vae`` checkpoint trained with β = 1 and no β normalisation also counts as one). DC_IGN reads a
DC-IGN, trained on batches in which one ground-truth factor varies: a weakly supervised reference for what a
factor-aligned code buys in transfer, not an unsupervised competitor.

A frozen encoder sits outside the policy (:class:`vision.wrappers.VecDisentangledObservation`): no optimiser can
reach it and replay buffers store latents. DARLA_FT is the one variant whose encoder lives inside the policy
(:class:`agents.extractors.VisionExtractor`); its stage-1 weights are copied in after the policy is built and
checked, because SB3's ``ortho_init`` would otherwise overwrite them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch
from torch import nn
from stable_baselines3.common.vec_env import VecEnv

from agents.augment import VecImageAugmentation
from agents.extractors import VisionExtractor, encoder_matches, load_vision_weights
from agents.factory import Agent, make_algorithm
from vision.models import build_model
from vision.models.base import ModelConfig, VAEBase
from vision.wrappers import FrozenEncoder, ObservationShapeError, VecDisentangledObservation, VecResizeFrames, frame_shape

if TYPE_CHECKING:
    from agents.config import AgentConfig, AugmentConfig

PLACEMENTS = ("pixels", "wrapper", "extractor")


@dataclass(frozen=True)
class Variant:
    """How one variant turns frames into policy inputs."""

    name: str
    description: str
    needs_vision: bool  # a stage-1 checkpoint is required (RANDOM_ENC only borrows an architecture, optionally)
    families: tuple[str, ...]  # vision families it is meant for; empty: any
    placement: str  # pixels | wrapper | extractor
    policy: str  # default SB3 policy
    augment: bool = False
    random_init: bool = False  # the vision module is freshly initialised, never trained

    @property
    def uses_vision(self) -> bool:
        """Whether a vision model shapes the observations (a trained or a random one)."""
        return self.placement != "pixels"

    def accepts(self, family: str, model_config: Mapping[str, Any]) -> bool:
        """Whether a checkpoint of ``family`` (with ``model_config``) is the vision module this variant names."""
        if not self.families:
            return True
        if family in self.families:
            return True
        # PIXEL_VAE's "β = 1 VAE" may also come from the beta_vae family trained with β = 1.
        return "vae" in self.families and family == "beta_vae" and float(model_config.get("beta", 0)) == 1.0 \
            and not model_config.get("beta_norm", False)


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("BASELINE", "end-to-end agent on pixels", False, (), "pixels", "CnnPolicy"),
        Variant("DARLA", "frozen β-VAE_DAE latent means + MLP policy", True, ("beta_vae_dae",), "wrapper", "MlpPolicy"),
        # DARLA_ENT: DARLA's vision with only β changed (low, measured entangled); same family as DARLA.
        Variant("DARLA_ENT", "frozen entangled β-VAE_DAE (low β) + MLP policy", True, ("beta_vae_dae",), "wrapper",
                "MlpPolicy"),
        Variant("PIXEL_VAE", "frozen pixel-space β = 1 VAE + MLP policy", True, ("vae",), "wrapper", "MlpPolicy"),
        Variant("DARLA_DAE", "frozen DAE bottleneck + MLP policy", True, ("dae",), "wrapper", "MlpPolicy"),
        Variant("DARLA_FT", "DARLA encoder inside the policy, fine-tuned by RL", True, ("beta_vae_dae",), "extractor",
                "CnnPolicy"),
        Variant("DC_IGN", "frozen DC-IGN latent means (factor-supervised batches) + MLP policy", True, ("dc_ign",),
                "wrapper", "MlpPolicy"),
        Variant("RANDOM_ENC", "frozen untrained encoder + MLP policy", False, (), "wrapper", "MlpPolicy",
                random_init=True),
        Variant("AUG", "pixel agent with random-shift/colour augmentation", False, (), "pixels", "CnnPolicy",
                augment=True),
    )
}


def get_variant(name: str) -> Variant:
    """The :class:`Variant` called ``name`` (one-line error listing the valid names otherwise)."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"agent.variant: unknown variant {name!r}; choose from {list(VARIANTS)}") from None


def check_vision(variant: Variant, model: VAEBase, source: str) -> None:
    """One-line error when ``model`` is not the kind of vision module ``variant`` is defined by."""
    cfg = {f: getattr(model.cfg, f) for f in ("beta", "beta_norm")}
    if not variant.accepts(model.family, cfg):
        raise ValueError(
            f"vision.run: variant {variant.name} expects a vision module of family {' or '.join(variant.families)}; "
            f"{source} holds {model.family!r} (point vision.run at the right stage-1 run, or set "
            "vision.check_family=false to use it anyway)"
        )


def random_vision(
    frame_hwc: Sequence[int], seed: int, model_config: ModelConfig | None = None, input_shape: Sequence[int] | None = None
) -> VAEBase:
    """An untrained vision model for RANDOM_ENC: the given architecture (default: β-VAE conv64) at a fixed seed.

    The encoder is initialised variance-preserving (orthogonal weights, gain √2 before each ReLU, zero biases),
    as random-feature baselines are: PyTorch's default initialisation shrinks activations layer by layer, and its
    latents vary by ~1e-3 across frames — a control no policy could use, for reasons of scale, not information.
    Without ``input_shape`` it takes the env's channels at 64×64 (conv64's input size); frames are resized to it.
    """
    cfg = model_config or ModelConfig()
    shape = tuple(input_shape) if input_shape is not None else (int(frame_hwc[2]), 64, 64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(cfg, shape, pretrained=False)
        layers = [m for m in model.encoder.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        for i, layer in enumerate(layers):
            nn.init.orthogonal_(layer.weight, gain=1.0 if i == len(layers) - 1 else math.sqrt(2))
            nn.init.zeros_(layer.bias)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def wrap_observations(
    venv: VecEnv,
    variant: Variant,
    *,
    encoder: FrozenEncoder | None = None,
    vision: VAEBase | None = None,
    augment: "AugmentConfig | None" = None,
    training: bool = True,
    seed: int | None = None,
) -> VecEnv:
    """The observation pipeline of ``variant`` around a pixel VecEnv (the same for training and evaluation envs,
    except that augmentation applies to training envs only).

    ``encoder`` is the shared frozen encoder of wrapper variants; ``vision`` the model whose input shape an
    extractor variant's frames must match (they are resized to it when only H×W differ).
    """
    if variant.placement == "wrapper":
        if encoder is None:
            raise ValueError(f"variant {variant.name}: needs a frozen encoder for its observations")
        return VecDisentangledObservation(venv, encoder)
    if variant.placement == "extractor":
        if vision is None:
            raise ValueError(f"variant {variant.name}: needs the vision model its extractor is built from")
        h, w, c = frame_shape(venv.observation_space)
        mc, mh, mw = vision.input_shape
        if c != mc:
            raise ObservationShapeError(f"observation shape {tuple(venv.observation_space.shape)} has {c} channel(s) but "
                                        f"the vision model expects input shape (C, H, W) = {tuple(vision.input_shape)}")
        return venv if (h, w) == (mh, mw) else VecResizeFrames(venv, (mh, mw))
    if variant.augment and training:
        a = augment
        kwargs = {} if a is None else dict(pad=a.pad, brightness=a.brightness, contrast=a.contrast, hue=a.hue)
        return VecImageAugmentation(venv, seed=seed, **kwargs)
    return venv


def build_agent(
    cfg: "AgentConfig",
    venv: VecEnv,
    *,
    vision: VAEBase | None = None,
    seed: int | None = None,
    device: str | torch.device = "auto",
    verbose: int = 0,
) -> Agent:
    """A fresh agent of ``cfg.variant``/``cfg.algo`` on ``venv`` (already wrapped by :func:`wrap_observations`).

    For DARLA_FT, ``vision`` is the stage-1 model: its weights are loaded into every features extractor of the
    built policy and verified, so the agent provably starts from them.
    """
    variant = get_variant(cfg.variant)
    policy = cfg.policy or variant.policy
    policy_kwargs: dict[str, Any] = dict(cfg.policy_kwargs)
    if variant.placement == "extractor":
        if cfg.algo == "ec":
            raise ValueError(f"agent.algo: ec learns no weights, so variant {variant.name} has nothing to fine-tune")
        if vision is None:
            raise ValueError(f"vision.run: variant {variant.name} needs a vision checkpoint")
        policy_kwargs["features_extractor_class"] = VisionExtractor
        policy_kwargs["features_extractor_kwargs"] = {"model_config": vision.cfg, "input_shape": tuple(vision.input_shape)}
    agent = make_algorithm(cfg.algo, venv, policy, cfg.hparams, policy_kwargs, seed=seed, device=device, verbose=verbose)
    if variant.placement == "extractor":
        state = vision.state_dict()  # type: ignore[union-attr]
        load_vision_weights(agent.policy, state)  # type: ignore[union-attr]
        if not encoder_matches(agent.policy, state):  # type: ignore[union-attr]
            raise RuntimeError(f"variant {variant.name}: features extractor does not hold the stage-1 encoder weights")
    return agent


__all__ = [
    "PLACEMENTS", "Variant", "VARIANTS", "get_variant", "check_vision", "random_vision", "wrap_observations",
    "build_agent",
]
