"""Stage 2 — learn to act: ``python -m darla.stage2 --config configs/<env>/<variant>.yaml [key=value ...]``.

Trains the configured variant (BASELINE, DARLA, DARLA_ENT, PIXEL_VAE, DARLA_DAE, DARLA_FT, DC_IGN, RANDOM_ENC,
AUG) with the configured algorithm on the source domain, evaluating periodically on the source and every target domain (one
tensorboard stream per domain: ``eval/<domain>/mean_reward``). Rerunning the command on an existing run directory
resumes from its last checkpoint; a finished run returns at once (raise ``train.total_timesteps`` to extend it).

A run directory holds::

    config.yaml, run.json     resolved config; versions, git SHA and every invocation
    vision.pt, vision.json    the exact vision module used (a snapshot) and where it came from (path + SHA-256)
    agent.zip                 the latest agent (SB3 zip, or Episodic Control tables)
    replay_buffer.pkl         off-policy algorithms, for an exact resume
    evaluations.json          every evaluation, per domain
    tb/                       tensorboard events
    stage2.json               the summary of the last invocation

Stage 3 rebuilds a run's observation pipeline for any domain and loads its policy with :func:`load_agent`.
"""
from __future__ import annotations

import importlib
import io
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, Union

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger, TensorBoardOutputFormat
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from agents.callbacks import EvalHistory, MultiDomainEvalCallback, PeriodicCallback, TqdmProgress
from agents.factory import OFF_POLICY, Agent, load_algorithm
from agents.variants import Variant, build_agent, check_vision, get_variant, random_vision, wrap_observations
from darla.config import ConfigError, EnvConfig, Stage2Config, load_config
from darla import runs
from darla.runs import STAGES, prepare_run_dir, stage_cli, undo_failed_start
from vision.checkpoint import CheckpointError, file_sha256, load, read_checkpoint, resolve_checkpoint, save_checkpoint
from vision.models.base import ModelConfig, VAEBase
from vision.runtime import atomic_write_bytes, atomic_write_json, resolve_device, seed_everything, set_num_threads
from vision.wrappers import FrozenEncoder, frame_shape

VISION_NAME = "vision.pt"
VISION_INFO = "vision.json"
AGENT_NAME = "agent.zip"
BUFFER_NAME = "replay_buffer.pkl"
EVAL_NAME = "evaluations.json"
SUMMARY_NAME = "stage2.json"
EVAL_SEED_OFFSET = 10_000  # evaluation envs never share seeds with training envs


# ----- environments ----------------------------------------------------------------------------------------
def import_env_modules(env: EnvConfig) -> None:
    """Import darla's ``envs`` and the modules ``env.imports`` names (they register non-darla ids)."""
    runs.import_env_modules(env.imports, "env.imports")


def domain_names(env: EnvConfig) -> list[str]:
    """The domains a run evaluates on, train domain first (see ``EnvConfig.eval_domains``)."""
    listed = list(env.eval_domains)
    if not listed and env.domain_kwarg:
        import envs

        try:
            listed = list(envs.domains(env.id))
        except (AttributeError, KeyError, ValueError):  # not a darla env, or an envs without a domain registry
            listed = []
    return [env.train_domain] + [d for d in listed if d != env.train_domain]


Domain = Union[str, Mapping[str, Any]]  # a named domain, a factor mapping (darla envs), or {"shift": NAME, …}


def env_factory(env: EnvConfig, domain: Domain) -> Callable[[], gym.Env]:
    """A picklable constructor of one env of ``domain`` (for ``make_vec_env``, in this or a worker process).

    ``domain`` is a name the env knows, a factor mapping (darla envs: ``{"wall_colour": [3]}``), or a pixel shift
    from :mod:`envs.shifts` over a named domain, ``{"shift": "hue", "degrees": 90, "domain": "source"}`` (``domain``
    defaults to ``env.train_domain``): the last works on any RGB env, with or without named domains.
    """
    shift = None
    if isinstance(domain, Mapping) and "shift" in domain:
        shift = {k: v for k, v in domain.items() if k != "domain"}
        domain = domain.get("domain", env.train_domain)
    kwargs = dict(env.kwargs)
    if env.domain_kwarg:
        kwargs[env.domain_kwarg] = dict(domain) if isinstance(domain, Mapping) else domain
    env_id, imports = env.id, list(env.imports)

    def make() -> gym.Env:
        for name in imports:  # worker processes register third-party ids too
            importlib.import_module(name)
        import envs  # noqa: F401
        from envs.shifts import apply_shift

        made = gym.make(env_id, **kwargs)
        return apply_shift(made, shift) if shift else made

    return make


