"""A uint8 in-memory frame store, saved as ``.npz``, with ground-truth factors when the source has them.

Stage 1 trains from a :class:`FrameStore` whatever the source (dSprites, an environment, a user's frames).
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vision.runtime import atomic_write_bytes


@dataclass
class FrameStore:
    """Frames (N, H, W, C) uint8, optional factor indices (N, K) with their names and sizes."""

    frames: np.ndarray
    factors: np.ndarray | None = None
    factor_names: tuple[str, ...] = field(default_factory=tuple)
    factor_sizes: tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.frames.dtype != np.uint8 or self.frames.ndim != 4:
            raise ValueError(f"frames: expected uint8 (N, H, W, C), got {self.frames.dtype} {tuple(self.frames.shape)}")
        if self.factors is not None:
            if self.factors.shape[0] != self.frames.shape[0]:
                raise ValueError(f"factors: {self.factors.shape[0]} rows for {self.frames.shape[0]} frames")
            if len(self.factor_names) != self.factors.shape[1]:
                raise ValueError(f"factor_names: {len(self.factor_names)} names for {self.factors.shape[1]} factors")
        self.factor_names = tuple(self.factor_names)
        self.factor_sizes = tuple(int(s) for s in self.factor_sizes)

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        """(H, W, C)."""
        return tuple(self.frames.shape[1:])  # type: ignore[return-value]

    def save(self, path: str | Path) -> Path:
        """Atomically write the store as an uncompressed ``.npz``."""
        arrays: dict[str, np.ndarray] = {"frames": self.frames}
        if self.factors is not None:
            arrays["factors"] = self.factors
            arrays["factor_names"] = np.array(self.factor_names)
            arrays["factor_sizes"] = np.array(self.factor_sizes, dtype=np.int64)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "FrameStore":
        """Read a store written by :meth:`save` (a missing or malformed file is a one-line error naming it)."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"frames: no such file {p}")
        try:
            with np.load(p, allow_pickle=False) as z:
                frames = z["frames"]
                if "factors" in z:
                    return cls(frames, z["factors"], tuple(str(s) for s in z["factor_names"]),
                               tuple(int(s) for s in z["factor_sizes"]))
                return cls(frames)
        except (KeyError, ValueError, OSError) as e:
            raise ValueError(f"frames: {p} is not a darla frame store ({e})") from None


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def load_image_folder(path: str | Path, size: tuple[int, int] = (64, 64)) -> FrameStore:
    """Every image file directly in folder ``path`` (sorted by name), as RGB frames resized to ``size`` = (H, W)."""
    import cv2

    from vision.images import resize_frames

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"frames: no such folder {folder}")
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"frames: {folder} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    frames = np.empty((len(files), *size, 3), dtype=np.uint8)
    for i, f in enumerate(files):
        bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"frames: cannot read image {f}")
        frames[i] = resize_frames(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size)
    return FrameStore(frames)
