"""``darla/Reach-v0`` and ``darla/ReachDiscrete-v0``: a planar multi-joint arm reaching a target (a Jaco analogue).

The arm is seen from above: a base at the centre, ``n_joints`` links, a gripper at the tip, and a round target.
Actions change the joint angles (continuous: a velocity per joint in [−1, 1] times ``max_delta`` radians; discrete:
one joint by ±``max_delta`` or no-op). Joint angles are continuous in the dynamics and observed through
``JOINT_BINS`` bins (the observation is rendered from the factors). The per-step reward is 1 with the gripper
inside the target and falls off with distance beyond it (a long-tailed tolerance, as in DeepMind Control
Suite's reacher), so an episode's return is close to the number of steps spent on the target.

Domain factors: arm colour, target colour, background colour (disjoint source and ``target`` palettes) and
brightness (``target_light``).
"""
from __future__ import annotations

import math
from typing import Any

import cv2
import gymnasium as gym
import numpy as np

from envs.core import FRAME_SIZE, DomainSpec, Factor, FactorEnv, bin_factor, colour_factor, discrete_action

JOINT_BINS = 64
TARGET_BINS = 16
REACH = 26.0  # total arm length, pixels
TARGET_RADIUS = 3.5  # pixels; the reward is 1 while the gripper centre is inside
TARGET_EXTENT = 0.68  # targets lie in a square of half-side TARGET_EXTENT * REACH: always reachable
LINK_WIDTH = 3
_SHIFT = 4
_ONE = float(1 << _SHIFT)
_BASE = FRAME_SIZE / 2
# Gripper outline in (across, along) link coordinates, pixels.
_GRIPPER = ((2.4, 2.2), (2.4, 0.0), (-2.4, 0.0), (-2.4, 2.2))

BACKGROUNDS = ("sand", "white", "steel", "mint", "charcoal", "navy", "forest", "plum")
ARM_COLOURS = ("black", "blue", "maroon", "purple", "yellow", "orange", "cyan", "pink")
TARGET_COLOURS = ("red", "green", "magenta", "teal", "lime", "white", "lavender", "tan")
BRIGHTNESS = (1.0, 0.85, 0.5, 1.3)


def tolerance(distance: float, radius: float, margin: float) -> float:
    """1 within ``radius``; beyond it ``1 / (1 + 9 (excess / margin)^2)``, i.e. 0.1 at ``margin`` past the edge."""
    excess = max(distance - radius, 0.0) / margin
    return 1.0 / (1.0 + 9.0 * excess * excess)


