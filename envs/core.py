"""Base of darla's domain-shift environments: a factor space, named visual domains, rendering from factors.

Every scene is described by named **factors**, each an integer index into a list of values (a colour, a position
bin, a heading bin, …). Factors are either *visual* (appearance only: colours, lighting — what a domain chooses)
or *state* (positions, headings, object kinds — what the dynamics change). An environment renders its
observation from the factor vector alone, so ``render_from_factors(info["factors"])`` reproduces the observation
exactly and a scene doubles as ground-truth data for the disentanglement metrics (:class:`SceneData`).

A **domain** is a set of allowed values per visual factor. Source and target domains share actions, dynamics
and rewards: visual factors are drawn at reset with a fixed number of uniform variates whatever the domain, so
the same seed and actions give the same state trajectory and rewards in every domain.
"""
from __future__ import annotations

import abc
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Union

import gymnasium as gym
import numpy as np

FRAME_SIZE = 64
FRAME_SHAPE = (FRAME_SIZE, FRAME_SIZE, 3)

#: A domain as passed to an environment: a registered name ("source", "target", "all", several joined with "+"
#: for their per-factor union), or a mapping visual factor -> allowed values (indices or value labels); visual
#: factors a mapping leaves out keep their source values.
DomainSpec = Union[str, Mapping[str, Sequence[Union[int, str]]]]

#: Colours shared by the environments' palettes (RGB).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 50, 47), "orange": (240, 140, 30), "yellow": (235, 215, 40), "lime": (150, 220, 40),
    "green": (40, 170, 70), "teal": (30, 160, 150), "cyan": (60, 210, 230), "blue": (40, 80, 220),
    "navy": (25, 35, 110), "purple": (130, 50, 190), "magenta": (220, 60, 200), "pink": (250, 150, 190),
    "brown": (130, 80, 40), "tan": (200, 170, 120), "white": (240, 240, 240), "grey": (128, 128, 128),
    "charcoal": (50, 50, 55), "black": (15, 15, 15), "olive": (110, 120, 40), "maroon": (110, 25, 35),
    "sand": (225, 205, 150), "slate": (90, 105, 125), "mint": (160, 230, 190), "lavender": (180, 160, 230),
    "forest": (30, 80, 40), "plum": (80, 30, 70), "rust": (160, 70, 30), "steel": (140, 160, 180),
}


@dataclass(frozen=True)
class Factor:
    """One generative factor: its name, the values its indices stand for, and whether it is visual."""

    name: str
    values: tuple[Any, ...]
    visual: bool = False
    labels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.values) == 0:
            raise ValueError(f"factor {self.name!r}: no values")
        if self.labels is not None and len(self.labels) != len(self.values):
            raise ValueError(f"factor {self.name!r}: {len(self.labels)} labels for {len(self.values)} values")

    @property
    def size(self) -> int:
        return len(self.values)

    def label(self, index: int) -> str:
        """Human-readable name of value ``index`` (its label, else the value itself)."""
        return self.labels[index] if self.labels is not None else str(self.values[index])


def colour_factor(name: str, colours: Sequence[str]) -> Factor:
    """A visual factor over named colours from :data:`COLOURS`."""
    return Factor(name, tuple(COLOURS[c] for c in colours), visual=True, labels=tuple(colours))


def bin_factor(name: str, low: float, high: float, bins: int) -> Factor:
    """A state factor of ``bins`` equal-width bins over [low, high]; each value is its bin centre."""
    edges = np.linspace(low, high, bins + 1)
    return Factor(name, tuple(float(c) for c in (edges[:-1] + edges[1:]) / 2))


