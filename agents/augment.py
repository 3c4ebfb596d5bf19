"""Image augmentation for pixel agents (the AUG variant): random shift per frame, colour jitter per episode.

Applied as an SB3 ``VecEnvWrapper`` on the training envs, before SB3 transposes frames, so every algorithm (on-
and off-policy) learns from augmented pixels and evaluation envs stay clean.
"""
from __future__ import annotations

import cv2
import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from vision.wrappers import frame_shape


class VecImageAugmentation(VecEnvWrapper):
    """Random shift (edge-pad by ``pad``, random crop back) and per-episode brightness/contrast/hue jitter.

    Args:
        venv: a VecEnv of uint8 frames (H, W, C) or (H, W).
        pad: maximal shift in pixels (0: no shift).
        brightness, contrast: gains drawn from [1 - x, 1 + x] at each episode start (0: off).
        hue: hue rotation drawn from [-hue, hue] of the full circle at each episode start (RGB only; 0: off).
        seed: seed of the augmentation's own random generator.
    """

    def __init__(self, venv: VecEnv, pad: int = 4, brightness: float = 0.3, contrast: float = 0.3, hue: float = 0.1,
                 seed: int | None = None) -> None:
        c = frame_shape(venv.observation_space)[2]
        super().__init__(venv)
        self.pad, self.brightness, self.contrast, self.hue = int(pad), float(brightness), float(contrast), float(hue)
        self.rgb = c == 3 and len(venv.observation_space.shape) == 3
        self.rng = np.random.default_rng(seed)
        n = venv.num_envs
        self._gain = np.ones(n, dtype=np.float32)
        self._contrast = np.ones(n, dtype=np.float32)
        self._hue = np.zeros(n, dtype=np.int32)

    def _new_episode(self, i: int) -> None:
        self._gain[i] = self.rng.uniform(1 - self.brightness, 1 + self.brightness)
        self._contrast[i] = self.rng.uniform(1 - self.contrast, 1 + self.contrast)
        self._hue[i] = int(round(self.rng.uniform(-self.hue, self.hue) * 180))  # OpenCV's uint8 hue circle is 0..179

    def _augment(self, frame: np.ndarray, i: int) -> np.ndarray:
        out = frame
        if self.rgb and self._hue[i]:
            hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)
            hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + self._hue[i]) % 180).astype(np.uint8)
            out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if self._contrast[i] != 1 or self._gain[i] != 1:
            x = out.astype(np.float32)
            x = (x - x.mean()) * self._contrast[i] + x.mean()
            out = np.clip(x * self._gain[i], 0, 255).astype(np.uint8)
        if self.pad:
            p = self.pad
            h, w = out.shape[:2]
            padded = cv2.copyMakeBorder(out, p, p, p, p, cv2.BORDER_REPLICATE)
            dy, dx = self.rng.integers(0, 2 * p + 1, size=2)
            out = padded[dy:dy + h, dx:dx + w].reshape(frame.shape)
        return out

    def _augment_batch(self, frames: np.ndarray) -> np.ndarray:
        return np.stack([self._augment(f, i) for i, f in enumerate(frames)])

    def reset(self) -> np.ndarray:
        for i in range(self.num_envs):
            self._new_episode(i)
        return self._augment_batch(self.venv.reset())

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        for i, done in enumerate(dones):
            if done:
                if "terminal_observation" in infos[i]:  # the ending episode's jitter, then a fresh one
                    infos[i]["terminal_observation"] = self._augment(infos[i]["terminal_observation"], i)
                self._new_episode(i)
        return self._augment_batch(obs), rewards, dones, infos


__all__ = ["VecImageAugmentation"]
