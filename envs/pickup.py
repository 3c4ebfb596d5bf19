"""``darla/Pickup-v0``: a first-person room with objects to collect or avoid (a DeepMind-Lab seek-avoid analogue).

The agent stands in a square room and sees a 64-column raycast view: walls with panel seams and a skirting line,
a shaded floor and ceiling, and billboard objects. Objects come in two classes told apart by *shape* only: balls
(+1 when walked into) and pyramids (−1). A collected object reappears elsewhere, so a fixed-length episode keeps
rewards coming; a small potential-based shaping term rewards closing in on the nearest ball. Colours of walls, floor and both object classes, and the lighting, are the domain factors: the
source and ``target`` domains use disjoint colour sets, ``target_light`` keeps the source colours under new
lighting. Object colours are drawn independently of class, so colour never tells a ball from a pyramid.

Speed comes from precomputation (per-heading ray directions, a per-appearance column lookup table indexed by
wall side, seam and height) and from drawing objects with OpenCV only where they are.
"""
from __future__ import annotations

from typing import Any

import cv2
import gymnasium as gym
import numpy as np

from envs.core import FRAME_SIZE, DomainSpec, Factor, FactorEnv, bin_factor, colour_factor, discrete_action

ROOM = 6.0  # room side, world units; walls are 1 unit high
CAMERA_HEIGHT = 0.5
FOV_DEG = 70.0
HEADINGS = 32
AGENT_BINS = 24
OBJECT_BINS = 10
OBJECT_LOW, OBJECT_HIGH = 0.5, 5.5  # object cells keep objects clear of the walls
SPEED = 0.35
AGENT_MARGIN = 0.3  # closest the agent gets to a wall
PICK_RADIUS = 0.45
RESPAWN_CLEARANCE = 1.5  # a respawned object appears at least this far from the agent
BALL_RADIUS = 0.22
PYRAMID_HALF_WIDTH, PYRAMID_HEIGHT = 0.26, 0.5
SEAM_WIDTH = 0.06  # a darker panel seam every world unit along the walls
_SHIFT = 4  # cv2 fixed-point bits
_ONE = float(1 << _SHIFT)
_HALF = FRAME_SIZE // 2
_FOCAL = _HALF / np.tan(np.radians(FOV_DEG) / 2)
_CEILING = np.array([150, 160, 175], dtype=np.float64)
# Actions: (heading bins turned left, forward?) — forward, turn left, turn right, forward-left, forward-right.
ACTIONS = ((0, True), (2, False), (-2, False), (1, True), (-1, True))
ACTION_NAMES = ("forward", "turn_left", "turn_right", "forward_left", "forward_right")

WALL_COLOURS = ("tan", "slate", "brown", "grey", "lavender", "olive", "teal", "maroon")
FLOOR_COLOURS = ("charcoal", "sand", "forest", "steel", "rust", "mint", "navy", "plum")
OBJECT_COLOURS = ("red", "yellow", "blue", "white", "lime", "magenta", "orange", "cyan")
#: Lighting: an RGB gain (normal, dimmer; dark and bluish, bright and warm).
LIGHTING = ((1.0, 1.0, 1.0), (0.82, 0.82, 0.82), (0.45, 0.5, 0.62), (1.3, 1.15, 0.88))
LIGHTING_LABELS = ("normal", "dim", "dark_blue", "bright_warm")
#: View factors' bin edges: bearings in degrees across the 70° field of view, distances in world units.
VIEW_BEARINGS = (-35.0, -25.0, -15.0, -5.0, 5.0, 15.0, 25.0, 35.0)
VIEW_DISTANCES = (1.0, 2.0, 3.0, 4.0, 5.0)


NEAR_CLIP = 0.15  # objects nearer than this along the view axis are not drawn (nor counted as in view)
FOG = 0.12  # brightness falls off as 1 / (1 + FOG * distance): depth stays visible on flat colours