class FactorSpace:
    """An ordered set of factors, with conversions between a name -> index mapping and an index vector."""

    def __init__(self, factors: Sequence[Factor]):
        self.factors = tuple(factors)
        self.names = tuple(f.name for f in self.factors)
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"factor names must be unique, got {self.names}")
        self.sizes = tuple(f.size for f in self.factors)
        self.visual = tuple(i for i, f in enumerate(self.factors) if f.visual)
        self._index = {n: i for i, n in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.factors)

    def __getitem__(self, name: str) -> Factor:
        return self.factors[self.index(name)]

    def index(self, name: str) -> int:
        """Position of factor ``name`` in the vector (an unknown name is a clear error)."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"unknown factor {name!r}; factors are {', '.join(self.names)}") from None

    def vector(self, factors: Mapping[str, int]) -> np.ndarray:
        """A name -> index mapping (e.g. ``info["factors"]``) as an int64 vector in factor order."""
        missing = [n for n in self.names if n not in factors]
        if missing:
            raise KeyError(f"factors: missing {', '.join(missing)}")
        return self.check(np.array([[factors[n] for n in self.names]], dtype=np.int64))[0]

    def as_dict(self, vector: np.ndarray) -> dict[str, int]:
        """An index vector as a name -> index mapping."""
        return dict(zip(self.names, np.asarray(vector).tolist()))

    def check(self, factors: np.ndarray, where: str = "factors") -> np.ndarray:
        """Validate an (n, K) integer factor array against the factor sizes; returns it as int64."""
        f = np.asarray(factors)
        if f.ndim != 2 or f.shape[1] != len(self.names):
            raise ValueError(f"{where}: expected shape (n, {len(self.names)}), got {tuple(f.shape)}")
        if not np.issubdtype(f.dtype, np.integer):
            raise ValueError(f"{where}: factor indices must be integers, got dtype {f.dtype}")
        bad = (f < 0) | (f >= np.asarray(self.sizes))
        if bad.any():
            k = int(np.argwhere(bad)[0][1])
            raise ValueError(f"{where}: factor {self.names[k]!r} has an index outside [0, {self.sizes[k]})")
        return f.astype(np.int64, copy=False)


@dataclass(frozen=True, eq=False)
class Domain:
    """Allowed value indices per factor (every value for state factors), minus the combinations of any
    ``excluded`` domain (a held-out target: its values may appear, never all together)."""

    name: str
    allowed: tuple[np.ndarray, ...]
    excluded: tuple["Domain", ...] = ()

    def contains(self, factors: np.ndarray) -> np.ndarray:
        """Boolean (n,) mask of factor rows (n, K) whose every value is allowed (and that no excluded domain holds)."""
        f = np.atleast_2d(factors)
        inside = np.all([np.isin(f[:, k], a) for k, a in enumerate(self.allowed)], axis=0)
        for d in self.excluded:
            inside &= ~d.contains(f)
        return inside

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, K) int64 factor indices, each factor uniform over its allowed values, independently (rows an
        excluded domain holds are redrawn)."""
        cols = [a[rng.integers(0, len(a), size=n)] for a in self.allowed]
        out = np.stack(cols, axis=1).astype(np.int64)
        bad = ~self.contains(out)
        while bad.any():
            out[bad] = np.stack([a[rng.integers(0, len(a), size=int(bad.sum()))] for a in self.allowed], axis=1)
            bad = ~self.contains(out)
        return out

    def visual_combinations(self, visual: Sequence[int]) -> np.ndarray:
        """Every allowed combination (M, len(visual)) of the ``visual`` factors' values, excluded ones removed."""
        grids = np.meshgrid(*[self.allowed[k] for k in visual], indexing="ij")
        combos = np.stack([g.ravel() for g in grids], axis=1).astype(np.int64)
        keep = np.ones(len(combos), dtype=bool)
        for d in self.excluded:  # a domain allows every state value, so its visual values alone decide
            keep &= ~np.all([np.isin(combos[:, j], d.allowed[k]) for j, k in enumerate(visual)], axis=0)
        return combos[keep]