def _check_registered(env: EnvConfig) -> None:
    try:
        gym.spec(env.id)
    except gym.error.Error:
        raise ConfigError(f"env.id: {env.id!r} is not a registered Gymnasium id (list modules to import in env.imports)") from None


def check_env(env: EnvConfig) -> list[str]:
    """Check ``env`` before a run writes anything; returns the evaluated domains (train domain first).

    Its modules must import, its id be registered and an env of every evaluated domain be constructible. The
    env's own refusals are reported against the config key the user set: a bad domain names
    ``env.train_domain`` or ``env.eval_domains`` (the env itself only knows its ``domain`` argument).
    """
    import_env_modules(env)
    _check_registered(env)
    domains = domain_names(env)
    for d in domains if env.domain_kwarg else domains[:1]:  # without a domain keyword every domain is one env
        key = "env.train_domain" if d == env.train_domain else "env.eval_domains"
        try:
            env_factory(env, d)().close()
        except gym.error.DependencyNotInstalled as e:
            raise ConfigError(f"env.id: {env.id!r} needs a package that is not installed ({str(e).splitlines()[0]})") from None
        except TypeError as e:
            if env.domain_kwarg and f"'{env.domain_kwarg}'" in str(e):
                raise ConfigError(f"env.domain_kwarg: {env.id!r} takes no {env.domain_kwarg!r} argument ({e}); set "
                                  "env.domain_kwarg='' for an env without domains") from None
            raise
        except ValueError as e:
            msg = str(e).splitlines()[0] if str(e) else ""
            name, sep, rest = msg.partition(":")
            if sep and name == env.domain_kwarg:
                raise ConfigError(f"{key}:{rest}") from None
            if sep and name in env.kwargs:
                raise ConfigError(f"env.kwargs.{name}:{rest}") from None
            raise
    return domains


def make_pixel_vec_env(env: EnvConfig, domain: Domain, n_envs: int, seed: int) -> VecEnv:
    """``n_envs`` Monitor-wrapped pixel envs of ``domain`` (Monitor records the true episode returns)."""
    _check_registered(env)
    vec_cls = SubprocVecEnv if env.vec_env == "subproc" and n_envs > 1 else DummyVecEnv
    return make_vec_env(env_factory(env, domain), n_envs=n_envs, seed=seed, vec_env_cls=vec_cls)


