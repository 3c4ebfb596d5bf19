"""Frozen vision as an observation transform: pixels in, disentangled latents out.

Two lines turn any Gymnasium pixel environment into a latent-state one::

    env = DisentangledObservation(gym.make("CarRacing-v3"), "runs/carracing/beta_vae")
    obs, info = env.reset(seed=0)                       # obs: float32 latent means, shape (latent_dim,)

For stable-baselines3 training, :class:`VecDisentangledObservation` wraps a ``VecEnv`` and encodes all
sub-environments in one batched forward pass (terminal observations included, since SB3 bootstraps on them).

Both wrappers share :class:`FrozenEncoder`, the single place where env frames (uint8 HWC, any size) are checked
against the checkpoint's input shape, resized, converted and encoded — in eval mode, without gradients, on the
chosen device. The encoder lives outside the policy on purpose: the policy stays a small MLP, replay buffers hold
latents instead of images, and no optimiser can ever reach the vision weights.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import nn
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from vision.checkpoint import load
from vision.images import resize_frames, to_tensor
from vision.models.base import VAEBase
from vision.nets import Conv64Encoder
from vision.runtime import autocast_dtype, resolve_device

LATENT_MODES = ("mean", "sample", "mean+logvar")


class ObservationShapeError(ValueError):
    """An environment's observations do not fit the vision model's input shape."""


def frame_shape(space: gym.Space) -> tuple[int, int, int]:
    """(H, W, C) of an image observation space; grayscale (H, W) counts as one channel."""
    if not isinstance(space, spaces.Box) or space.dtype != np.uint8 or len(space.shape) not in (2, 3):
        raise ObservationShapeError(
            f"observation space: expected uint8 image frames (H, W, C), got {space}; "
            "wrap the env so that it returns pixels (e.g. an RGB-observation wrapper)"
        )
    h, w = space.shape[:2]
    return (int(h), int(w), int(space.shape[2]) if len(space.shape) == 3 else 1)


# Largest |fused − autocast| output gap, relative to the outputs' scale, accepted when the fused bf16 encoder checks
# itself at construction: both round to bf16, so they agree to ~1e-3; a larger gap means the oneDNN ops misbehave.
_FUSED_SELF_CHECK_RTOL = 0.05


class FusedConv64Bf16:
    """The conv64 encoder body as oneDNN kernels in bfloat16: four conv+ReLU, one linear+ReLU, an fp32 head.

    Eager autocast re-casts every weight on each call, lets oneDNN reorder it into its blocked layout on each call,
    and runs each ReLU as a separate (slow, in bf16) pass. Here the weights are cast and packed into oneDNN's
    layout once, each ReLU is fused into its conv or linear kernel, and the last linear layer (256 -> 2D, a
    negligible cost) runs in fp32 so μ is not rounded to bf16's 8 bits at the end. This is what makes bf16 pay off
    on env-sized batches (bench/wrapper_overhead.py). The weights are a snapshot: build it from a frozen encoder.

    Args:
        encoder: a :class:`vision.nets.Conv64Encoder` (its weights are copied, not shared).

    Raises:
        RuntimeError: this torch build lacks the oneDNN fused ops.
    """

    def __init__(self, encoder: Conv64Encoder) -> None:
        mkldnn = torch.ops.mkldnn
        if not (torch.backends.mkldnn.is_available() and hasattr(mkldnn, "_convolution_pointwise")
                and hasattr(mkldnn, "_linear_pointwise") and hasattr(torch._C._nn, "mkldnn_reorder_conv2d_weight")):
            raise RuntimeError("this torch build has no oneDNN fused convolution/linear ops")
        self._conv, self._linear = mkldnn._convolution_pointwise, mkldnn._linear_pointwise
        self.convs: list[tuple[torch.Tensor, torch.Tensor, list[int], list[int], list[int], int]] = []
        with torch.no_grad():
            for conv in (m for m in encoder.convs if isinstance(m, nn.Conv2d)):
                pad, stride, dil = list(conv.padding), list(conv.stride), list(conv.dilation)
                w = conv.weight.detach().to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
                packed = torch._C._nn.mkldnn_reorder_conv2d_weight(w.to_mkldnn(), pad, stride, dil, conv.groups)
                self.convs.append((packed, conv.bias.detach().to(torch.bfloat16), pad, stride, dil, conv.groups))
            fc = encoder.fc[1]
            self.fc_weight = fc.weight.detach().to(torch.bfloat16).contiguous()
            self.fc_bias = fc.bias.detach().to(torch.bfloat16)
            self.head_weight_t = encoder.head.weight.detach().float().t().contiguous()
            self.head_bias = encoder.head.bias.detach().float()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, C, 64, 64) float in [0, 1], any memory format -> encoder output (N, out_dim) float32."""
        h = x.to(torch.bfloat16)
        for w, b, pad, stride, dil, groups in self.convs:
            h = self._conv(h, w, b, pad, stride, dil, groups, "relu", [], "")
        h = self._linear(h.contiguous().flatten(1), self.fc_weight, self.fc_bias, "relu", [], "")  # (C, H, W) order
        return torch.addmm(self.head_bias, h.float(), self.head_weight_t)


