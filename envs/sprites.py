"""``darla/Sprites-v0``: a small 2D world, an agent sprite walking to a goal sprite, with dSprites-like factors.

The agent (a triangle) moves on a 16 × 16 grid; reaching the goal gives +1 and the goal reappears elsewhere, so a
50-step episode holds several goals. A small shaping term (+``shaping`` per step closer to the goal, −``shaping``
per step away) makes the task learnable in minutes. The goal's shape (square, ellipse, star), scale and
orientation are drawn per episode in every domain; colours are the domain factors, with disjoint source and target
palettes.
"""
from __future__ import annotations

from typing import Any

import cv2
import gymnasium as gym
import numpy as np

from envs.core import FRAME_SIZE, DomainSpec, Factor, FactorEnv, bin_factor, colour_factor

GRID = 16
SHAPES = ("square", "ellipse", "star")
SCALES = (2.6, 3.4, 4.2)  # goal half-size in pixels
N_ORIENTATIONS = 8
_SHIFT = 4  # cv2 fixed-point bits: sprites are placed with 1/16-pixel precision
_MARGIN = 5.5
_CELL = (FRAME_SIZE - 2 * _MARGIN) / (GRID - 1)
# Actions: 0 up, 1 down, 2 left, 3 right (image coordinates, y down).
_MOVES = np.array([[0, -1], [0, 1], [-1, 0], [1, 0]], dtype=np.int64)

BACKGROUNDS = ("black", "navy", "forest", "plum", "sand", "steel", "mint", "lavender")
AGENT_COLOURS = ("white", "yellow", "cyan", "pink", "black", "maroon", "blue", "rust")
GOAL_COLOURS = ("orange", "lime", "magenta", "red", "purple", "teal", "charcoal", "green")


def _outline(shape: str) -> np.ndarray:
    """Unit outline (max |coordinate| ≈ 1) of a goal shape, (n, 2), y down."""
    if shape == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) * 0.85
    t = np.linspace(0, 2 * np.pi, 10 if shape == "star" else 24, endpoint=False)
    if shape == "ellipse":
        return np.stack([np.cos(t), 0.55 * np.sin(t)], axis=1)
    radius = np.where(np.arange(len(t)) % 2 == 0, 1.0, 0.45)
    return np.stack([radius * np.sin(t), -radius * np.cos(t)], axis=1)


