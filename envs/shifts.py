"""Visual domain shifts for any RGB Gymnasium environment: make a target domain out of your own environment.

Each wrapper changes only the pixels (observation space, actions, dynamics and rewards are untouched), is fixed
for the wrapper's lifetime and deterministic per ``seed``; ``wrapper.shift(frames)`` applies the same shift to
stored frames (H, W, 3) or (N, H, W, 3) uint8::

    source = gym.make("CarRacing-v3")
    target = HueShift(gym.make("CarRacing-v3"), degrees=120)
"""
from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import cv2
import gymnasium as gym
import numpy as np


def _check_frames(frames: np.ndarray) -> np.ndarray:
    f = np.asarray(frames)
    if f.dtype != np.uint8 or f.ndim not in (3, 4) or f.shape[-1] != 3:
        raise ValueError(f"frames: expected uint8 (H, W, 3) or (N, H, W, 3), got {f.dtype} {tuple(f.shape)}")
    return f


def hue_rotate(frames: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate the hue of uint8 RGB frames (H, W, 3) or (N, H, W, 3) by ``degrees``; saturation and value stay."""
    f = _check_frames(frames)
    flat = np.ascontiguousarray(f.reshape(-1, f.shape[-2], 3))  # cv2 converts any (rows, cols, 3) image
    hsv = cv2.cvtColor(flat, cv2.COLOR_RGB2HSV_FULL)  # hue in 0..255 for a full turn
    offset = int(round(degrees / 360.0 * 256)) % 256
    hsv[..., 0] += np.uint8(offset)  # uint8 arithmetic wraps around: a rotation
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL).reshape(f.shape)


class ColourShift(gym.ObservationWrapper, gym.utils.RecordConstructorArgs, abc.ABC):
    """Base of the shift wrappers: checks for an RGB uint8 observation space and shifts observations and renders.

    Subclasses pass their constructor arguments to ``__init__`` so ``env.spec`` can recreate the wrapped stack.
    """

    def __init__(self, env: gym.Env, **args: Any):
        gym.utils.RecordConstructorArgs.__init__(self, **args)
        space = env.observation_space
        if not (isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3
                and space.shape[-1] == 3):
            raise ValueError(f"observation_space: {type(self).__name__} needs a uint8 Box (H, W, 3), got {space}")
        super().__init__(env)

    @abc.abstractmethod
    def shift(self, frames: np.ndarray) -> np.ndarray:
        """The shifted copy of uint8 RGB frames (H, W, 3) or (N, H, W, 3)."""

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return self.shift(observation)

    def render(self) -> Any:
        frame = self.env.render()
        if isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[-1] == 3:
            return self.shift(frame)
        return frame


class HueShift(ColourShift):
    """Rotate every pixel's hue by ``degrees`` (drawn uniformly from [60, 300) with ``seed`` when not given)."""

    def __init__(self, env: gym.Env, degrees: float | None = None, seed: int = 0):
        super().__init__(env, degrees=degrees, seed=seed)
        self.degrees = float(np.random.default_rng(seed).uniform(60, 300) if degrees is None else degrees)

    def shift(self, frames: np.ndarray) -> np.ndarray:
        return hue_rotate(frames, self.degrees)


class ChannelPermutation(ColourShift):
    """Reorder the RGB channels by ``permutation`` (a random non-identity one from ``seed`` when not given)."""

    def __init__(self, env: gym.Env, permutation: Sequence[int] | None = None, seed: int = 0):
        super().__init__(env, permutation=permutation, seed=seed)
        if permutation is None:
            perms = ((0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))
            permutation = perms[int(np.random.default_rng(seed).integers(len(perms)))]
        if sorted(permutation) != [0, 1, 2]:
            raise ValueError(f"permutation: expected a permutation of (0, 1, 2), got {tuple(permutation)}")
        self.permutation = tuple(int(p) for p in permutation)

    def shift(self, frames: np.ndarray) -> np.ndarray:
        return _check_frames(frames)[..., self.permutation]


class PaletteSwap(ColourShift):
    """Swap colours between cells of a ``levels``³ partition of RGB space (a random permutation from ``seed``).

    A pixel in cell c moves to cell π(c) keeping its offset inside the cell, so shading and edges survive while
    every colour region takes another colour.
    """

    def __init__(self, env: gym.Env, levels: int = 4, seed: int = 0):
        super().__init__(env, levels=levels, seed=seed)
        if levels not in (2, 4, 8, 16):
            raise ValueError(f"levels: expected 2, 4, 8 or 16 (a power of two dividing 256), got {levels}")
        self.levels = int(levels)
        self._bits = int(np.log2(256 // levels))
        cells = np.stack(np.meshgrid(*[np.arange(levels)] * 3, indexing="ij"), -1).reshape(-1, 3)
        perm = np.random.default_rng(seed).permutation(len(cells))
        self._offset = ((cells[perm] - cells) << self._bits).astype(np.int16)  # (cells, 3)

    def shift(self, frames: np.ndarray) -> np.ndarray:
        f = _check_frames(frames)
        q = f >> self._bits
        cell = (q[..., 0].astype(np.intp) * self.levels + q[..., 1]) * self.levels + q[..., 2]
        return (f + self._offset[cell]).astype(np.uint8)  # offsets keep values inside [0, 255]


class BackgroundRecolour(ColourShift):
    """Paint pixels within ``tolerance`` of a background colour with a new ``colour``.

    Args:
        background: the RGB colour to replace, or ``"auto"``: the most frequent colour of the first observation.
        colour: the new RGB colour (random from ``seed`` when not given).
        tolerance: largest per-channel difference still counted as background.
    """

    def __init__(self, env: gym.Env, background: Sequence[int] | str = "auto",
                 colour: Sequence[int] | None = None, tolerance: int = 8, seed: int = 0):
        super().__init__(env, background=background, colour=colour, tolerance=tolerance, seed=seed)
        if isinstance(background, str) and background != "auto":
            raise ValueError(f"background: expected an RGB triple or 'auto', got {background!r}")
        self.background = None if isinstance(background, str) else _rgb(background, "background")
        self.colour = _rgb(np.random.default_rng(seed).integers(0, 256, 3) if colour is None else colour, "colour")
        self.tolerance = int(tolerance)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        obs, info = self.env.reset(**kwargs)
        if self.background is None:
            colours, counts = np.unique(obs.reshape(-1, 3), axis=0, return_counts=True)
            self.background = colours[int(np.argmax(counts))].astype(np.int16)
        return self.observation(obs), info

    def shift(self, frames: np.ndarray) -> np.ndarray:
        f = _check_frames(frames)
        if self.background is None:
            raise RuntimeError("BackgroundRecolour: background is 'auto' and no observation has been seen; reset first")
        out = f.copy()
        out[np.abs(f.astype(np.int16) - self.background).max(-1) <= self.tolerance] = self.colour
        return out


def _rgb(value: Any, name: str) -> np.ndarray:
    v = np.asarray(value)
    if v.shape != (3,) or not np.all((v >= 0) & (v <= 255)):
        raise ValueError(f"{name}: expected an RGB triple in 0..255, got {value!r}")
    return v.astype(np.int16)


SHIFTS: dict[str, type[ColourShift]] = {"hue": HueShift, "channels": ChannelPermutation, "palette": PaletteSwap,
                                        "background": BackgroundRecolour}


def apply_shift(env: gym.Env, spec: dict[str, Any]) -> gym.Env:
    """``env`` seen through the shift ``spec`` = ``{"shift": NAME, **arguments}`` (NAME from :data:`SHIFTS`)."""
    args = dict(spec)
    name = args.pop("shift", None)
    if name not in SHIFTS:
        raise ValueError(f"shift: unknown {name!r}; choose from {', '.join(SHIFTS)}")
    try:
        return SHIFTS[name](env, **args)
    except TypeError as e:
        raise ValueError(f"shift {name!r}: {e}") from None
