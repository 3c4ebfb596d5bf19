"""``darla/CarRacing-v0``: Gymnasium's ``CarRacing-v3`` with named visual domains and 64 × 64 observations.

Domains: ``"source"`` (the default colours), ``"target"`` (colours randomised at every reset, drawn from the
distribution of CarRacing's own ``domain_randomize``), ``"target_hue"`` (default colours with the hue rotated by
120°, a :func:`envs.shifts.hue_rotate` shift) and ``"all"`` (each episode from one of them). Colours are drawn
from this adapter's own generator, never from the car's, so the same seed gives the same track and dynamics in
every domain (``domain_randomize`` itself draws colours before the track and would change it).

``info`` carries the car state and the next track points, which the scripted (pure-pursuit) reference policy
reads; CarRacing has no ground-truth factors, so it is not a :class:`envs.core.FactorEnv`.
"""
from __future__ import annotations

from typing import Any

import cv2
import gymnasium as gym
import numpy as np

from envs.core import FRAME_SIZE
from envs.shifts import hue_rotate

TARGET_HUE_DEGREES = 120.0
LOOKAHEAD = 8  # track points reported ahead of the car


class CarRacingDomains(gym.Env[np.ndarray, Any]):
    """CarRacing-v3 in named visual domains.

    Args:
        domain: "source", "target", "target_hue", "all", or names joined with "+" (each episode from one of them).
        render_mode: None or "rgb_array" (the current observation).
        size: observation side in pixels (64).
        discrete: ``Discrete(5)`` actions (nothing, left, right, gas, brake) instead of ``Box`` (steer, gas, brake).
        **car_kwargs: passed to ``CarRacing`` (e.g. ``lap_complete_percent``).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}
    DOMAINS = {"source": {}, "target": {}, "target_hue": {}}  # no factors: the names are the whole definition
    EPISODE_STEPS = 1000  # as CarRacing-v3 registers

    def __init__(self, domain: str = "source", render_mode: str | None = None, size: int = FRAME_SIZE,
                 discrete: bool = False, **car_kwargs: Any):
        from gymnasium.envs.box2d.car_racing import CarRacing  # needs gymnasium[box2d]

        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode: {render_mode!r} not supported; use one of {self.metadata['render_modes']}")
        if not isinstance(domain, str):
            raise ValueError("domain: CarRacing has no factors; use a domain name, not a mapping")
        parts = list(self.DOMAINS) if domain == "all" else domain.split("+")
        unknown = [p for p in parts if p not in self.DOMAINS]
        if unknown:
            raise ValueError(f"domain: unknown {unknown[0]!r}; domains are {', '.join([*self.DOMAINS, 'all'])}")
        self.domain, self._choices = domain, parts
        self.render_mode, self.size = render_mode, int(size)
        self.car_env = CarRacing(domain_randomize=False, continuous=not discrete, **car_kwargs)
        self._defaults = (self.car_env.road_color.copy(), self.car_env.bg_color.copy(),
                          self.car_env.grass_color.copy())
        self.action_space = self.car_env.action_space
        self.observation_space = gym.spaces.Box(0, 255, (self.size, self.size, 3), np.uint8)
        self._colour_rng: np.random.Generator | None = None
        self._episode_domain = parts[0]
        self._frame: np.ndarray | None = None
        self._track = np.zeros((1, 2))

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is not None or self._colour_rng is None:
            # Appearance has its own stream: the car's generator (track, dynamics) stays domain-independent.
            self._colour_rng = np.random.default_rng(None if seed is None else [seed, 0xC010])
        rng = self._colour_rng
        self._episode_domain = self._choices[int(rng.integers(len(self._choices)))]
        car = self.car_env
        if self._episode_domain == "target":  # CarRacing's domain_randomize distribution
            car.road_color = rng.uniform(0, 210, size=3)
            car.bg_color = rng.uniform(0, 210, size=3)
            car.grass_color = car.bg_color.copy()
            car.grass_color[rng.integers(3)] += 20
        else:
            car.road_color, car.bg_color, car.grass_color = (c.copy() for c in self._defaults)
        obs, info = car.reset(seed=seed, options=options)
        self._track = np.asarray(car.track)[:, 2:4]  # (x, y) of every track point, fixed for the episode
        return self._observe(obs), self._info(info)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.car_env.step(action)
        return self._observe(obs), float(reward), terminated, truncated, self._info(info)

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array" or self._frame is None:
            return None
        return self._frame.copy()

    def close(self) -> None:
        self.car_env.close()

    def scripted_policy(self) -> "CarRacingScripted":
        return CarRacingScripted(discrete=not self.car_env.continuous)

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        frame = cv2.resize(obs, (self.size, self.size), interpolation=cv2.INTER_AREA)
        if self._episode_domain == "target_hue":
            frame = hue_rotate(frame, TARGET_HUE_DEGREES)
        self._frame = frame
        return frame.copy()

    def _info(self, info: dict) -> dict:
        hull = self.car_env.car.hull
        x, y = hull.position
        nearest = int(np.argmin(((self._track - (x, y)) ** 2).sum(1)))
        ahead = self._track[(nearest + 1 + np.arange(LOOKAHEAD)) % len(self._track)]
        vx, vy = hull.linearVelocity
        return {**info, "domain": self._episode_domain,
                "car": np.array([x, y, hull.angle, vx, vy]), "track_ahead": ahead}


class CarRacingScripted:
    """Pure pursuit on ``info["car"]`` and ``info["track_ahead"]`` (no pixels): the CarRacing reference policy."""

    def __init__(self, discrete: bool = False, speed: float = 45.0):
        self.discrete, self.speed = discrete, speed

    def __call__(self, obs: np.ndarray, info: dict) -> Any:
        x, y, angle, vx, vy = info["car"]
        speed = float(np.hypot(vx, vy))
        target = info["track_ahead"][min(3 + int(speed / 15), LOOKAHEAD - 1)]
        heading = angle + np.pi / 2  # the hull's forward axis is its local +y
        want = np.arctan2(target[1] - y, target[0] - x)
        error = float((want - heading + np.pi) % (2 * np.pi) - np.pi)  # > 0: target to the left
        if self.discrete:
            if abs(error) > 0.15:
                return 2 if error > 0 else 1  # discrete 2 steers like a negative continuous steer
            return 3 if speed < self.speed else 0
        steer = float(np.clip(-2.0 * error, -1.0, 1.0))
        gas = 0.3 if speed < self.speed else 0.0
        brake = 0.3 if speed > self.speed + 15 else 0.0
        return np.array([steer, gas, brake], dtype=np.float32)