# ----- vision ------------------------------------------------------------------------------------------------
def prepare_vision(cfg: Stage2Config, run_dir: Path, frame_hwc: Sequence[int], device: torch.device) -> VAEBase | None:
    """The vision module of this run, frozen, from the run's snapshot (``vision.pt``), creating it on first use.

    The snapshot pins the exact weights: a stage-1 run that keeps training (or is deleted) cannot change what a
    stage-2 run — or its stage-3 evaluation — sees. ``vision.json`` records the source path and SHA-256.
    """
    variant = get_variant(cfg.agent.variant)
    if not variant.uses_vision:
        return None
    snapshot, info_path = run_dir / VISION_NAME, run_dir / VISION_INFO
    if not (snapshot.exists() and info_path.exists()):  # first use (or a kill between the two writes)
        info: dict[str, Any] = {"variant": variant.name, "random_init": variant.random_init}
        if variant.random_init:
            arch: ModelConfig | None = None
            shape = None
            if cfg.vision.run:  # borrow the architecture (not the weights) of a stage-1 model
                template = _load_vision(_resolve_vision(cfg.vision.run, finished=False), torch.device("cpu"))
                arch, shape = template.cfg, template.input_shape
                info.update(architecture_from=str(resolve_checkpoint(cfg.vision.run)))
            model = random_vision(frame_hwc, cfg.train.seed, arch, shape)
            save_checkpoint(snapshot, model, step=0, extra={"random_init": True, "seed": cfg.train.seed})
            info.update(source_path=None, source_sha256=None, seed=cfg.train.seed)
        else:
            if not cfg.vision.run:
                raise _missing_vision_run(variant)
            source = _resolve_vision(cfg.vision.run)
            # Snapshot first and check the snapshot: what is checked, hashed and used is one and the same file.
            atomic_write_bytes(snapshot, source.read_bytes())
            try:
                model = _load_vision(snapshot, device)
                if cfg.vision.check_family:
                    check_vision(variant, model, str(source))
            except (ConfigError, ValueError):
                snapshot.unlink()
                raise
            info.update(source_path=str(source.resolve()), source_sha256=file_sha256(snapshot))
        info.update(snapshot=VISION_NAME, snapshot_sha256=file_sha256(snapshot), family=model.family,
                    input_shape=list(model.input_shape), latent_dim=model.latent_dim, latent=cfg.vision.latent)
        atomic_write_json(info_path, info)
    model = _load_vision(snapshot, device)
    if file_sha256(snapshot) != json.loads(info_path.read_text())["snapshot_sha256"]:
        raise CheckpointError(f"vision: {snapshot} does not match the SHA-256 recorded in {info_path}")
    return model


def check_vision_ref(cfg: Stage2Config) -> None:
    """Check ``vision.run`` before a run writes anything: set, and a checkpoint, wherever the run will read it (a
    run whose snapshot exists no longer needs its source)."""
    variant = get_variant(cfg.agent.variant)
    run_dir = Path(cfg.run.dir)
    if not variant.uses_vision or ((run_dir / VISION_NAME).exists() and (run_dir / VISION_INFO).exists()):
        return
    if cfg.vision.run:
        _resolve_vision(cfg.vision.run, finished=not variant.random_init)
    elif not variant.random_init:
        raise _missing_vision_run(variant)


def _missing_vision_run(variant: Variant) -> ConfigError:
    kind = " or ".join(variant.families)
    return ConfigError(f"vision.run: variant {variant.name} needs a stage-1 run directory or checkpoint (a {kind} model)")


def _resolve_vision(path: str, finished: bool = True) -> Path:
    """The checkpoint ``vision.run`` names; with ``finished`` (weights used, not just an architecture), refused
    while its stage-1 run has not reached the steps it was configured for: a module still training (or stopped
    early) would be snapshotted half-trained, silently."""
    try:
        ckpt = resolve_checkpoint(path)
        payload = read_checkpoint(ckpt) if finished else {}
    except CheckpointError as e:
        raise ConfigError(f"vision.run: {e}") from None
    steps = payload.get("extra", {}).get("config", {}).get("train", {}).get("steps")
    if isinstance(steps, int) and int(payload.get("step", 0)) < steps:
        raise ConfigError(f"vision.run: {ckpt} is at step {payload['step']} of the {steps} its stage-1 config asks "
                          "for (still training, or stopped early); finish it with darla.stage1 first")
    return ckpt


def _load_vision(path: Path, device: torch.device) -> VAEBase:
    try:
        return load(path, device)
    except CheckpointError as e:
        raise ConfigError(f"vision.run: {e}") from None


