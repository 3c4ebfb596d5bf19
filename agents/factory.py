"""One factory for every learning algorithm: SB3 PPO, A2C, DQN, SAC, TD3 and model-free Episodic Control.

Hyper-parameters arrive from YAML as plain values and are translated here, in one place, to what the algorithm
constructors take:

* ``learning_rate: lin_3e-4`` (also ``clip_range``/``clip_range_vf``) — linear decay to 0, as in rl-zoo;
* ``train_freq: [4, step]`` — a tuple;
* ``action_noise: {type: normal | ornstein_uhlenbeck, sigma: 0.1}`` — an SB3 action-noise object for the env;
* ``policy_kwargs.activation_fn: relu | tanh | elu | leaky_relu | gelu | silu``, ``optimizer_class: adam | …``.

Unknown keys raise a one-line :class:`ValueError` naming the key and the algorithm's valid keys.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Mapping, Union

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from agents.episodic_control import EpisodicControl

Agent = Union[BaseAlgorithm, EpisodicControl]

ALGORITHMS: dict[str, type] = {"ppo": PPO, "a2c": A2C, "dqn": DQN, "sac": SAC, "td3": TD3, "ec": EpisodicControl}
OFF_POLICY = ("dqn", "sac", "td3")  # algorithms with a replay buffer worth checkpointing
_ANY = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
ACTION_SPACES: dict[str, tuple[type[spaces.Space], ...]] = {
    "ppo": _ANY, "a2c": _ANY, "dqn": (spaces.Discrete,), "sac": (spaces.Box,), "td3": (spaces.Box,),
    "ec": (spaces.Discrete,),
}
# Constructor arguments the factory sets itself; a config may not override them through hparams.
RESERVED = ("self", "policy", "env", "policy_kwargs", "seed", "device", "tensorboard_log", "verbose", "_init_setup_model",
            "observation_space", "action_space")
SCHEDULED = ("learning_rate", "clip_range", "clip_range_vf")
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "silu": nn.SiLU,
}
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop, "sgd": torch.optim.SGD,
}


def algorithm_class(algo: str) -> type:
    """The class behind an algorithm name (``ppo``, ``a2c``, ``dqn``, ``sac``, ``td3``, ``ec``)."""
    try:
        return ALGORITHMS[algo.lower()]
    except KeyError:
        raise ValueError(f"agent.algo: unknown algorithm {algo!r}; choose from {sorted(ALGORITHMS)}") from None


def check_action_space(algo: str, action_space: spaces.Space) -> None:
    """One-line error when ``algo`` cannot act in ``action_space`` (e.g. DQN on continuous actions)."""
    allowed = ACTION_SPACES[algo.lower()]
    if not isinstance(action_space, allowed):
        names = ", ".join(a.__name__ for a in allowed)
        raise ValueError(f"agent.algo: {algo} needs a {names} action space; the env has {action_space}")


def parse_hparams(algo: str, hparams: Mapping[str, Any], action_space: spaces.Space | None = None) -> dict[str, Any]:
    """YAML hyper-parameters -> keyword arguments of the algorithm's constructor (see the module docstring)."""
    cls = algorithm_class(algo)
    valid = [p for p in inspect.signature(cls.__init__).parameters if p not in RESERVED]
    out: dict[str, Any] = {}
    for key, value in hparams.items():
        if key not in valid:
            raise ValueError(f"agent.hparams.{key}: not a {cls.__name__} parameter; choose from {valid}")
        if key in SCHEDULED and isinstance(value, str):
            if not value.startswith("lin_"):
                raise ValueError(f"agent.hparams.{key}: expected a number or 'lin_<start>', got {value!r}")
            value = LinearSchedule(float(value[4:]), 0.0, 1.0)
        elif key == "train_freq" and isinstance(value, (list, tuple)):
            value = (int(value[0]), str(value[1]))
        elif key == "action_noise" and value is not None:
            value = _action_noise(value, action_space)
        out[key] = value
    return out


def _action_noise(spec: Any, action_space: spaces.Space | None) -> Any:
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ValueError("agent.hparams.action_noise: expected {type: normal|ornstein_uhlenbeck, sigma: <float>}")
    if not isinstance(action_space, spaces.Box):
        raise ValueError("agent.hparams.action_noise: needs a continuous (Box) action space")
    dim = int(np.prod(action_space.shape))
    sigma = float(spec.get("sigma", 0.1)) * np.ones(dim)
    kinds = {"normal": NormalActionNoise, "ornstein_uhlenbeck": OrnsteinUhlenbeckActionNoise}
    if spec["type"] not in kinds:
        raise ValueError(f"agent.hparams.action_noise.type: unknown {spec['type']!r}; choose from {sorted(kinds)}")
    return kinds[spec["type"]](mean=np.zeros(dim), sigma=sigma)


def parse_policy_kwargs(policy_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """YAML policy kwargs -> SB3 ``policy_kwargs`` (activation and optimizer names become classes)."""
    out = dict(policy_kwargs)
    if isinstance(out.get("activation_fn"), str):
        name = out["activation_fn"].lower()
        if name not in ACTIVATIONS:
            raise ValueError(f"agent.policy_kwargs.activation_fn: unknown {name!r}; choose from {sorted(ACTIVATIONS)}")
        out["activation_fn"] = ACTIVATIONS[name]
    if isinstance(out.get("optimizer_class"), str):
        name = out["optimizer_class"].lower()
        if name not in OPTIMIZERS:
            raise ValueError(f"agent.policy_kwargs.optimizer_class: unknown {name!r}; choose from {sorted(OPTIMIZERS)}")
        out["optimizer_class"] = OPTIMIZERS[name]
    if isinstance(out.get("features_extractor_class"), str):
        raise ValueError("agent.policy_kwargs.features_extractor_class: set by the variant, not from YAML")
    return out


def make_algorithm(
    algo: str,
    env: VecEnv,
    policy: str = "MlpPolicy",
    hparams: Mapping[str, Any] | None = None,
    policy_kwargs: Mapping[str, Any] | None = None,
    *,
    seed: int | None = None,
    device: str | torch.device = "auto",
    verbose: int = 0,
) -> Agent:
    """Instantiate ``algo`` on ``env`` with YAML-style ``hparams``/``policy_kwargs`` (validated, see module doc).

    ``policy_kwargs`` may also hold ready objects (a features-extractor class and its kwargs), which pass through.
    Episodic Control takes no policy: ``policy`` and ``policy_kwargs`` are ignored for ``algo="ec"``.
    """
    cls = algorithm_class(algo)
    check_action_space(algo, env.action_space)
    kwargs = parse_hparams(algo, hparams or {}, env.action_space)
    if cls is EpisodicControl:
        return EpisodicControl(env, seed=seed, verbose=verbose, **kwargs)
    return cls(policy, env, policy_kwargs=parse_policy_kwargs(policy_kwargs or {}), seed=seed, device=device,
               verbose=verbose, **kwargs)


def load_algorithm(algo: str, path: str | Path, env: VecEnv | None = None, device: str | torch.device = "auto") -> Agent:
    """Load an agent saved with ``model.save(path)`` (SB3 zip or Episodic Control file)."""
    cls = algorithm_class(algo)
    if cls is EpisodicControl:
        return EpisodicControl.load(path, env=env)
    return cls.load(path, env=env, device=device)


__all__ = [
    "Agent", "ALGORITHMS", "OFF_POLICY", "ACTION_SPACES", "algorithm_class", "check_action_space", "parse_hparams",
    "parse_policy_kwargs", "make_algorithm", "load_algorithm",
]