def resolve_domain(space: FactorSpace, named: Mapping[str, Mapping[str, Sequence[int]]], domain: DomainSpec) -> Domain:
    """Turn a :data:`DomainSpec` into a :class:`Domain` over ``space``.

    ``named`` maps each registered domain name to {visual factor: allowed indices}; it must contain ``"source"``.
    """
    full = [np.arange(s, dtype=np.int64) for s in space.sizes]

    def from_mapping(name: str, mapping: Mapping[str, Sequence[int | str]]) -> Domain:
        allowed = list(full)
        for k, v in named["source"].items():
            allowed[space.index(k)] = np.asarray(sorted(set(v)), dtype=np.int64)
        for key, values in mapping.items():
            if key not in space.names:
                raise ValueError(f"domain: unknown factor {key!r}; visual factors are "
                                 f"{', '.join(space.names[i] for i in space.visual)}")
            k = space.index(key)
            factor = space.factors[k]
            if not factor.visual:
                raise ValueError(f"domain: {key!r} is a state factor; a domain chooses only visual factors "
                                 f"({', '.join(space.names[i] for i in space.visual)})")
            if isinstance(values, (str, int, np.integer)):
                values = [values]
            idx = [_value_index(factor, v) for v in values]
            if not idx:
                raise ValueError(f"domain: factor {key!r} has no allowed values")
            allowed[k] = np.asarray(sorted(set(idx)), dtype=np.int64)
        return Domain(name, tuple(allowed))

    if isinstance(domain, Mapping):
        return from_mapping("custom", domain)
    if not isinstance(domain, str):
        raise TypeError(f"domain: expected a name or a mapping factor -> values, got {type(domain).__name__}")
    if domain == "all":
        return Domain("all", tuple(full))
    if "~" in domain:  # "source+target~target": the union, without any combination the named domains hold
        kept, *held_out = domain.split("~")
        base = resolve_domain(space, named, kept)
        excluded = tuple(resolve_domain(space, named, h) for h in held_out)
        return Domain(domain, base.allowed, excluded)
    parts = domain.split("+")
    unknown = [p for p in parts if p not in named]
    if unknown:
        raise ValueError(f"domain: unknown {unknown[0]!r}; domains are {', '.join([*named, 'all'])} "
                         "(join names with '+' for their union)")
    resolved = [from_mapping(p, named[p]) for p in parts]
    allowed = tuple(np.unique(np.concatenate([d.allowed[k] for d in resolved])) for k in range(len(space)))
    return Domain(domain, allowed)


def _value_index(factor: Factor, value: int | str) -> int:
    if isinstance(value, str):
        if factor.labels is None or value not in factor.labels:
            choices = ", ".join(factor.labels) if factor.labels else f"indices 0..{factor.size - 1}"
            raise ValueError(f"domain: factor {factor.name!r} has no value {value!r}; values are {choices}")
        return factor.labels.index(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"domain: factor {factor.name!r} values must be indices or labels, got {value!r}")
    if not 0 <= int(value) < factor.size:
        raise ValueError(f"domain: factor {factor.name!r} index {int(value)} outside [0, {factor.size})")
    return int(value)


def discrete_action(action: Any, n: int) -> int:
    """``action`` for a ``Discrete(n)`` space as an ``int``; anything but an integer in [0, n) is a ValueError.

    Accepts Python ints, numpy integer scalars and integer arrays of one element (SB3 passes ``np.int64``). A
    float is refused rather than truncated: ``int(2.5)`` would silently act as action 2.
    """
    if isinstance(action, (int, np.integer)) and not isinstance(action, bool):  # the per-step fast path
        value = int(action)
    else:
        a = np.asarray(action)
        if isinstance(action, np.bool_) or a.size != 1 or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"action: expected an integer in [0, {n}) for action space Discrete({n}), got {action!r}")
        value = int(a.reshape(()))
    if not 0 <= value < n:
        raise ValueError(f"action: expected an integer in [0, {n}) for action space Discrete({n}), got {action!r}")
    return value