class SpritesEnv(FactorEnv):
    """Agent-to-goal sprite world; observations (64, 64, 3) uint8, actions ``Discrete(4)`` (up, down, left, right).

    Args:
        domain: "source", "target", "all", names joined with "+", or a mapping visual factor -> allowed values.
        render_mode: None or "rgb_array".
        shaping: reward per grid step towards the goal (minus per step away); 0 gives the sparse task.
    """

    DOMAINS = {
        "source": {"background_colour": (0, 1, 2, 3), "agent_colour": (0, 1, 2, 3), "goal_colour": (0, 1, 2, 3)},
        "target": {"background_colour": (4, 5, 6, 7), "agent_colour": (4, 5, 6, 7), "goal_colour": (4, 5, 6, 7)},
    }
    EPISODE_STEPS = 50

    def __init__(self, domain: DomainSpec = "source", render_mode: str | None = None, shaping: float = 0.05):
        super().__init__(domain, render_mode)
        self.shaping = float(shaping)
        self.action_space = gym.spaces.Discrete(4)
        fs = self.factor_space
        self._k = {n: fs.index(n) for n in fs.names}
        # Fixed-point outlines for every (shape, scale, orientation), and fixed-point cell centres.
        one = float(1 << _SHIFT)
        self._polys = np.empty((len(SHAPES), len(SCALES), N_ORIENTATIONS), dtype=object)
        for s, shape in enumerate(SHAPES):
            base = _outline(shape)
            for c, scale in enumerate(SCALES):
                for o in range(N_ORIENTATIONS):
                    th = 2 * np.pi * o / N_ORIENTATIONS
                    rot = np.array([[np.cos(th), np.sin(th)], [-np.sin(th), np.cos(th)]])
                    self._polys[s, c, o] = np.round(base @ rot * scale * one).astype(np.int32)
        self._agent_poly = np.round(np.array([[0, -4.2], [3.9, 3.2], [-3.9, 3.2]]) * one).astype(np.int32)
        self._centres = np.round((_MARGIN + _CELL * np.arange(GRID)) * one).astype(np.int32)

    def scripted_policy(self) -> "SpritesScripted":
        return SpritesScripted()

    def _make_factors(self) -> list[Factor]:
        return [
            colour_factor("background_colour", BACKGROUNDS),
            colour_factor("agent_colour", AGENT_COLOURS),
            colour_factor("goal_colour", GOAL_COLOURS),
            Factor("goal_shape", SHAPES, labels=SHAPES),
            Factor("goal_scale", SCALES),
            Factor("goal_orientation", tuple(360.0 * o / N_ORIENTATIONS for o in range(N_ORIENTATIONS))),
            bin_factor("agent_x", 0, GRID, GRID), bin_factor("agent_y", 0, GRID, GRID),
            bin_factor("goal_x", 0, GRID, GRID), bin_factor("goal_y", 0, GRID, GRID),
        ]

    def _reset_state(self) -> None:
        k, f, rng = self._k, self._f, self.np_random
        f[k["goal_shape"]] = rng.integers(len(SHAPES))
        f[k["goal_scale"]] = rng.integers(len(SCALES))
        f[k["goal_orientation"]] = rng.integers(N_ORIENTATIONS)
        self._agent = rng.integers(0, GRID, size=2)
        self._goal = self._free_cell()
        self._sync()

    def _free_cell(self) -> np.ndarray:
        """A uniformly random grid cell other than the agent's."""
        cell = int(self.np_random.integers(GRID * GRID - 1))
        cell += cell >= self._agent[1] * GRID + self._agent[0]
        return np.array([cell % GRID, cell // GRID], dtype=np.int64)

    def _sync(self) -> None:
        k, f = self._k, self._f
        f[k["agent_x"]], f[k["agent_y"]] = self._agent
        f[k["goal_x"]], f[k["goal_y"]] = self._goal

    def _step_state(self, action: Any) -> tuple[float, bool]:
        a = int(action)
        if not 0 <= a < 4:
            raise ValueError(f"action: expected an integer in [0, 4), got {action!r}")
        before = np.abs(self._agent - self._goal).sum()
        self._agent = np.clip(self._agent + _MOVES[a], 0, GRID - 1)
        after = np.abs(self._agent - self._goal).sum()
        reward = self.shaping * float(before - after)
        if after == 0:
            reward += 1.0
            self._goal = self._free_cell()
        self._sync()
        return reward, False

    def _build_appearance(self, visual: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, ...], tuple[int, ...]]:
        fs = self.factor_space
        bg, agent, goal = (fs.factors[k].values[v] for k, v in zip(fs.visual, visual))
        background = np.empty((FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
        background[:] = bg
        return background, tuple(agent), tuple(goal)

    def _render_into(self, out: np.ndarray, f: np.ndarray, appearance: Any) -> None:
        background, agent_rgb, goal_rgb = appearance
        k, c = self._k, self._centres
        out[:] = background
        goal = self._polys[f[k["goal_shape"]], f[k["goal_scale"]], f[k["goal_orientation"]]]
        goal = goal + (c[f[k["goal_x"]]], c[f[k["goal_y"]]])
        cv2.fillPoly(out, [goal], goal_rgb, cv2.LINE_AA, _SHIFT)
        agent = self._agent_poly + (c[f[k["agent_x"]]], c[f[k["agent_y"]]])
        cv2.fillPoly(out, [agent], agent_rgb, cv2.LINE_AA, _SHIFT)


class SpritesScripted:
    """Greedy walker to the goal from ``info["factors"]`` (no pixels): the Sprites reference policy."""

    def __call__(self, obs: np.ndarray, info: dict) -> int:
        f = info["factors"]
        dx, dy = f["goal_x"] - f["agent_x"], f["goal_y"] - f["agent_y"]
        if abs(dx) >= abs(dy) and dx != 0:
            return 3 if dx > 0 else 2
        return 1 if dy > 0 else 0