class FrozenEncoder:
    """A trained vision model as a function ``uint8 frames (N, H, W, C) -> float32 latents (N, out_dim)``.

    Args:
        vision: a checkpoint path (``.pt`` or a stage-1 run directory) or a model instance; an instance is put in
            eval mode with gradients disabled, i.e. frozen in place.
        latent: ``"mean"`` (μ, the DARLA policy input), ``"sample"`` (z ~ q(z|x)) or ``"mean+logvar"`` (μ ‖ log σ²).
        device: ``"auto"`` (CUDA when present, else CPU) or any torch device.
        resize: resize frames whose H×W differs from the model's input (off: a mismatch is an error).
        seed: seed of the sampling noise for ``latent="sample"``.
        standardize: emit μ (and samples) in units of the training-set latent statistics stored in the checkpoint,
            (μ − mean) / sd per latent, so low-variance but informative latents reach the policy at unit scale;
            log σ² is left as it is. Checkpoints without statistics are unaffected.
        amp: run the encoder in reduced precision where the device has a fast kind (bf16 on AVX512-BF16/AMX CPUs,
            fp16 on CUDA; elsewhere it stays fp32). On such a CPU a conv64 model whose ``encode`` is the base
            class's runs as :class:`FusedConv64Bf16` (1.7–2.1× fp32 eager on 1–64 frames), other models under
            autocast. Latents come out float32 and differ from fp32's by bf16 rounding: on a trained dSprites
            β-VAE by at most 0.033 of a latent's sd (docs/stage2.md; bench/wrapper_overhead.py prints the speed-up
            and the differences). Off by default: fp32 is the reference. :attr:`backend` names the path taken.
    """

    def __init__(
        self,
        vision: str | Path | VAEBase,
        latent: str = "mean",
        device: str | torch.device = "auto",
        resize: bool = True,
        seed: int | None = None,
        standardize: bool = True,
        amp: bool = False,
    ) -> None:
        if latent not in LATENT_MODES:
            raise ValueError(f"latent: unknown mode {latent!r}; choose from {LATENT_MODES}")
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        if isinstance(vision, VAEBase):
            self.source = f"<{type(vision).__name__} instance>"
            model = vision.to(self.device)
            model.eval()
            for p in model.parameters():
                p.requires_grad_(False)
        else:
            self.source = str(vision)
            model = load(vision, self.device)
        if latent == "mean+logvar" and not model.stochastic:
            raise ValueError(f"latent: 'mean+logvar' needs a stochastic model; family {model.family!r} has no log-variance")
        if len(model.input_shape) != 3:
            raise ObservationShapeError(f"vision: {self.source} takes inputs of shape {model.input_shape}, not images (C, H, W)")
        # Channels-last weights let oneDNN run the conv64 stack about 2x faster on CPU for env-sized batches
        # (bench/wrapper_overhead.py); values are unchanged, only the memory layout of 4-D weights.
        self.model = model.to(memory_format=torch.channels_last)
        self.latent = latent
        self.resize = resize
        self.standardize = standardize
        self.amp_dtype = autocast_dtype(self.device) if amp else None
        self._fused: FusedConv64Bf16 | None = None
        if self.amp_dtype == torch.bfloat16 and self.device.type == "cpu":
            self._fused = self._try_fused(model)
        self.backend = ("fp32" if self.amp_dtype is None else
                        "bf16 onednn-fused" if self._fused is not None else f"{str(self.amp_dtype)[6:]} autocast")
        self.input_shape: tuple[int, int, int] = tuple(model.input_shape)  # type: ignore[assignment]
        self.out_dim = 2 * model.latent_dim if latent == "mean+logvar" else model.latent_dim
        self._generator: torch.Generator | None = None
        if latent == "sample":
            self._generator = torch.Generator(device=self.device)
            if seed is None:
                self._generator.seed()  # fresh entropy for this generator only (torch.seed() would reseed globally)
            else:
                self._generator.manual_seed(int(seed))

    @staticmethod
    def _try_fused(model: VAEBase) -> FusedConv64Bf16 | None:
        """The fused bf16 body for a plain conv64 model, or None (other encoders, or ops missing/misbehaving)."""
        if type(model).encode is not VAEBase.encode or type(model.encoder) is not Conv64Encoder:
            return None  # a model with its own encode (InfoGAN's Q head) or body keeps the generic autocast path
        try:
            fused = FusedConv64Bf16(model.encoder)
            probe = torch.rand(2, *model.input_shape, generator=torch.Generator().manual_seed(0))
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                ref = model.encoder(probe).float()
                gap = (fused(probe) - ref).abs().max().item()
        except RuntimeError:
            return None
        return fused if gap <= _FUSED_SELF_CHECK_RTOL * max(1.0, ref.abs().max().item()) else None

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²) in float32 for a float batch ``x`` on the device, by the chosen backend."""
        if self._fused is not None:
            h = self._fused(x)  # then the split of VAEBase.encode (the only encode the fused path is built for)
            return (h, torch.zeros_like(h)) if not self.model.stochastic else h.chunk(2, dim=1)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            mu, logvar = self.model.encode(x)
        return mu.float(), logvar.float()

    @property
    def observation_space(self) -> spaces.Box:
        """The latent observation space the wrappers declare."""
        return spaces.Box(-np.inf, np.inf, shape=(self.out_dim,), dtype=np.float32)

    def check_space(self, space: gym.Space) -> None:
        """Raise :class:`ObservationShapeError` (naming both shapes) unless frames of ``space`` can be encoded."""
        h, w, c = frame_shape(space)
        mc, mh, mw = self.input_shape
        if c != mc:
            raise ObservationShapeError(
                f"observation shape {tuple(space.shape)} has {c} channel(s) but the vision model {self.source} "
                f"expects input shape (C, H, W) = {self.input_shape}"
            )
        if (h, w) != (mh, mw) and not self.resize:
            raise ObservationShapeError(
                f"observation shape {tuple(space.shape)} does not match the vision model {self.source} input "
                f"(C, H, W) = {self.input_shape}; enable resizing or render frames at {mh}x{mw}"
            )

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """Encode a batch of uint8 frames (N, H, W, C) — or (N, H, W) grayscale — to float32 (N, out_dim)."""
        frames = np.asarray(frames)
        if frames.ndim == 3:  # a batch of grayscale frames (N, H, W)
            frames = frames[..., None]
        _, h, w = self.input_shape
        if frames.shape[1:3] != (h, w):
            frames = resize_frames(frames, (h, w))
        with torch.inference_mode():
            mu, logvar = self._encode(to_tensor(frames, self.device, memory_format=torch.channels_last))
            if self.latent == "sample" and self.model.stochastic:
                eps = torch.randn(mu.shape, generator=self._generator, device=self.device, dtype=mu.dtype)
                mu = mu + eps * (0.5 * logvar).exp()
            if self.standardize:
                mu = self.model.standardize(mu)
            out = torch.cat([mu, logvar], dim=1) if self.latent == "mean+logvar" else mu
        return out.float().cpu().numpy()


def _as_encoder(vision: str | Path | VAEBase | FrozenEncoder, **kwargs: Any) -> FrozenEncoder:
    return vision if isinstance(vision, FrozenEncoder) else FrozenEncoder(vision, **kwargs)


class DisentangledObservation(gym.ObservationWrapper):
    """Replace an env's pixel observations by the latent code of a frozen vision model.

    Args:
        env: any Gymnasium env whose observations are uint8 frames (H, W, C).
        vision: checkpoint path / stage-1 run directory, a model instance, or a :class:`FrozenEncoder` to share.
        latent, device, resize, seed, standardize: see :class:`FrozenEncoder` (ignored when ``vision`` is a
            FrozenEncoder).
    """

    def __init__(
        self,
        env: gym.Env,
        vision: str | Path | VAEBase | FrozenEncoder,
        latent: str = "mean",
        device: str | torch.device = "auto",
        resize: bool = True,
        seed: int | None = None,
        standardize: bool = True,
    ) -> None:
        super().__init__(env)
        self.encoder = _as_encoder(vision, latent=latent, device=device, resize=resize, seed=seed,
                                   standardize=standardize)
        self.encoder.check_space(env.observation_space)
        self.observation_space = self.encoder.observation_space

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return self.encoder(observation[None])[0]


class VecDisentangledObservation(VecEnvWrapper):
    """SB3 ``VecEnv`` wrapper: all sub-envs' frames (and terminal frames) encoded in one batched forward pass.

    Arguments as :class:`DisentangledObservation`; pass one :class:`FrozenEncoder` to several wrappers (training
    and evaluation envs) to keep a single copy of the model in memory.
    """

    def __init__(
        self,
        venv: VecEnv,
        vision: str | Path | VAEBase | FrozenEncoder,
        latent: str = "mean",
        device: str | torch.device = "auto",
        resize: bool = True,
        seed: int | None = None,
        standardize: bool = True,
    ) -> None:
        encoder = _as_encoder(vision, latent=latent, device=device, resize=resize, seed=seed, standardize=standardize)
        encoder.check_space(venv.observation_space)
        self.encoder = encoder
        super().__init__(venv, observation_space=encoder.observation_space)

    def reset(self) -> np.ndarray:
        return self.encoder(self.venv.reset())

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        ended = [i for i, done in enumerate(dones) if done and "terminal_observation" in infos[i]]
        frames = obs
        if ended:
            frames = np.concatenate([obs, np.stack([infos[i]["terminal_observation"] for i in ended])])
        latents = self.encoder(frames)
        n = len(obs)
        for j, i in enumerate(ended):
            infos[i]["terminal_observation"] = latents[n + j]
        return latents[:n], rewards, dones, infos


class VecResizeFrames(VecEnvWrapper):
    """Resize every sub-env's uint8 frames to ``size`` = (H, W) (for pixel policies that need a fixed input)."""

    def __init__(self, venv: VecEnv, size: Sequence[int]) -> None:
        c = frame_shape(venv.observation_space)[2]
        self.size = (int(size[0]), int(size[1]))
        shape = (*self.size, c) if len(venv.observation_space.shape) == 3 else self.size
        super().__init__(venv, observation_space=spaces.Box(0, 255, shape=shape, dtype=np.uint8))

    def _resize(self, frames: np.ndarray) -> np.ndarray:
        if frames.ndim == 3 and len(self.observation_space.shape) == 2:  # grayscale batch (N, H, W)
            return resize_frames(frames[..., None], self.size)[..., 0]
        return resize_frames(frames, self.size)

    def reset(self) -> np.ndarray:
        return self._resize(self.venv.reset())

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        for i, done in enumerate(dones):
            if done and "terminal_observation" in infos[i]:
                infos[i]["terminal_observation"] = self._resize(infos[i]["terminal_observation"][None])[0]
        return self._resize(obs), rewards, dones, infos


__all__ = [
    "LATENT_MODES", "ObservationShapeError", "FrozenEncoder", "FusedConv64Bf16", "DisentangledObservation",
    "VecDisentangledObservation", "VecResizeFrames", "frame_shape",
]