# ----- the observation pipeline ----------------------------------------------------------------------------
@dataclass
class ObservationPipeline:
    """Everything between a domain's pixels and the policy's input for one stage-2 run."""

    cfg: Stage2Config
    variant: Variant
    vision: VAEBase | None  # the run's vision module (frozen); None for pixel variants
    encoder: FrozenEncoder | None  # shared by all envs of wrapper variants
    domains: list[str]  # train domain first, then the other evaluated domains

    def make_env(self, domain: Domain, n_envs: int = 1, seed: int = 0, training: bool = False) -> VecEnv:
        """A VecEnv of ``domain`` whose observations are exactly what the run's policy was trained on
        (augmentation, for the AUG variant, only when ``training``)."""
        venv = make_pixel_vec_env(self.cfg.env, domain, n_envs, seed)
        return wrap_observations(venv, self.variant, encoder=self.encoder, vision=self.vision,
                                 augment=self.cfg.agent.augment, training=training, seed=seed)

    def observe(self, frames: np.ndarray) -> np.ndarray:
        """The policy's observations of a batch of uint8 frames (N, H, W, C): the same wrappers as :meth:`make_env`
        applied to them (never augmented), e.g. for frames rendered from chosen scenes."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.dtype != np.uint8:
            raise ValueError(f"frames: expected uint8 (N, H, W, C), got {frames.dtype} {frames.shape}")
        return wrap_observations(_FrameBatch(frames), self.variant, encoder=self.encoder, vision=self.vision,
                                 training=False).reset()


class _FrameBatch(VecEnv):
    """A VecEnv of one env per frame whose ``reset`` returns the given frames: lets the observation wrappers,
    unchanged, turn any frames into policy observations. It cannot step."""

    def __init__(self, frames: np.ndarray) -> None:
        super().__init__(len(frames), gym.spaces.Box(0, 255, frames.shape[1:], np.uint8), gym.spaces.Discrete(1))
        self.frames = frames

    def reset(self) -> np.ndarray:
        return self.frames

    def step_async(self, actions: np.ndarray) -> None:
        raise TypeError("a frame batch has no dynamics: it only turns frames into observations")

    def step_wait(self) -> Any:
        raise TypeError("a frame batch has no dynamics: it only turns frames into observations")

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        if attr_name == "render_mode":  # asked by VecEnv.__init__
            return [None] * self.num_envs
        raise AttributeError(attr_name)

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        raise AttributeError(attr_name)

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
        raise AttributeError(method_name)

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * self.num_envs


def build_pipeline(cfg: Stage2Config, run_dir: Path, device: torch.device) -> ObservationPipeline:
    """Import env modules, find the domains, load (or create) the run's vision snapshot and its shared encoder."""
    import_env_modules(cfg.env)
    variant = get_variant(cfg.agent.variant)
    probe = make_pixel_vec_env(cfg.env, cfg.env.train_domain, 1, 0)
    try:
        hwc = frame_shape(probe.observation_space)
    finally:
        probe.close()
    vision = prepare_vision(cfg, run_dir, hwc, device)
    encoder = None
    if vision is not None and variant.placement == "wrapper":
        encoder = FrozenEncoder(vision, latent=cfg.vision.latent, device=device, resize=cfg.vision.resize,
                                seed=cfg.train.seed, amp=cfg.vision.amp)
        encoder.source = str(run_dir / VISION_NAME)
    return ObservationPipeline(cfg, variant, vision, encoder, domain_names(cfg.env))


def reference_returns(cfg: Stage2Config) -> dict[str, dict[str, float]] | None:
    """Scripted and random policies' returns on the train domain of a darla env (None for other envs): the
    yardsticks a learned agent's return is read against."""
    import envs

    if cfg.env.id not in envs.ENV_IDS or cfg.env.domain_kwarg != "domain":
        return None
    table = envs.reference_table(cfg.env.id, domains=[cfg.env.train_domain], episodes=cfg.train.eval_episodes,
                                 seed=cfg.train.seed + EVAL_SEED_OFFSET, env_kwargs=dict(cfg.env.kwargs))
    return {policy: {"mean_reward": m, "std_reward": sd} for policy, (m, sd) in table[cfg.env.train_domain].items()}


# ----- logging ---------------------------------------------------------------------------------------------
class _PurgingTensorBoard(TensorBoardOutputFormat):
    """SB3's tensorboard output with a ``purge_step``: a resumed run's curves drop what a killed run logged past
    its checkpoint instead of running backwards (SB3's own format opens the writer without one)."""

    def __init__(self, folder: str, purge_step: int | None):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=folder, purge_step=purge_step)  # what the base __init__ sets, plus purge
        self._is_closed = False


def tensorboard_logger(folder: Path, purge_step: int | None = None) -> Logger:
    """An SB3 logger writing tensorboard events to ``folder``; events at steps >= ``purge_step`` are discarded."""
    folder.mkdir(parents=True, exist_ok=True)
    return Logger(str(folder), [_PurgingTensorBoard(str(folder), purge_step)])


