"""``darla/Sprites-v0``: a small 2D world, an agent sprite walking to a goal sprite.

The agent (a triangle) moves on a ``grid`` × ``grid`` board (8 × 8 by default); reaching the goal (a disc) gives +1
and the goal reappears elsewhere, so a 50-step episode holds several goals. A small shaping term (+``shaping`` per
step closer to the goal, −``shaping`` per step away) gives dense feedback. Colours of the background, the agent and
the goal are the domain factors, with disjoint source and target palettes; positions are the latent task state.

Sprites are sized to their grid cell (a board of 8 fills the 64 × 64 frame with sprites ~11 px across): small
sprites are the classic way for a pixel-space VAE to ignore an object, and a vision module that cannot see the goal
gives a policy nothing to act on.
"""
from __future__ import annotations

from typing import Any

import cv2
import gymnasium as gym
import numpy as np

from envs.core import FRAME_SIZE, DomainSpec, Factor, FactorEnv, bin_factor, colour_factor, discrete_action

_SHIFT = 4  # cv2 fixed-point bits: sprites are placed with 1/16-pixel precision
_ONE = float(1 << _SHIFT)
# Actions: 0 up, 1 down, 2 left, 3 right (image coordinates, y down).
_MOVES = np.array([[0, -1], [0, 1], [-1, 0], [1, 0]], dtype=np.int64)
# Agent triangle and goal disc, in units of the nominal cell (frame side / grid).
_AGENT_OUTLINE = np.array([[0, -0.75], [0.7, 0.58], [-0.7, 0.58]])
_GOAL_RADIUS = 0.6

BACKGROUNDS = ("black", "navy", "forest", "plum", "sand", "steel", "mint", "lavender")
AGENT_COLOURS = ("white", "yellow", "cyan", "pink", "black", "maroon", "blue", "rust")
GOAL_COLOURS = ("orange", "lime", "magenta", "red", "purple", "teal", "charcoal", "green")


class SpritesEnv(FactorEnv):
    """Agent-to-goal sprite world; observations (64, 64, 3) uint8, actions ``Discrete(4)`` (up, down, left, right).

    Args:
        domain: "source", "target", "all", names joined with "+", or a mapping visual factor -> allowed values.
        render_mode: None or "rgb_array".
        shaping: reward per grid step towards the goal (minus per step away); 0 gives the sparse task.
        grid: board side in cells (2 to 16); sprites scale with the cell.
    """

    DOMAINS = {
        "source": {"background_colour": (0, 1, 2, 3), "agent_colour": (0, 1, 2, 3), "goal_colour": (0, 1, 2, 3)},
        "target": {"background_colour": (4, 5, 6, 7), "agent_colour": (4, 5, 6, 7), "goal_colour": (4, 5, 6, 7)},
    }
    EPISODE_STEPS = 50

    def __init__(self, domain: DomainSpec = "source", render_mode: str | None = None, shaping: float = 0.05,
                 grid: int = 8):
        if not 2 <= int(grid) <= 16:
            raise ValueError(f"grid: must be an integer in [2, 16], got {grid!r}")
        self.grid = int(grid)  # _make_factors (called by FactorEnv.__init__) needs it
        super().__init__(domain, render_mode)
        self.shaping = float(shaping)
        self.action_space = gym.spaces.Discrete(4)
        fs = self.factor_space
        self._k = {n: fs.index(n) for n in fs.names}
        # Cell centres and sprite outlines in cv2 fixed point; a 0.75-cell margin keeps sprites inside the frame.
        cell = FRAME_SIZE / self.grid
        self._centres = np.round(np.linspace(0.75 * cell, FRAME_SIZE - 0.75 * cell, self.grid) * _ONE).astype(np.int32)
        self._agent_poly = np.round(_AGENT_OUTLINE * cell * _ONE).astype(np.int32)
        self._goal_radius = int(round(_GOAL_RADIUS * cell * _ONE))

    def scripted_policy(self) -> "SpritesScripted":
        return SpritesScripted()

    def _make_factors(self) -> list[Factor]:
        g = self.grid
        return [
            colour_factor("background_colour", BACKGROUNDS),
            colour_factor("agent_colour", AGENT_COLOURS),
            colour_factor("goal_colour", GOAL_COLOURS),
            bin_factor("agent_x", 0, g, g), bin_factor("agent_y", 0, g, g),
            bin_factor("goal_x", 0, g, g), bin_factor("goal_y", 0, g, g),
        ]

    def _reset_state(self) -> None:
        self._agent = self.np_random.integers(0, self.grid, size=2)
        self._goal = self._free_cell()
        self._sync()

    def _free_cell(self) -> np.ndarray:
        """A uniformly random grid cell other than the agent's."""
        g = self.grid
        cell = int(self.np_random.integers(g * g - 1))
        cell += cell >= self._agent[1] * g + self._agent[0]
        return np.array([cell % g, cell // g], dtype=np.int64)

    def _sync(self) -> None:
        k, f = self._k, self._f
        f[k["agent_x"]], f[k["agent_y"]] = self._agent
        f[k["goal_x"]], f[k["goal_y"]] = self._goal

    def _step_state(self, action: Any) -> tuple[float, bool]:
        a = discrete_action(action, len(_MOVES))
        before = np.abs(self._agent - self._goal).sum()
        self._agent = np.clip(self._agent + _MOVES[a], 0, self.grid - 1)
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
        cv2.circle(out, (int(c[f[k["goal_x"]]]), int(c[f[k["goal_y"]]])), self._goal_radius, goal_rgb, -1,
                   cv2.LINE_AA, _SHIFT)
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