class FactorEnv(gym.Env[np.ndarray, Any], abc.ABC):
    """A Gymnasium environment whose observation is rendered from its factor vector.

    Subclasses define ``DOMAINS`` and implement :meth:`_make_factors`, :meth:`_reset_state` (set the state
    factors, drawing randomness from ``self.np_random``), :meth:`_step_state` (apply an action, return reward and
    termination), :meth:`_build_appearance` and :meth:`_render_into` (draw a factor vector into a frame).
    Episode length follows the Gymnasium convention: registration wraps the environment in ``TimeLimit`` with
    ``EPISODE_STEPS`` (``gym.make(..., max_episode_steps=N)`` overrides it).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}
    #: Named domains: name -> {visual factor: allowed value indices}. Must contain "source".
    DOMAINS: ClassVar[dict[str, dict[str, tuple[int, ...]]]] = {}
    #: Episode length registered with Gymnasium (the TimeLimit it applies).
    EPISODE_STEPS: ClassVar[int] = 100

    def __init__(self, domain: DomainSpec = "source", render_mode: str | None = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode: {render_mode!r} not supported; use one of {self.metadata['render_modes']}")
        self.render_mode = render_mode
        self.factor_space = FactorSpace(self._make_factors())
        self.domain = resolve_domain(self.factor_space, self.DOMAINS, domain)
        self.observation_space = gym.spaces.Box(0, 255, FRAME_SHAPE, np.uint8)
        self._f = np.zeros(len(self.factor_space), dtype=np.int64)
        self._visual = np.asarray(self.factor_space.visual, dtype=np.int64)
        self._visual_allowed = [self.domain.allowed[k] for k in self.factor_space.visual]
        # With held-out combinations, one variate picks a whole allowed combination (the rest are still drawn).
        self._visual_combos = self.domain.visual_combinations(self._visual) if self.domain.excluded else None
        self._appearances: dict[tuple[int, ...], Any] = {}
        self._frame: np.ndarray | None = None

    # --- subclass hooks -------------------------------------------------------------------------------------
    @abc.abstractmethod
    def _make_factors(self) -> list[Factor]:
        """The environment's factors, visual and state, in vector order."""

    @abc.abstractmethod
    def _reset_state(self) -> None:
        """Draw a new initial state with ``self.np_random`` and write its state factors into ``self._f``."""

    @abc.abstractmethod
    def _step_state(self, action: Any) -> tuple[float, bool]:
        """Apply ``action``, update the state factors in ``self._f``; return (reward, terminated)."""

    @abc.abstractmethod
    def _build_appearance(self, visual: tuple[int, ...]) -> Any:
        """Precompute whatever drawing needs for one combination of visual factor indices (cached)."""

    @abc.abstractmethod
    def _render_into(self, out: np.ndarray, f: np.ndarray, appearance: Any) -> None:
        """Draw factor vector ``f`` into the (64, 64, 3) uint8 frame ``out``."""

    # --- Gymnasium API --------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        # One uniform variate per visual factor whatever the domain: the state draws that follow use the same
        # stream in every domain, so domains differ only in appearance.
        u = self.np_random.random(len(self._visual))
        if self._visual_combos is not None:
            self._f[self._visual] = self._visual_combos[int(u[0] * len(self._visual_combos))]
        else:
            for j, (k, allowed) in enumerate(zip(self._visual, self._visual_allowed)):
                self._f[k] = allowed[int(u[j] * len(allowed))]
        self._reset_state()
        return self._observe(), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._frame is None:
            raise RuntimeError("step() called before reset()")
        reward, terminated = self._step_state(action)
        return self._observe(), float(reward), bool(terminated), False, self._info()

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        if self._frame is None:
            raise RuntimeError("render() called before reset()")
        return self._frame.copy()

    # --- factors --------------------------------------------------------------------------------------------
    @property
    def factors(self) -> np.ndarray:
        """The current factor vector (a copy)."""
        return self._f.copy()

    def factor_vector(self, factors: Mapping[str, int]) -> np.ndarray:
        """``info["factors"]`` (name -> index) as an int64 vector in factor order."""
        return self.factor_space.vector(factors)

    def view_factors(self, factors: np.ndarray) -> dict[str, np.ndarray]:
        """Where things are, as a frame shows it: name -> (n,) int64 ordinal bins for factor rows (n, K).

        The default is the state factors themselves, right for a view from above (Sprites, Reacher). A
        first-person env overrides it with what its view determines (bearings and distances from the agent): its
        absolute state is not a function of the frame, so a code cannot be asked to carry it. Used to weight
        domain invariance and to score how much of "where" a code holds; not for metrics that fix one factor and
        resample the rest (view factors are functions of the state, not independent of it).
        """
        f = self.factor_space.check(np.atleast_2d(factors))
        return {n: f[:, self.factor_space.index(n)].copy() for n in self.view_sizes}

    @property
    def view_sizes(self) -> dict[str, int]:
        """Name -> number of bins of each view factor (:meth:`view_factors`), in order."""
        space = self.factor_space
        return {n: space.sizes[k] for k, n in enumerate(space.names) if k not in set(space.visual)}

    def scripted_policy(self) -> Callable[[np.ndarray, dict], Any]:
        """A non-learned reference policy ``(obs, info) -> action`` that reads ``info`` (never pixels)."""
        raise TypeError(f"{type(self).__name__} defines no scripted policy")

    def render_from_factors(self, factors: Mapping[str, int] | np.ndarray) -> np.ndarray:
        """The (64, 64, 3) uint8 frame of a factor assignment (a name -> index mapping or a (K,) vector)."""
        f = self.factor_space.vector(factors) if isinstance(factors, Mapping) else np.asarray(factors)
        return self.render_factors(f.reshape(1, -1))[0]

    def render_factors(self, factors: np.ndarray) -> np.ndarray:
        """Frames (n, 64, 64, 3) uint8 for factor index rows (n, K)."""
        f = self.factor_space.check(factors)
        out = np.empty((len(f), *FRAME_SHAPE), dtype=np.uint8)
        for i, row in enumerate(f):
            self._render_into(out[i], row, self._appearance(row))
        return out

    def _appearance(self, f: np.ndarray) -> Any:
        key = tuple(f[self._visual].tolist())
        app = self._appearances.get(key)
        if app is None:
            if len(self._appearances) >= 512:  # bounded: render_from_factors may visit every combination
                self._appearances.clear()
            app = self._appearances[key] = self._build_appearance(key)
        return app

    def _observe(self) -> np.ndarray:
        frame = np.empty(FRAME_SHAPE, dtype=np.uint8)
        self._render_into(frame, self._f, self._appearance(self._f))
        self._frame = frame
        return frame.copy()

    def _info(self) -> dict[str, Any]:
        return {"factors": dict(zip(self.factor_space.names, self._f.tolist()))}