# ----- checkpoints -----------------------------------------------------------------------------------------
def save_agent(model: Agent, run_dir: Path, algo: str, save_replay_buffer: bool = True) -> None:
    """Atomically write ``agent.zip`` (and the replay buffer of off-policy algorithms)."""
    buf = io.BytesIO()
    model.save(buf)
    atomic_write_bytes(run_dir / AGENT_NAME, buf.getvalue())
    if algo in OFF_POLICY and save_replay_buffer:
        buf = io.BytesIO()
        model.save_replay_buffer(buf)  # type: ignore[union-attr]
        atomic_write_bytes(run_dir / BUFFER_NAME, buf.getvalue())


def _resume_agent(cfg: Stage2Config, run_dir: Path, venv: VecEnv, device: torch.device) -> Agent:
    model = load_algorithm(cfg.agent.algo, run_dir / AGENT_NAME, env=venv, device=device)
    if cfg.agent.algo in OFF_POLICY and (run_dir / BUFFER_NAME).exists():
        model.load_replay_buffer(run_dir / BUFFER_NAME)  # type: ignore[union-attr]
    # The saved last observation belongs to envs that no longer exist: make learn() reset the new ones.
    model._last_obs = None  # type: ignore[union-attr]
    return model


# ----- the run ---------------------------------------------------------------------------------------------
def run(cfg: Stage2Config, progress: bool = True, callbacks: Sequence[BaseCallback] = ()) -> dict[str, Any]:
    """Execute (or resume) a stage-2 run; returns the summary also written to ``RUN_DIR/stage2.json``.

    ``callbacks`` are extra SB3 callbacks run alongside the built-in evaluation, checkpoint and progress ones.
    """
    # What can be checked is checked before the run directory exists, and a start that fails anyway leaves no
    # directory behind: either way the corrected command starts afresh instead of meeting "a different config".
    check_env(cfg.env)
    check_vision_ref(cfg)
    with undo_failed_start(cfg.run.dir):
        run_dir, resuming = prepare_run_dir(cfg.run.dir, cfg, "stage2", cfg.run.resume,
                                            ignore=STAGES["stage2"].resumable)
        device = resolve_device(cfg.train.device)
        set_num_threads(cfg.train.num_threads)
        seed_everything(cfg.train.seed)
        pipe = build_pipeline(cfg, run_dir, device)
        train_env = pipe.make_env(cfg.env.train_domain, cfg.env.n_envs, cfg.train.seed, training=True)
        eval_envs = {d: pipe.make_env(d, cfg.train.eval_envs, cfg.train.seed + EVAL_SEED_OFFSET * (i + 1))
                     for i, d in enumerate(pipe.domains)}
        if resuming and (run_dir / AGENT_NAME).exists():
            model = _resume_agent(cfg, run_dir, train_env, device)
        else:
            model = build_agent(cfg.agent, train_env, vision=pipe.vision, seed=cfg.train.seed, device=device)
        start_steps = int(model.num_timesteps)
        # A resumed run drops the events a killed run logged after its checkpoint (those at start_steps stay).
        model.set_logger(tensorboard_logger(run_dir / "tb", start_steps + 1 if resuming else None))

    eval_path = run_dir / EVAL_NAME
    history: EvalHistory = json.loads(eval_path.read_text()) if resuming and eval_path.exists() else {}
    history = {d: [h for h in history.get(d, []) if h["timesteps"] <= start_steps] for d in pipe.domains}
    evaluator = MultiDomainEvalCallback(eval_envs, cfg.train.eval_every, cfg.train.eval_episodes,
                                        cfg.train.deterministic_eval, history=history,
                                        on_evaluate=lambda h: atomic_write_json(eval_path, h),
                                        seed=cfg.train.seed + EVAL_SEED_OFFSET)
    save = lambda: save_agent(model, run_dir, cfg.agent.algo, cfg.train.save_replay_buffer)  # noqa: E731
    cbs: list[BaseCallback] = [evaluator, PeriodicCallback(save, cfg.train.ckpt_every), *callbacks]
    if progress:
        cbs.append(TqdmProgress(cfg.train.total_timesteps, desc=f"stage2 {cfg.agent.variant}/{cfg.agent.algo}"))
    remaining = cfg.train.total_timesteps - start_steps
    t0 = time.perf_counter()
    try:
        if remaining > 0:
            model.learn(remaining, callback=cbs, reset_num_timesteps=False)
            save()
    finally:
        train_env.close()
        for env in eval_envs.values():
            env.close()
    seconds = time.perf_counter() - t0
    steps = int(model.num_timesteps) - start_steps
    summary: dict[str, Any] = {
        "variant": cfg.agent.variant, "algo": cfg.agent.algo, "env": cfg.env.id, "domains": pipe.domains,
        "num_timesteps": int(model.num_timesteps), "resumed_from": start_steps if resuming else None,
        "train_seconds": round(seconds, 2), "env_steps_per_second": round(steps / seconds, 1) if steps else None,
        "final": {d: {k: h[-1][k] for k in ("timesteps", "mean_reward", "std_reward")} for d, h in history.items() if h},
        "reference": reference_returns(cfg),
        "vision": json.loads((run_dir / VISION_INFO).read_text()) if (run_dir / VISION_INFO).exists() else None,
    }
    atomic_write_json(run_dir / SUMMARY_NAME, summary)
    return summary