class ReachEnv(FactorEnv):
    """Planar arm reaching; observations (64, 64, 3) uint8.

    Args:
        domain: "source", "target", "target_light", "all", names joined with "+", or a mapping visual factor ->
            allowed values.
        render_mode: None or "rgb_array".
        n_joints: number of links (2–4).
        discrete: ``Discrete(2 * n_joints + 1)`` actions (0 no-op, 2j+1 joint j +, 2j+2 joint j −) instead of
            ``Box(-1, 1, (n_joints,))``.
        max_delta: largest joint change per step, radians.
    """

    DOMAINS = {
        "source": {"background_colour": (0, 1, 2, 3), "arm_colour": (0, 1, 2, 3), "target_colour": (0, 1, 2, 3),
                   "brightness": (0, 1)},
        "target": {"background_colour": (4, 5, 6, 7), "arm_colour": (4, 5, 6, 7), "target_colour": (4, 5, 6, 7),
                   "brightness": (0, 1)},
        "target_light": {"background_colour": (0, 1, 2, 3), "arm_colour": (0, 1, 2, 3),
                         "target_colour": (0, 1, 2, 3), "brightness": (2, 3)},
    }
    EPISODE_STEPS = 100

    def __init__(self, domain: DomainSpec = "source", render_mode: str | None = None, n_joints: int = 2,
                 discrete: bool = False, max_delta: float = 0.2):
        if not 2 <= n_joints <= 4:
            raise ValueError(f"n_joints: expected 2 to 4, got {n_joints}")
        if not max_delta > 0:
            raise ValueError(f"max_delta: must be positive, got {max_delta}")
        self.n_joints, self.discrete, self.max_delta = int(n_joints), bool(discrete), float(max_delta)
        super().__init__(domain, render_mode)
        if self.discrete:
            self.action_space = gym.spaces.Discrete(2 * self.n_joints + 1)
        else:
            self.action_space = gym.spaces.Box(-1.0, 1.0, (self.n_joints,), np.float32)
        fs = self.factor_space
        self._k_joints = [fs.index(f"joint{j}") for j in range(self.n_joints)]
        self._k_target = [fs.index("target_x"), fs.index("target_y")]
        self._link = REACH / self.n_joints
        self._angle_list, self._target_list = list(fs["joint0"].values), list(fs["target_x"].values)
        self._deltas = np.zeros((2 * self.n_joints + 1, self.n_joints))
        for j in range(self.n_joints):
            self._deltas[2 * j + 1, j], self._deltas[2 * j + 2, j] = self.max_delta, -self.max_delta
        self._delta_lists = self._deltas.tolist()

    def _make_factors(self) -> list[Factor]:
        extent = TARGET_EXTENT * REACH
        return [
            colour_factor("background_colour", BACKGROUNDS), colour_factor("arm_colour", ARM_COLOURS),
            colour_factor("target_colour", TARGET_COLOURS),
            Factor("brightness", BRIGHTNESS, visual=True),
            *[bin_factor(f"joint{j}", -np.pi, np.pi, JOINT_BINS) for j in range(self.n_joints)],
            bin_factor("target_x", -extent, extent, TARGET_BINS), bin_factor("target_y", -extent, extent, TARGET_BINS),
        ]

    def scripted_policy(self) -> "ReachScripted":
        return ReachScripted(self)

    # --- kinematics (plain floats: with 2-4 joints numpy call overhead would dominate) ---------------------
    def joint_positions(self, angles: Any) -> np.ndarray:
        """Base and joint positions (n_joints + 1, 2) in pixels relative to the base (y up); angles are relative."""
        return np.array(self._chain([float(a) for a in angles]))

    def _chain(self, angles: list[float]) -> list[tuple[float, float]]:
        x = y = heading = 0.0
        points = [(0.0, 0.0)]
        for angle in angles:
            heading += angle
            x += self._link * math.cos(heading)
            y += self._link * math.sin(heading)
            points.append((x, y))
        return points

    # --- dynamics -------------------------------------------------------------------------------------------
    def _reset_state(self) -> None:
        rng = self.np_random
        self._angles = rng.uniform(-np.pi, np.pi, size=self.n_joints).tolist()
        self._f[self._k_target] = rng.integers(0, TARGET_BINS, size=2)
        self._target = [self._target_list[i] for i in self._f[self._k_target].tolist()]
        self._sync()

    def _sync(self) -> None:
        scale = JOINT_BINS / (2 * math.pi)
        for k, angle in zip(self._k_joints, self._angles):
            self._f[k] = min(int((angle + math.pi) * scale), JOINT_BINS - 1)

    def _step_state(self, action: Any) -> tuple[float, bool]:
        if self.discrete:
            a = discrete_action(action, len(self._deltas))
            delta = self._delta_lists[a]
        else:
            act = np.asarray(action, dtype=np.float64).reshape(-1)
            if act.shape != (self.n_joints,):
                raise ValueError(f"action: expected shape ({self.n_joints},), got {np.shape(action)}")
            delta = [max(-1.0, min(1.0, a)) * self.max_delta for a in act.tolist()]
        self._angles = [(a + d + math.pi) % (2 * math.pi) - math.pi for a, d in zip(self._angles, delta)]
        self._sync()
        tip = self._chain(self._angles)[-1]
        distance = math.hypot(tip[0] - self._target[0], tip[1] - self._target[1])
        return tolerance(distance, TARGET_RADIUS, REACH / 2), False

    # --- rendering ------------------------------------------------------------------------------------------
    def _build_appearance(self, visual: tuple[int, ...]) -> tuple[np.ndarray, tuple, tuple, tuple]:
        fs = self.factor_space
        values = {fs.names[k]: fs.factors[k].values[v] for k, v in zip(fs.visual, visual)}
        gain = values["brightness"]

        def lit(rgb: Any) -> np.ndarray:
            return np.clip(np.asarray(rgb, float) * gain, 0, 255)

        background = np.empty((FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
        background[:] = lit(values["background_colour"]).astype(np.uint8)
        arm = lit(values["arm_colour"])
        joint = np.clip(arm * 0.6 + lit((128, 128, 128)) * 0.4, 0, 255)  # joints: a muted arm colour
        return background, tuple(arm.tolist()), tuple(joint.tolist()), tuple(lit(values["target_colour"]).tolist())

    def _render_into(self, out: np.ndarray, f: np.ndarray, appearance: Any) -> None:
        background, arm_rgb, joint_rgb, target_rgb = appearance
        out[:] = background
        fl = f.tolist()
        tx, ty = self._target_list[fl[self._k_target[0]]], self._target_list[fl[self._k_target[1]]]
        cv2.circle(out, (int((_BASE + tx) * _ONE), int((_BASE - ty) * _ONE)), int(TARGET_RADIUS * _ONE), target_rgb,
                   -1, cv2.LINE_AA, _SHIFT)
        points = self._chain([self._angle_list[fl[k]] for k in self._k_joints])
        (x0, y0), (x1, y1) = points[-2], points[-1]
        norm = max(math.hypot(x1 - x0, y1 - y0), 1e-9)
        ax, ay = (x1 - x0) / norm, (y1 - y0) / norm  # along the last link; across is (-ay, ax)
        # Gripper: a "U" of two fingers across the end of the last link.
        gripper = [(x1 - c * ay + a * ax, y1 + c * ax + a * ay) for c, a in _GRIPPER]
        arm_pix, gripper_pix = ([(int((_BASE + x) * _ONE), int((_BASE - y) * _ONE)) for x, y in pts]
                                for pts in (points, gripper))
        cv2.polylines(out, [np.array(arm_pix, dtype=np.int32)], False, arm_rgb, LINK_WIDTH, cv2.LINE_AA, _SHIFT)
        cv2.polylines(out, [np.array(gripper_pix, dtype=np.int32)], False, arm_rgb, 1, cv2.LINE_AA, _SHIFT)
        cv2.circle(out, arm_pix[0], int(3.0 * _ONE), joint_rgb, -1, cv2.LINE_AA, _SHIFT)
        for p in arm_pix[1:-1]:
            cv2.circle(out, p, int(1.8 * _ONE), joint_rgb, -1, cv2.LINE_AA, _SHIFT)


class ReachScripted:
    """Reference policy from ``info["factors"]`` (no pixels): damped least-squares steps of the tip to the target.

    Continuous actions are the clipped joint update; the discrete variant takes the single-joint action whose
    predicted tip is nearest the target.
    """

    def __init__(self, env: ReachEnv):
        self.env = env
        fs = env.factor_space
        self._joints = [f"joint{j}" for j in range(env.n_joints)]
        self._angle_centres = np.asarray(fs["joint0"].values)
        self._target_centres = np.asarray(fs["target_x"].values)

    def __call__(self, obs: np.ndarray, info: dict) -> Any:
        f, env = info["factors"], self.env
        angles = self._angle_centres[[f[j] for j in self._joints]]
        target = self._target_centres[[f["target_x"], f["target_y"]]]
        if env.discrete:
            tips = np.array([env.joint_positions(angles + d)[-1] for d in env._deltas])
            return int(np.argmin(np.hypot(*(tips - target).T)))
        points = env.joint_positions(angles)
        error = target - points[-1]
        # Jacobian of the tip: joint j moves every point after it, perpendicular to (tip - joint j).
        lever = points[-1] - points[:-1]
        jac = np.stack([-lever[:, 1], lever[:, 0]])  # (2, n_joints)
        step = jac.T @ np.linalg.solve(jac @ jac.T + 25.0 * np.eye(2), error)
        return np.clip(step / env.max_delta, -1.0, 1.0).astype(np.float32)