class PickupEnv(FactorEnv):
    """First-person seek-avoid room. Observations (64, 64, 3) uint8; actions ``Discrete(5)``.

    Actions: 0 forward, 1 turn left (22.5°), 2 turn right, 3 forward while turning left (11.25°), 4 forward while
    turning right. Reward +1 per ball, −1 per pyramid collected, plus a small shaping term towards the nearest
    ball. Registered episodes last 150 steps.

    Args:
        domain: "source", "target", "target_light", "all", names joined with "+", or a mapping visual factor ->
            allowed values.
        render_mode: None or "rgb_array".
        n_good: number of balls (+1) in the room.
        n_bad: number of pyramids (−1) in the room.
        shaping: reward per unit of distance closed to the nearest ball (negative when moving away); 0 gives the
            sparse seek-avoid task. Dense feedback for learners; it sums to at most ``shaping`` × 8.5 per episode.
    """

    DOMAINS = {
        "source": {"wall_colour": (0, 1, 2, 3), "floor_colour": (0, 1, 2, 3), "good_colour": (0, 1, 2, 3),
                   "bad_colour": (0, 1, 2, 3), "lighting": (0, 1)},
        "target": {"wall_colour": (4, 5, 6, 7), "floor_colour": (4, 5, 6, 7), "good_colour": (4, 5, 6, 7),
                   "bad_colour": (4, 5, 6, 7), "lighting": (0, 1)},
        "target_light": {"wall_colour": (0, 1, 2, 3), "floor_colour": (0, 1, 2, 3), "good_colour": (0, 1, 2, 3),
                         "bad_colour": (0, 1, 2, 3), "lighting": (2, 3)},
    }
    EPISODE_STEPS = 150

    def __init__(self, domain: DomainSpec = "source", render_mode: str | None = None, n_good: int = 3,
                 n_bad: int = 3, shaping: float = 0.1):
        if n_good < 1 or n_bad < 0 or n_good + n_bad > 12:
            raise ValueError(f"n_good, n_bad: need n_good >= 1, n_bad >= 0 and at most 12 objects, "
                             f"got {n_good}, {n_bad}")
        self.n_good, self.n_bad, self.shaping = int(n_good), int(n_bad), float(shaping)
        self.n_objects = self.n_good + self.n_bad
        super().__init__(domain, render_mode)
        self.action_space = gym.spaces.Discrete(len(ACTIONS))
        fs = self.factor_space
        self._k_agent = [fs.index("agent_x"), fs.index("agent_y")]
        self._k_heading = fs.index("heading")
        self._k_obj = np.array([[fs.index(f"object{i}_x"), fs.index(f"object{i}_y")] for i in range(self.n_objects)])
        self._centres_list = list(fs["agent_x"].values)
        self._object_centres = np.asarray(fs["object0_x"].values)
        self._good = np.arange(self.n_objects) < self.n_good
        self._good_list = self._good.tolist()
        # Per heading and column: ray direction and the ray parameter of the x and y walls it meets, as
        # t = wall/d - p/d, so a frame needs two multiply-adds per axis.
        offsets = np.arctan((np.arange(FRAME_SIZE) + 0.5 - _HALF) / _FOCAL)
        angles = 2 * np.pi * np.arange(HEADINGS)[:, None] / HEADINGS - offsets[None, :]
        self._rdx, self._rdy = np.cos(angles), np.sin(angles)
        tiny = np.abs(self._rdx) < 1e-12, np.abs(self._rdy) < 1e-12
        self._inv_dx = np.where(tiny[0], 1e12, 1.0 / np.where(tiny[0], 1.0, self._rdx))
        self._inv_dy = np.where(tiny[1], 1e12, 1.0 / np.where(tiny[1], 1.0, self._rdy))
        self._wall_tx = np.where(self._rdx >= 0, ROOM, 0.0) * self._inv_dx
        self._wall_ty = np.where(self._rdy >= 0, ROOM, 0.0) * self._inv_dy
        # Wall half-height in pixels is this over the ray distance (perpendicular distance: no fisheye).
        self._half_numerator = CAMERA_HEIGHT * _FOCAL / np.cos(offsets)
        heading_angles = 2 * np.pi * np.arange(HEADINGS) / HEADINGS
        self._fwd = np.stack([np.cos(heading_angles), np.sin(heading_angles)], axis=1)
        self._right = np.stack([np.sin(heading_angles), -np.cos(heading_angles)], axis=1)

    def _make_factors(self) -> list[Factor]:
        factors = [
            colour_factor("wall_colour", WALL_COLOURS), colour_factor("floor_colour", FLOOR_COLOURS),
            colour_factor("good_colour", OBJECT_COLOURS), colour_factor("bad_colour", OBJECT_COLOURS),
            Factor("lighting", LIGHTING, visual=True, labels=LIGHTING_LABELS),
            bin_factor("agent_x", 0, ROOM, AGENT_BINS), bin_factor("agent_y", 0, ROOM, AGENT_BINS),
            Factor("heading", tuple(360.0 * h / HEADINGS for h in range(HEADINGS))),
        ]
        for i in range(self.n_objects):
            factors += [bin_factor(f"object{i}_x", OBJECT_LOW, OBJECT_HIGH, OBJECT_BINS),
                        bin_factor(f"object{i}_y", OBJECT_LOW, OBJECT_HIGH, OBJECT_BINS)]
        return factors

    @property
    def view_sizes(self) -> dict[str, int]:
        """The view factors' bins: bearing (screen order; the outer two mean none in view, the nearest being to
        that side) and distance (the last bin: 5 units or more, or none in view) of the nearest ball in view and of
        the nearest pyramid in view, and the distance to the wall straight ahead."""
        sizes = {"ball_bearing": len(VIEW_BEARINGS) + 1, "ball_distance": len(VIEW_DISTANCES) + 1}
        if self.n_bad:
            sizes.update(pyramid_bearing=len(VIEW_BEARINGS) + 1, pyramid_distance=len(VIEW_DISTANCES) + 1)
        sizes["wall_distance"] = len(VIEW_DISTANCES) + 1
        return sizes

    def view_factors(self, factors: np.ndarray) -> dict[str, np.ndarray]:
        """Where things are relative to the agent, which is what a first-person frame shows (its absolute
        position and heading it does not determine: the room looks the same from its four sides)."""
        f = self.factor_space.check(np.atleast_2d(factors))
        pos = np.asarray(self._centres_list)[f[:, self._k_agent]]  # (n, 2)
        h = f[:, self._k_heading]
        fwd, right = self._fwd[h], self._right[h]
        rel = self._object_centres[f[:, self._k_obj]] - pos[:, None, :]  # (n, objects, 2)
        depth, lateral = (rel * fwd[:, None]).sum(-1), (rel * right[:, None]).sum(-1)
        bearing = np.degrees(np.arctan2(lateral, depth))  # positive: right of the view's centre
        dist = np.hypot(depth, lateral)
        rows = np.arange(len(f))
        out: dict[str, np.ndarray] = {}
        visible = (np.abs(bearing) < VIEW_BEARINGS[-1]) & (depth >= NEAR_CLIP)
        for name, cls in (("ball", self._good), ("pyramid", ~self._good)):
            if not cls.any():
                continue
            # the nearest one in view; with none in view, the nearest (its bearing then says only "off-screen")
            seen = visible & cls
            cost = np.where(seen, dist, np.where(cls, dist + 1e6, np.inf))
            pick = np.argmin(cost, axis=1)
            out[f"{name}_bearing"] = np.digitize(bearing[rows, pick], VIEW_BEARINGS)
            out[f"{name}_distance"] = np.where(seen.any(1), np.digitize(dist[rows, pick], VIEW_DISTANCES),
                                               len(VIEW_DISTANCES))  # none in view: the "beyond 5 units" bin
        with np.errstate(divide="ignore"):
            ahead = np.where(fwd > 1e-9, (ROOM - pos) / fwd, np.where(fwd < -1e-9, -pos / fwd, np.inf)).min(1)
        out["wall_distance"] = np.digitize(ahead, VIEW_DISTANCES)
        return {k: v.astype(np.int64) for k, v in out.items()}

    def scripted_policy(self) -> "PickupScripted":
        return PickupScripted(self)

    # --- dynamics -------------------------------------------------------------------------------------------
    def _reset_state(self) -> None:
        rng = self.np_random
        self._pos = rng.uniform(AGENT_MARGIN + 0.2, ROOM - AGENT_MARGIN - 0.2, size=2)
        self._heading = int(rng.integers(HEADINGS))
        self._objects = np.full((self.n_objects, 2), -1, dtype=np.int64)
        for i in range(self.n_objects):
            self._objects[i] = self._free_cell(clearance=1.0)
        self._sync()

    def _free_cell(self, clearance: float) -> np.ndarray:
        """A random object cell not taken by another object and at least ``clearance`` from the agent."""
        c = self._object_centres
        taken = {tuple(o) for o in self._objects.tolist()}
        while True:
            cell = self.np_random.integers(0, OBJECT_BINS, size=2)
            if tuple(cell.tolist()) in taken:
                continue
            if np.hypot(c[cell[0]] - self._pos[0], c[cell[1]] - self._pos[1]) >= clearance:
                return cell

    def _sync(self) -> None:
        f = self._f
        f[self._k_agent] = np.minimum((self._pos * (AGENT_BINS / ROOM)).astype(np.int64), AGENT_BINS - 1)
        f[self._k_heading] = self._heading
        f[self._k_obj] = self._objects

    def _step_state(self, action: Any) -> tuple[float, bool]:
        a = discrete_action(action, len(ACTIONS))
        turn, forward = ACTIONS[a]
        before = self._nearest_ball()
        self._heading = (self._heading + turn) % HEADINGS
        if forward:
            self._pos = np.clip(self._pos + SPEED * self._fwd[self._heading], AGENT_MARGIN, ROOM - AGENT_MARGIN)
        obj_pos = self._object_centres[self._objects]
        hits = np.flatnonzero(np.hypot(*(obj_pos - self._pos).T) < PICK_RADIUS)
        reward = 0.0
        for i in hits:
            reward += 1.0 if self._good[i] else -1.0
            self._objects[i] = -1
            self._objects[i] = self._free_cell(clearance=RESPAWN_CLEARANCE)
        self._sync()
        if self.shaping:
            # Potential-based (Ng et al. 1999, potential = -distance to the nearest ball): over an episode it adds
            # at most shaping x the room diagonal, so returns stay comparable with the sparse task.
            reward += self.shaping * (before - self._nearest_ball())
        return reward, False

    def _nearest_ball(self) -> float:
        balls = self._object_centres[self._objects[: self.n_good]]
        return float(np.sqrt(((balls - self._pos) ** 2).sum(1).min()))

    # --- rendering ------------------------------------------------------------------------------------------
    def _build_appearance(self, visual: tuple[int, ...]) -> tuple[np.ndarray, list[float], list[float]]:
        """Column lookup table ((side, seam, half-height) flattened, row, rgb) and the lit object colours."""
        fs = self.factor_space
        values = {fs.names[k]: fs.factors[k].values[v] for k, v in zip(fs.visual, visual)}
        light = np.asarray(values["lighting"])
        wall, floor = np.asarray(values["wall_colour"], float), np.asarray(values["floor_colour"], float)
        rows = np.arange(FRAME_SIZE)[:, None]
        below = (rows + 0.5 - _HALF) / _HALF  # 0 at the horizon, 1 at the bottom edge
        background = np.where(rows < _HALF, _CEILING * (0.75 + 0.25 * (_HALF - rows) / _HALF),
                              floor * (0.35 + 0.65 * below))
        half = np.arange(_HALF + 1)
        distance = CAMERA_HEIGHT * _FOCAL / np.maximum(half, 0.5)
        side_shade = np.array([1.0, 0.72])[:, None, None]
        seam_shade = np.array([1.0, 0.55])[None, :, None]
        shade = side_shade * seam_shade * (1.0 / (1.0 + FOG * distance))[None, None, :]  # (side, seam, half)
        top, bottom = _HALF - half[:, None], _HALF + half[:, None]  # (half, 1)
        skirting = np.maximum(1, half // 8)[:, None]
        in_wall = (rows.T >= top) & (rows.T < bottom)  # (half, row)
        skirt = in_wall & (rows.T >= bottom - skirting)
        wall_col = wall * np.where(skirt, 0.45, 1.0)[..., None]  # (half, row, rgb)
        lut = np.where(in_wall[None, None, :, :, None], wall_col[None, None] * shade[..., None, None],
                       background[None, None, None])
        lut = np.clip(lut * light, 0, 255).astype(np.uint8).reshape(-1, FRAME_SIZE, 3)  # rows: (side, seam, half)
        good = np.asarray(values["good_colour"], float) * light
        bad = np.asarray(values["bad_colour"], float) * light
        return lut, good.tolist(), bad.tolist()

    def _render_into(self, out: np.ndarray, f: np.ndarray, appearance: Any) -> None:
        lut, good_rgb, bad_rgb = appearance
        fl = f.tolist()
        h = fl[self._k_heading]
        px, py = self._centres_list[fl[self._k_agent[0]]], self._centres_list[fl[self._k_agent[1]]]
        tx = self._wall_tx[h] - px * self._inv_dx[h]
        ty = self._wall_ty[h] - py * self._inv_dy[h]
        y_side = tx >= ty
        t = np.minimum(tx, ty)
        along = np.where(y_side, px + t * self._rdx[h], py + t * self._rdy[h])  # >= 0: inside the room
        # Table row = (side, seam, half-height), built in float and truncated once (offsets are integers).
        key = np.minimum(self._half_numerator / t, _HALF)
        key += (_HALF + 1) * (along - along.astype(np.int64) < SEAM_WIDTH)
        key += 2 * (_HALF + 1) * y_side
        # One gather gives every column; cv2.transpose is ~10x faster than a numpy transposed copy.
        cv2.transpose(np.take(lut, key.astype(np.intp), axis=0), out)
        # Objects: billboards, drawn far to near (the room is convex, so walls never hide them). Python floats:
        # numpy scalar arithmetic would cost more than the drawing.
        rel = self._object_centres[f[self._k_obj]] - (px, py)
        depth = (rel @ self._fwd[h]).tolist()
        lateral = (rel @ self._right[h]).tolist()
        for i in sorted(range(len(depth)), key=depth.__getitem__, reverse=True):
            z = depth[i]
            if z < NEAR_CLIP:
                break
            scale = _FOCAL / z
            sx = _HALF + lateral[i] * scale
            floor_y = _HALF + CAMERA_HEIGHT * scale
            fog = 1.0 / (1.0 + FOG * z)
            if self._good_list[i]:
                r = BALL_RADIUS * scale
                if sx + r < 0 or sx - r > FRAME_SIZE:
                    continue
                cv2.circle(out, (int(sx * _ONE), int((floor_y - r) * _ONE)), int(r * _ONE),
                           (good_rgb[0] * fog, good_rgb[1] * fog, good_rgb[2] * fog), -1, cv2.LINE_AA, _SHIFT)
            else:
                w, top = PYRAMID_HALF_WIDTH * scale, PYRAMID_HEIGHT * scale
                if sx + w < 0 or sx - w > FRAME_SIZE:
                    continue
                x0, x1, xm = int((sx - w) * _ONE), int((sx + w) * _ONE), int(sx * _ONE)
                yb, yt = int(floor_y * _ONE), int((floor_y - top) * _ONE)
                cv2.fillConvexPoly(out, np.array([[x0, yb], [x1, yb], [xm, yt]], dtype=np.int32),
                                   (bad_rgb[0] * fog, bad_rgb[1] * fog, bad_rgb[2] * fog), cv2.LINE_AA, _SHIFT)


class PickupScripted:
    """Reference policy from ``info["factors"]`` (no pixels): head for the cheapest ball, steer round pyramids.

    A ball's cost is its distance plus a penalty for each pyramid near the straight path to it. When a pyramid
    blocks the path the policy aims at a waypoint beside it; it never steps within reach of a pyramid (it turns
    away from it instead).
    """

    def __init__(self, env: PickupEnv):
        fs = env.factor_space
        self._agent_centres = np.asarray(fs["agent_x"].values)
        self._object_centres = np.asarray(fs["object0_x"].values)
        self._names = [(f"object{i}_x", f"object{i}_y") for i in range(env.n_objects)]
        self._good = env._good.copy()
        self._fwd = env._fwd

    @staticmethod
    def _path_gaps(pos: np.ndarray, ends: np.ndarray, point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance from ``point`` to each segment pos -> ends[i], and where along it (0..1) the closest point is."""
        seg = ends - pos
        u = np.clip(((point - pos) @ seg.T) / np.maximum((seg * seg).sum(1), 1e-9), 0, 1)
        return np.hypot(*(pos + u[:, None] * seg - point).T), u

    def __call__(self, obs: np.ndarray, info: dict) -> int:
        f = info["factors"]
        pos = self._agent_centres[[f["agent_x"], f["agent_y"]]]
        objects = self._object_centres[[[f[x], f[y]] for x, y in self._names]]
        balls, pyramids = objects[self._good], objects[~self._good]
        cost = np.hypot(*(balls - pos).T)
        for p in pyramids:
            cost += 3.0 * np.maximum(0.0, 0.8 - self._path_gaps(pos, balls, p)[0])
        target = balls[int(np.argmin(cost))]
        blockers = [(u[0], p) for p in pyramids
                    for gap, u in [self._path_gaps(pos, target[None], p)] if gap[0] < 0.75 and 0 < u[0] < 1]
        if blockers:  # aim beside the first pyramid on the way, on the side the path already passes
            p = min(blockers, key=lambda b: b[0])[1]
            d = target - pos
            normal = np.array([-d[1], d[0]]) / max(np.hypot(*d), 1e-9)
            side = -1.0 if (normal @ (p - pos)) > 0 else 1.0
            target = p + side * 0.95 * normal
        heading = f["heading"]
        step = 2 * np.pi / HEADINGS

        def bearing(point: np.ndarray) -> float:
            want = np.arctan2(point[1] - pos[1], point[0] - pos[0])
            return float((want - step * heading + np.pi) % (2 * np.pi) - np.pi)

        diff = bearing(target)
        if abs(diff) > 1.5 * step:
            order = [1, 3] if diff > 0 else [2, 4]
        elif abs(diff) > 0.5 * step:
            order = [3, 0] if diff > 0 else [4, 0]
        else:
            order = [0, 3, 4]
        for a in order:
            turn, forward = ACTIONS[a]
            if not forward or len(pyramids) == 0:
                return a
            nxt = pos + SPEED * self._fwd[(heading + turn) % HEADINGS]
            if np.hypot(*(pyramids - nxt).T).min() > PICK_RADIUS + 0.1:
                return a
        nearest = pyramids[int(np.argmin(np.hypot(*(pyramids - pos).T)))]
        return 2 if bearing(nearest) > 0 else 1