# ----- stage 3's entry point -------------------------------------------------------------------------------
@dataclass
class LoadedAgent:
    """A trained stage-2 agent with the means to rebuild its exact observation pipeline on any domain.

    >>> agent = load_agent("runs/pickup/darla")                     # doctest: +SKIP
    >>> env = agent.make_env("target", n_envs=4, seed=0)             # doctest: +SKIP
    >>> actions = agent.predict(env.reset())                         # doctest: +SKIP
    """

    model: Agent  # an SB3 algorithm or EpisodicControl: anything evaluate_policy accepts
    config: Stage2Config
    pipeline: ObservationPipeline
    run_dir: Path

    @property
    def variant(self) -> Variant:
        return self.pipeline.variant

    @property
    def domains(self) -> list[str]:
        """The domains the run was evaluated on (train domain first); ``make_env`` takes any domain the env knows."""
        return list(self.pipeline.domains)

    def make_env(self, domain: Domain, n_envs: int = 1, seed: int = 0) -> VecEnv:
        """Monitor-wrapped envs of ``domain`` seen through the run's pipeline (never augmented)."""
        return self.pipeline.make_env(domain, n_envs=n_envs, seed=seed, training=False)

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions for a batch of pipeline observations."""
        return self.model.predict(obs, deterministic=deterministic)[0]

    def observe(self, frames: np.ndarray) -> np.ndarray:
        """The policy's observations of a batch of uint8 frames (N, H, W, C) (:meth:`ObservationPipeline.observe`)."""
        return self.pipeline.observe(frames)


def load_agent(run_dir: str | Path, device: str = "auto") -> LoadedAgent:
    """Load a stage-2 run's agent and observation pipeline (vision snapshot verified against its SHA-256)."""
    path = Path(run_dir)
    if not (path / AGENT_NAME).exists():
        raise FileNotFoundError(f"run_dir: {path} holds no trained agent ({AGENT_NAME}); run darla.stage2 first")
    cfg = load_config(Stage2Config, path / "config.yaml")
    dev = resolve_device(device)
    pipe = build_pipeline(cfg, path, dev)
    model = load_algorithm(cfg.agent.algo, path / AGENT_NAME, env=None, device=dev)
    return LoadedAgent(model, cfg, pipe, path)


def main(argv: list[str] | None = None) -> int:
    got = stage_cli("python -m darla.stage2", __doc__.splitlines()[0], Stage2Config, run, argv,
                    "vision.run=runs/pickup/stage1/beta_vae_dae")
    if got is None:
        return 2
    cfg, summary = got
    final = "; ".join(f"{d} {r['mean_reward']:.2f} ± {r['std_reward']:.2f}" for d, r in summary["final"].items())
    print(f"stage2 done: {summary['variant']}/{summary['algo']} on {summary['env']} at {summary['num_timesteps']} "
          f"steps; eval {final}; run dir {cfg.run.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