class SceneData:
    """An environment's scene as ground-truth data (duck-types ``vision.data.ground_truth.GroundTruthData``).

    ``sample_factors`` draws each factor uniformly and independently over the values ``domain`` allows (the
    full product, like dSprites); ``render`` accepts any valid factor indices.
    """

    def __init__(self, env: FactorEnv, domain: DomainSpec = "all"):
        self.env = env
        self.domain = resolve_domain(env.factor_space, env.DOMAINS, domain)

    @property
    def factor_names(self) -> tuple[str, ...]:
        return self.env.factor_space.names

    @property
    def factor_sizes(self) -> tuple[int, ...]:
        return self.env.factor_space.sizes

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        return FRAME_SHAPE

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.domain.sample(n, rng)

    def render(self, factors: np.ndarray) -> np.ndarray:
        return self.env.render_factors(factors)


class ViewSceneData(SceneData):
    """:class:`SceneData` whose factors are the env's factors followed by its view factors
    (:meth:`FactorEnv.view_factors`): what a code is scored against on a first-person env.

    For metrics that score codes against sampled factors (MIG, DCI, SAP, modularity), not for those that fix one
    factor and resample the others: view factors are functions of the state.
    """

    def __init__(self, env: FactorEnv, domain: DomainSpec = "all"):
        super().__init__(env, domain)
        space = env.factor_space
        self._k = len(space)
        self._extra = [n for n in env.view_sizes if n not in space.names]  # by default they are the state factors
        self._names = tuple(space.names) + tuple(self._extra)
        self._sizes = tuple(space.sizes) + tuple(env.view_sizes[n] for n in self._extra)

    @property
    def factor_names(self) -> tuple[str, ...]:
        return self._names

    @property
    def factor_sizes(self) -> tuple[int, ...]:
        return self._sizes

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        full = self.domain.sample(n, rng)
        view = self.env.view_factors(full)
        return np.concatenate([full, *(view[name][:, None] for name in self._extra)], axis=1)

    def render(self, factors: np.ndarray) -> np.ndarray:
        return self.env.render_factors(np.asarray(factors)[:, :self._k])


@dataclass(frozen=True)
class ScenePairs:
    """The same scenes rendered in the source and in every other named domain of an env.

    ``factors`` (N, K) are the source scenes' factor indices named by ``factor_names`` (the env's factors followed
    by its view factors, as :class:`ViewSceneData`); ``frames[domain]`` (N, H, W, C) uint8 renders scene i in that
    domain, with every state factor kept and the visual factors redrawn from the domain's values.
    """

    factors: np.ndarray
    factor_names: tuple[str, ...]
    view_names: tuple[str, ...]
    frames: dict[str, np.ndarray]


def same_scenes(env: FactorEnv, num_scenes: int, rng: np.random.Generator) -> ScenePairs:
    """Draw ``num_scenes`` source scenes of ``env`` and render each in every domain of ``env.DOMAINS``."""
    if num_scenes < 2:
        raise ValueError(f"num_scenes: must be >= 2, got {num_scenes}")
    space = env.factor_space
    visual = list(space.visual)
    data = ViewSceneData(env, "source")
    factors = data.sample_factors(num_scenes, rng)
    scenes = factors[:, :len(space)]
    frames = {"source": env.render_factors(scenes)}
    for name in env.DOMAINS:
        if name == "source":
            continue
        moved = scenes.copy()
        moved[:, visual] = resolve_domain(space, env.DOMAINS, name).sample(num_scenes, rng)[:, visual]
        frames[name] = env.render_factors(moved)
    return ScenePairs(factors, data.factor_names, tuple(env.view_sizes), frames)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename.

    envs/ may not import vision/ (where the project's general helper lives), hence this small copy.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
