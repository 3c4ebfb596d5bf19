"""Training callbacks shared by every agent (SB3 algorithms and Episodic Control alike).

* :class:`MultiDomainEvalCallback` — periodic evaluation on several visual domains, one stream per domain,
  logged as ``eval/<domain>/mean_reward`` (tensorboard) and kept as a history for the run directory;
* :class:`PeriodicCallback` — calls a function every N env steps (checkpointing);
* :class:`TqdmProgress` — a progress bar over env steps that starts where a resumed run left off.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv
from tqdm.auto import tqdm

from vision.runtime import progress_bar

EvalHistory = dict[str, list[dict[str, Any]]]


def evaluate_domains(
    model: Any,
    envs: Mapping[str, VecEnv],
    n_episodes: int,
    deterministic: bool = True,
    seed: int | None = 0,
) -> dict[str, dict[str, Any]]:
    """Episode returns of ``model`` on each domain's env: ``{domain: {mean_reward, std_reward, mean_ep_length,
    rewards, lengths}}``. Every domain's env is reseeded with the same ``seed`` first, so repeated calls start from
    the same states and, on envs whose layouts come from the seed alone (darla's domain envs), every domain plays
    the same scenes: the curves of two domains differ only in what the agent sees."""
    out: dict[str, dict[str, Any]] = {}
    for domain, env in envs.items():
        if seed is not None:
            env.seed(seed)
        rewards, lengths = evaluate_policy(model, env, n_eval_episodes=n_episodes, deterministic=deterministic,
                                           return_episode_rewards=True, warn=False)
        out[domain] = {
            "mean_reward": float(np.mean(rewards)), "std_reward": float(np.std(rewards)),
            "mean_ep_length": float(np.mean(lengths)),
            "rewards": [float(r) for r in rewards], "lengths": [int(n) for n in lengths],
        }
    return out


class MultiDomainEvalCallback(BaseCallback):
    """Evaluate on every domain each ``eval_freq`` env steps (and at the start and end of training).

    Args:
        eval_envs: ``{domain name: VecEnv}`` with the same observation pipeline as the training env.
        eval_freq: env steps (summed over sub-envs) between evaluations.
        n_eval_episodes: episodes per domain and evaluation.
        history: evaluations already made (a resumed run); new ones are appended to it in place.
        on_evaluate: called with the history after each evaluation (e.g. to write it to disk).
        seed: evaluation envs are reseeded with it before every evaluation (``None``: not reseeded).
    """

    def __init__(
        self,
        eval_envs: Mapping[str, VecEnv],
        eval_freq: int,
        n_eval_episodes: int = 10,
        deterministic: bool = True,
        history: EvalHistory | None = None,
        on_evaluate: Callable[[EvalHistory], None] | None = None,
        seed: int | None = 0,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if eval_freq < 1:
            raise ValueError(f"eval_freq: must be >= 1, got {eval_freq}")
        self.eval_envs = dict(eval_envs)
        self.eval_freq, self.n_eval_episodes, self.deterministic = int(eval_freq), int(n_eval_episodes), deterministic
        self.history: EvalHistory = history if history is not None else {}
        for domain in self.eval_envs:
            self.history.setdefault(domain, [])
        self.on_evaluate, self.seed = on_evaluate, seed

    def _last_evaluated(self) -> int:
        return max((h[-1]["timesteps"] for h in self.history.values() if h), default=-1)

    def evaluate(self) -> dict[str, dict[str, Any]]:
        """Evaluate now on every domain, log under ``eval/<domain>/…`` and append to the history."""
        results = evaluate_domains(self.model, self.eval_envs, self.n_eval_episodes, self.deterministic, self.seed)
        t = int(self.model.num_timesteps)
        for domain, r in results.items():
            self.logger.record(f"eval/{domain}/mean_reward", r["mean_reward"])
            self.logger.record(f"eval/{domain}/std_reward", r["std_reward"])
            self.logger.record(f"eval/{domain}/mean_ep_length", r["mean_ep_length"])
            self.history[domain].append({"timesteps": t, **r})
            if self.verbose:
                print(f"eval t={t} {domain}: {r['mean_reward']:.2f} ± {r['std_reward']:.2f}")
        self.logger.dump(step=t)
        if self.on_evaluate is not None:
            self.on_evaluate(self.history)
        return results

    def _on_training_start(self) -> None:
        if self._last_evaluated() < 0:
            self.evaluate()  # the untrained policy: the curves' first point

    def _on_step(self) -> bool:
        last = self._last_evaluated()
        if self.num_timesteps // self.eval_freq > max(last, 0) // self.eval_freq:
            self.evaluate()
        return True

    def _on_training_end(self) -> None:
        if self._last_evaluated() != self.model.num_timesteps:
            self.evaluate()


class PeriodicCallback(BaseCallback):
    """Call ``fn()`` each time ``every`` more env steps have passed (counted from the model's step count)."""

    def __init__(self, fn: Callable[[], None], every: int) -> None:
        super().__init__()
        if every < 1:
            raise ValueError(f"every: must be >= 1, got {every}")
        self.fn, self.every = fn, int(every)
        self._last = 0

    def _on_training_start(self) -> None:
        self._last = self.model.num_timesteps

    def _on_step(self) -> bool:
        if self.num_timesteps - self._last >= self.every:
            self._last = self.num_timesteps
            self.fn()
        return True


class TqdmProgress(BaseCallback):
    """tqdm bar over env steps up to ``total``; a resumed run's bar starts at its current step count.

    The bar stops at ``total``: algorithms step in whole rollouts (PPO's ``n_steps × n_envs``), so the last one
    may pass ``total`` and a bar showing 130% reads like a bug.
    """

    def __init__(self, total: int, desc: str = "stage2") -> None:
        super().__init__()
        self.total, self.desc = int(total), desc
        self.bar: tqdm | None = None

    def _on_training_start(self) -> None:
        self.bar = progress_bar(total=self.total, initial=min(self.model.num_timesteps, self.total), desc=self.desc,
                                unit="step", dynamic_ncols=True)

    def _advance(self) -> None:
        if self.bar is not None:
            ahead = min(self.num_timesteps, self.total) - self.bar.n
            if ahead > 0:
                self.bar.update(ahead)

    def _on_step(self) -> bool:
        self._advance()
        return True

    def _on_training_end(self) -> None:
        self._advance()
        if self.bar is not None:
            self.bar.close()
            self.bar = None


__all__ = ["EvalHistory", "evaluate_domains", "MultiDomainEvalCallback", "PeriodicCallback", "TqdmProgress"]
