"""Model-free Episodic Control (Blundell et al. 2016, "MFEC"), the third base learner of DARLA's results table.

One value table per action maps a state embedding φ(s) to the best discounted return ever obtained after taking
that action there. Q(s, a) is the stored value when φ(s) is already in table a, else the mean over its k nearest
neighbours; tables are updated at the end of each episode with Q ← max(Q, R_t) and grow until full, then the least
recently used entry is replaced. φ is the observation itself for vector inputs (DARLA's latents) and a fixed
Gaussian random projection for pixel inputs.

The class mirrors the SB3 surface the rest of darla relies on — ``learn(total_timesteps, callback,
reset_num_timesteps)``, ``predict(obs, state, episode_start, deterministic)``, ``save``/``load``, ``num_timesteps``,
``logger``, ``get_env`` — so SB3 callbacks and ``evaluate_policy`` work unchanged.
"""
from __future__ import annotations

import io
import json
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ConvertCallback, ProgressBarCallback
from stable_baselines3.common.logger import HumanOutputFormat, Logger
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from vision.runtime import atomic_write_bytes

FORMAT = "darla.ec/1"


class ActionTable:
    """The k-NN value table of one action: keys (capacity, dim), values, and last-use times for LRU replacement."""

    def __init__(self, capacity: int, dim: int) -> None:
        # Keys are stored transposed (dim, capacity): the query product q @ K then runs on a C-contiguous
        # operand, about twice as fast as on a transposed view at 100k entries.
        self._keys_t = np.zeros((dim, capacity), dtype=np.float32)
        self.sqnorms = np.zeros(capacity, dtype=np.float32)  # cached |key|² for the distance expansion
        self.values = np.zeros(capacity, dtype=np.float32)
        self.last_used = np.zeros(capacity, dtype=np.int64)
        self.size = 0

    @property
    def keys(self) -> np.ndarray:
        """Stored embeddings, (capacity, dim) (a view; rows beyond ``size`` are unused)."""
        return self._keys_t.T

    def _nearest(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(k nearest indices (B, k), index of the nearest (B,), whether the nearest is an exact match (B,))."""
        n = self.size
        # |q - key|² up to the per-query constant |q|², which does not change the ranking.
        d2 = self.sqnorms[None, :n] - 2.0 * (q @ self._keys_t[:, :n])
        k = min(k, n)
        knn = np.argpartition(d2, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (len(q), 1))
        best = d2.argmin(1)
        # The expansion above loses precision near zero: confirm exact matches on the raw difference.
        exact = np.all(self._keys_t[:, best].T == q, axis=1)
        return knn, best, exact

    def estimate(self, q: np.ndarray, k: int, now: int | None = None) -> np.ndarray:
        """Q estimates for embeddings ``q`` (B, dim); +inf while the table is empty (untried actions go first).

        ``now`` (a step count) marks the entries used as recently used; leave it ``None`` for read-only queries.
        """
        if self.size == 0:
            return np.full(len(q), np.inf, dtype=np.float32)
        knn, best, exact = self._nearest(q, k)
        out = np.where(exact, self.values[best], self.values[knn].mean(1))
        if now is not None:
            self.last_used[knn.ravel()] = now
        return out.astype(np.float32)

    def update(self, q: np.ndarray, returns: np.ndarray, now: int) -> None:
        """Q ← max(Q, R) for embeddings already stored; insert the others (replacing least recently used)."""
        if self.size:
            _, best, exact = self._nearest(q, 1)
            hit = best[exact]
            np.maximum.at(self.values, hit, returns[exact])
            self.last_used[hit] = now
            q, returns = q[~exact], returns[~exact]
        n = len(q)
        if n == 0:
            return
        capacity, occupied = len(self.keys), self.size
        free = np.arange(occupied, min(occupied + n, capacity))
        rest = min(n - len(free), occupied)  # entries to evict, chosen among the occupied slots only
        if rest > 0:
            used = self.last_used[:occupied]
            stale = np.argpartition(used, rest - 1)[:rest] if rest < occupied else np.arange(occupied)
            slots = np.concatenate([free, stale])
        else:
            slots = free
        q, returns = q[-len(slots):], returns[-len(slots):]  # with more new states than room, keep the latest
        self._keys_t[:, slots] = q.T
        self.sqnorms[slots] = (q * q).sum(1)
        self.values[slots] = returns
        self.last_used[slots] = now
        self.size = min(occupied + n, capacity)


class EpisodicControl:
    """Model-free Episodic Control over a discrete action space.

    Args:
        env: a ``VecEnv`` or Gymnasium env (wrapped in a ``DummyVecEnv``); may be ``None`` for a loaded agent.
        k: neighbours averaged for states not yet in a table (11 in Blundell et al.).
        buffer_size: capacity of each action's table.
        gamma: discount of the stored Monte-Carlo returns.
        projection_dim: embedding size of the random projection applied to image observations.
        exploration_fraction, exploration_initial_eps, exploration_final_eps: ε-greedy schedule (as SB3's DQN):
            ε decays linearly from initial to final over the first ``exploration_fraction`` of training.
        log_interval: episodes between two logger dumps.
        seed: seeds the projection and the action choice.
    """

    def __init__(
        self,
        env: VecEnv | gym.Env | None,
        k: int = 11,
        buffer_size: int = 50_000,
        gamma: float = 0.99,
        projection_dim: int = 64,
        exploration_fraction: float = 0.1,
        exploration_initial_eps: float = 1.0,
        exploration_final_eps: float = 0.01,
        log_interval: int = 10,
        stats_window_size: int = 100,
        seed: int | None = None,
        verbose: int = 0,
        *,
        observation_space: spaces.Space | None = None,
        action_space: spaces.Space | None = None,
    ) -> None:
        for name, value, ok in (("k", k, k >= 1), ("buffer_size", buffer_size, buffer_size >= 1),
                                ("gamma", gamma, 0 < gamma <= 1), ("projection_dim", projection_dim, projection_dim >= 1),
                                ("exploration_fraction", exploration_fraction, 0 < exploration_fraction <= 1)):
            if not ok:
                raise ValueError(f"agent.hparams.{name}: invalid value {value!r}")
        self.env: VecEnv | None = None
        if env is not None:
            self.set_env(env)
            observation_space, action_space = self.env.observation_space, self.env.action_space  # type: ignore[union-attr]
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(f"agent.algo: ec needs a Discrete action space; the env has {action_space}")
        if not isinstance(observation_space, spaces.Box):
            raise ValueError(f"agent.algo: ec needs a Box observation space; the env has {observation_space}")
        self.observation_space, self.action_space = observation_space, action_space
        self.hparams = dict(k=k, buffer_size=buffer_size, gamma=gamma, projection_dim=projection_dim,
                            exploration_fraction=exploration_fraction, exploration_initial_eps=exploration_initial_eps,
                            exploration_final_eps=exploration_final_eps, log_interval=log_interval,
                            stats_window_size=stats_window_size)
        self.k, self.gamma = int(k), float(gamma)
        self.seed, self.verbose = seed, verbose
        self.rng = np.random.default_rng(seed)
        in_dim = int(np.prod(observation_space.shape))
        self.projection: np.ndarray | None = None
        if is_image_space(observation_space, check_channels=False):
            # Johnson–Lindenstrauss: a Gaussian projection keeps pixel-space distances up to a small distortion.
            proj_rng = np.random.default_rng(None if seed is None else seed + 1)
            self.projection = (proj_rng.standard_normal((in_dim, projection_dim)) / np.sqrt(projection_dim)).astype(np.float32)
        dim = projection_dim if self.projection is not None else in_dim
        self.tables = [ActionTable(buffer_size, dim) for _ in range(int(action_space.n))]
        self.num_timesteps = 0
        self._total_timesteps = 0
        self._episode_num = 0
        self._last_obs: np.ndarray | None = None
        self.exploration_rate = exploration_initial_eps
        self.ep_info_buffer: deque[dict[str, float]] = deque(maxlen=stats_window_size)
        self._logger = Logger(folder=None, output_formats=[HumanOutputFormat(sys.stdout)] if verbose else [])

    # ----- SB3-compatible plumbing -----------------------------------------------------------------------
    @property
    def logger(self) -> Logger:
        return self._logger

    def set_logger(self, logger: Logger) -> None:
        self._logger = logger

    def get_env(self) -> VecEnv | None:
        return self.env

    def set_env(self, env: VecEnv | gym.Env) -> None:
        venv = env if isinstance(env, VecEnv) else DummyVecEnv([lambda: env])
        if hasattr(self, "observation_space") and venv.observation_space.shape != self.observation_space.shape:
            raise ValueError(f"env: observation shape {venv.observation_space.shape} differs from the agent's "
                             f"{self.observation_space.shape}")
        self.env = venv
        self._last_obs = None

    # ----- acting ----------------------------------------------------------------------------------------
    def embed(self, obs: np.ndarray) -> np.ndarray:
        """φ(s) for a batch of observations: flattened, and randomly projected when they are images."""
        x = np.asarray(obs).reshape(len(obs), -1).astype(np.float32)
        if self.projection is not None:
            x = (x / 255.0) @ self.projection
        return x

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """EC value estimates (B, n_actions) for a batch of observations."""
        return self._q(self.embed(obs), touch=False)

    def _q(self, keys: np.ndarray, touch: bool) -> np.ndarray:
        now = self.num_timesteps if touch else None
        return np.stack([t.estimate(keys, self.k, now) for t in self.tables], axis=1)

    def _greedy(self, q: np.ndarray) -> np.ndarray:
        tie_break = self.rng.random(q.shape)
        tie_break[q < q.max(1, keepdims=True)] = -1.0  # random among the best (several untried actions tie at +inf)
        return tie_break.argmax(1)

    def _act(self, keys: np.ndarray, eps: float, touch: bool) -> np.ndarray:
        actions = self._greedy(self._q(keys, touch))
        explore = self.rng.random(len(actions)) < eps
        if explore.any():
            actions[explore] = self.rng.integers(self.action_space.n, size=int(explore.sum()))
        return actions

    def predict(
        self,
        observation: np.ndarray,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Greedy actions (ε-greedy at the final ε when not ``deterministic``); SB3's signature and return."""
        obs = np.asarray(observation)
        single = obs.shape == self.observation_space.shape
        batch = obs[None] if single else obs
        eps = 0.0 if deterministic else float(self.hparams["exploration_final_eps"])
        actions = self._act(self.embed(batch), eps, touch=False)
        return (actions[0] if single else actions), state

    # ----- learning --------------------------------------------------------------------------------------
    def _epsilon(self) -> float:
        progress = self.num_timesteps / max(1, self._total_timesteps)
        frac = min(1.0, progress / float(self.hparams["exploration_fraction"]))
        start, end = float(self.hparams["exploration_initial_eps"]), float(self.hparams["exploration_final_eps"])
        return start + frac * (end - start)

    def _store_episode(self, keys: list[np.ndarray], actions: list[int], rewards: list[float]) -> None:
        returns = np.zeros(len(rewards), dtype=np.float32)
        g = 0.0
        for t in range(len(rewards) - 1, -1, -1):
            g = rewards[t] + self.gamma * g
            returns[t] = g
        k = np.stack(keys)
        a = np.asarray(actions)
        for action in np.unique(a):
            sel = a == action
            self.tables[action].update(k[sel], returns[sel], self.num_timesteps)

    def learn(
        self,
        total_timesteps: int,
        callback: Any = None,
        log_interval: int | None = None,
        tb_log_name: str = "EC",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> "EpisodicControl":
        """Act ε-greedily for ``total_timesteps`` env steps, writing each finished episode into the tables.

        Episodes cut by a time limit are stored like terminated ones (Monte-Carlo returns have nothing to bootstrap).
        """
        if self.env is None:
            raise ValueError("env: this agent has no environment; pass one to load() or set_env()")
        if reset_num_timesteps:
            self.num_timesteps, self._episode_num = 0, 0
            self._last_obs = None
        else:
            total_timesteps += self.num_timesteps
        self._total_timesteps = total_timesteps
        log_every = int(log_interval or self.hparams["log_interval"])
        callbacks: list[BaseCallback] = [callback] if isinstance(callback, BaseCallback) else list(callback or [])
        callbacks = [c if isinstance(c, BaseCallback) else ConvertCallback(c) for c in callbacks]
        if progress_bar:
            callbacks.append(ProgressBarCallback())
        cb = CallbackList(callbacks)
        cb.init_callback(self)  # type: ignore[arg-type]
        n = self.env.num_envs
        if self._last_obs is None:
            self._last_obs = self.env.reset()
        trajectories: list[tuple[list[np.ndarray], list[int], list[float]]] = [([], [], []) for _ in range(n)]
        start_time, start_steps = time.perf_counter(), self.num_timesteps
        cb.on_training_start(locals(), globals())
        cb.on_rollout_start()
        while self.num_timesteps < total_timesteps:
            self.exploration_rate = self._epsilon()
            keys = self.embed(self._last_obs)
            actions = self._act(keys, self.exploration_rate, touch=True)
            new_obs, rewards, dones, infos = self.env.step(actions)
            self.num_timesteps += n
            for i in range(n):
                trajectories[i][0].append(keys[i])
                trajectories[i][1].append(int(actions[i]))
                trajectories[i][2].append(float(rewards[i]))
                if dones[i]:
                    self._store_episode(*trajectories[i])
                    trajectories[i] = ([], [], [])
                    self._episode_num += 1
                    if "episode" in infos[i]:
                        self.ep_info_buffer.append(infos[i]["episode"])
                    if self._episode_num % log_every == 0:
                        self._dump_logs(start_time, start_steps)
            self._last_obs = new_obs
            cb.update_locals(locals())
            if not cb.on_step():
                break
        cb.on_rollout_end()
        cb.on_training_end()
        return self

    def _dump_logs(self, start_time: float, start_steps: int) -> None:
        if self.ep_info_buffer:
            self.logger.record("rollout/ep_rew_mean", float(np.mean([e["r"] for e in self.ep_info_buffer])))
            self.logger.record("rollout/ep_len_mean", float(np.mean([e["l"] for e in self.ep_info_buffer])))
        self.logger.record("rollout/exploration_rate", self.exploration_rate)
        self.logger.record("train/table_size_mean", float(np.mean([t.size for t in self.tables])))
        elapsed = max(time.perf_counter() - start_time, 1e-9)
        self.logger.record("time/fps", int((self.num_timesteps - start_steps) / elapsed))
        self.logger.record("time/episodes", self._episode_num)
        self.logger.dump(step=self.num_timesteps)

    # ----- persistence -----------------------------------------------------------------------------------
    def save(self, path: str | Path | io.BufferedIOBase) -> None:
        """Write tables, projection and settings (a zip of arrays; ``.zip`` is appended to a bare path, as SB3)."""
        meta = {
            "format": FORMAT, "hparams": self.hparams, "seed": self.seed, "num_timesteps": self.num_timesteps,
            "episode_num": self._episode_num, "sizes": [t.size for t in self.tables],
            "observation_space": {"shape": list(self.observation_space.shape), "dtype": str(self.observation_space.dtype),
                                  "low": float(np.min(self.observation_space.low)),
                                  "high": float(np.max(self.observation_space.high))},
            "n_actions": int(self.action_space.n), "rng": self.rng.bit_generator.state,
        }
        arrays: dict[str, np.ndarray] = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
        if self.projection is not None:
            arrays["projection"] = self.projection
        for a, t in enumerate(self.tables):
            arrays[f"keys_{a}"] = t.keys[: t.size]
            arrays[f"values_{a}"] = t.values[: t.size]
            arrays[f"last_used_{a}"] = t.last_used[: t.size]
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        if isinstance(path, io.BufferedIOBase):
            path.write(buf.getvalue())
            return
        p = Path(path)
        atomic_write_bytes(p if p.suffix else p.with_suffix(".zip"), buf.getvalue())

    @classmethod
    def load(cls, path: str | Path, env: VecEnv | gym.Env | None = None, **kwargs: Any) -> "EpisodicControl":
        """Restore an agent written by :meth:`save`; ``env`` (optional) is where ``learn`` continues."""
        p = Path(path)
        if not p.exists() and not p.suffix:
            p = p.with_suffix(".zip")
        try:
            data = np.load(p, allow_pickle=False)
            meta = json.loads(data["meta"].tobytes().decode())
        except Exception as e:  # numpy raises several types for a missing or corrupt file
            raise ValueError(f"agent: {p} is not a readable Episodic Control file ({type(e).__name__}: {e})") from None
        if meta.get("format") != FORMAT:
            raise ValueError(f"agent: {p} is not an Episodic Control file (format {FORMAT!r} expected)")
        o = meta["observation_space"]
        obs_space = spaces.Box(o["low"], o["high"], shape=tuple(o["shape"]), dtype=np.dtype(o["dtype"]))
        agent = cls(env, **meta["hparams"], seed=meta["seed"], observation_space=obs_space,
                    action_space=spaces.Discrete(meta["n_actions"]), **kwargs)
        if "projection" in data:
            agent.projection = data["projection"]
        for a, t in enumerate(agent.tables):
            n = meta["sizes"][a]
            keys = data[f"keys_{a}"]
            t._keys_t[:, :n], t.values[:n], t.last_used[:n] = keys.T, data[f"values_{a}"], data[f"last_used_{a}"]
            t.sqnorms[:n] = (keys * keys).sum(1)
            t.size = n
        agent.num_timesteps, agent._episode_num = meta["num_timesteps"], meta["episode_num"]
        agent.rng.bit_generator.state = meta["rng"]
        return agent


__all__ = ["EpisodicControl", "ActionTable"]
