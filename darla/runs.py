"""Run directories: every stage writes its resolved config, versions and git SHA beside its results.

Also what the job runner (:mod:`darla.jobs`) needs to know about a stage: the summary a finished run leaves
(:data:`STAGES`, :func:`finished_summary`) and the job that runs one config of it (:func:`stage_job`).
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from omegaconf import OmegaConf

from darla.config import ConfigError, Stage1Config, Stage2Config, load_config, to_dict, to_yaml
from vision.runtime import atomic_write_json, atomic_write_text, git_sha, versions


T = TypeVar("T")
JOBS_DIR = "jobs"  # beside a pipeline's or sweep's runs: each job's resolved config (``<name>.yaml``)
LOGS_DIR = "logs"  # and each job's output (``<name>.log``)


def stage_cli(prog: str, description: str, schema: type[T], run: Callable[..., dict[str, Any]],
              argv: Sequence[str] | None, example: str) -> tuple[T, dict[str, Any]] | None:
    """The shared command line of a stage: ``--config YAML [--no-progress] [key=value ...]``.

    Returns (config, summary) after ``run(cfg, progress=...)``, or None after printing a one-line error for a bad
    config, path or value (the caller exits with status 2).
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", required=True, help="YAML config (see configs/)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("overrides", nargs="*", help=f"dotted overrides, e.g. {example}")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(schema, args.config, args.overrides)
        return cfg, run(cfg, progress=not args.no_progress)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return None


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def schema_defaults(cfg: Any) -> dict[str, Any]:
    """Dotted keys of ``cfg``'s dataclass fields (nested sections included) with their values, as a nested dict.

    Free-form mapping fields (``pipeline.variants``, ``agent.hparams``, …) are left out: their keys are the user's,
    not the schema's, so a default entry in them says nothing about an old run.
    """
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = schema_defaults(value)
        elif not isinstance(value, dict):
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def config_differences(old: dict[str, Any], new: dict[str, Any], ignore: Iterable[str] = (),
                       defaults: dict[str, Any] | None = None) -> list[str]:
    """Dotted keys whose values differ between two config dicts (keys under an ``ignore`` prefix skipped).

    A key ``old`` lacks (a setting added since it was saved) takes its value from ``defaults``.
    """
    a, b = {**_flatten(defaults or {}), **_flatten(old)}, _flatten(new)
    skip = tuple(ignore)
    return [k for k in sorted(set(a) | set(b)) if not k.startswith(skip) and a.get(k) != b.get(k)]


def prepare_run_dir(run_dir: str | Path, cfg: Any, stage: str, resume: bool, ignore: Iterable[str] = ()) -> tuple[Path, bool]:
    """Create (or reopen) ``run_dir`` for ``cfg``; returns (path, is_resuming).

    An existing run is reopened only when ``resume`` is true and its saved config matches ``cfg`` outside the
    ``ignore`` prefixes (e.g. ``train.steps`` may grow); otherwise a one-line :class:`ConfigError` says what to do.
    Writes ``config.yaml`` and ``run.json`` (stage, versions, git SHA, and every invocation's command line and time).
    """
    path = Path(run_dir)
    saved = path / "config.yaml"
    resuming = False
    if saved.exists():
        if not resume:
            raise ConfigError(f"run.dir: {path} already holds a {stage} run; set run.resume=true to continue it or choose a new run.dir")
        old = OmegaConf.to_container(OmegaConf.load(saved), resolve=True)
        # Settings added to the schema since the run was saved count as their defaults: the run used that behaviour.
        diff = config_differences(old, to_dict(cfg), ignore, defaults=schema_defaults(type(cfg)()))  # type: ignore[arg-type]
        if diff:
            raise ConfigError(
                f"run.dir: {path} holds a run with a different config ({', '.join(diff[:3])}"
                f"{' …' if len(diff) > 3 else ''}); choose a new run.dir"
            )
        resuming = True
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, to_yaml(cfg))
    info_path = path / "run.json"
    history = json.loads(info_path.read_text())["invocations"] if info_path.exists() else []
    history.append({"command": sys.argv, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git_sha": git_sha(), "resumed": resuming})
    atomic_write_json(info_path, {"stage": stage, "git_sha": git_sha(), "versions": versions(), "invocations": history})
    return path, resuming


@contextmanager
def undo_failed_start(run_dir: str | Path) -> Iterator[None]:
    """Undo what a run's start wrote if the block fails: enter before :func:`prepare_run_dir`, leave before
    training writes any state.

    A failed start would otherwise leave ``config.yaml`` behind, and the corrected command would be refused as "a
    different config". A directory this invocation created is removed; in one that existed, only the entries it
    added are (a resumed run's own files are never touched).
    """
    path = Path(run_dir)
    existed = path.exists()
    before = {p.name for p in path.iterdir()} if path.is_dir() else set()
    try:
        yield
    except BaseException:
        if not existed:
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_dir():
            for entry in path.iterdir():
                if entry.name in before:
                    continue
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        raise


def import_env_modules(names: Sequence[str], key: str) -> None:
    """Import darla's ``envs`` (registers ``darla/*`` ids) and the modules ``names`` (config key ``key``), which
    register third-party ids (``minigrid`` for ``MiniGrid-*``, ``ale_py`` for Atari, …)."""
    import envs  # noqa: F401  (registration side effect)

    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ConfigError(f"{key}: cannot import {name!r} ({e})") from None


# ----- stages as jobs --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    """How the job runner drives one darla stage.

    ``module`` runs as ``python -m <module> --config YAML [--no-progress]`` (the stage CLIs' shared command line,
    :func:`stage_cli`); ``summary_file`` is the JSON the stage writes into its run directory when a run ends;
    ``is_done(cfg, summary)`` says whether that summary shows the run reached the length ``cfg`` asks for;
    ``row(summary, run_dir)`` gives the scalar columns of a sweep table; ``resumable`` are the config keys (dotted
    prefixes) a run may change when it is resumed (a longer run, another machine).
    """

    name: str
    schema: type
    module: str
    summary_file: str
    is_done: Callable[[Any, dict[str, Any]], bool]
    row: Callable[[dict[str, Any], Path], dict[str, Any]]
    resumable: tuple[str, ...] = ("run.",)


def _stage1_done(cfg: Stage1Config, summary: dict[str, Any]) -> bool:
    return int(summary.get("step", -1)) >= cfg.train.steps and (not cfg.eval.metrics or "metrics" in summary)


def _stage1_row(summary: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    terms = summary.get("terms", {})
    row: dict[str, Any] = {
        "step": summary.get("step"),
        "loss": terms.get("loss"),
        "recon": terms.get("recon"),
        "kl": float(sum(summary["kl_per_latent"])) if "kl_per_latent" in summary else None,
        "active_latents": summary.get("active_latents"),
        "train_seconds": summary.get("train_seconds"),
    }
    metrics_path = run_dir / "metrics.json"
    if metrics_path.exists():
        from darla.report import flatten_scores

        row.update({f"metric/{k}": v for k, v in flatten_scores(json.loads(metrics_path.read_text())).items()})
    return row


def _stage2_done(cfg: Stage2Config, summary: dict[str, Any]) -> bool:
    return int(summary.get("num_timesteps", -1)) >= cfg.train.total_timesteps


def _stage2_row(summary: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    row: dict[str, Any] = {"timesteps": summary.get("num_timesteps"), "train_seconds": summary.get("train_seconds")}
    for domain, last in (summary.get("final") or {}).items():
        row[f"reward/{domain}"] = last.get("mean_reward")
    return row


STAGES: dict[str, Stage] = {
    "stage1": Stage("stage1", Stage1Config, "darla.stage1", "stage1.json", _stage1_done, _stage1_row,
                    resumable=("run.", "train.steps", "eval.")),
    "stage2": Stage("stage2", Stage2Config, "darla.stage2", "stage2.json", _stage2_done, _stage2_row,
                    resumable=("run.", "train.total_timesteps", "train.device", "train.num_threads",
                               "train.ckpt_every", "train.save_replay_buffer")),
}


def register_stage(stage: Stage) -> None:
    """Make ``stage`` available to sweeps as ``stage: <stage.name>``."""
    STAGES[stage.name] = stage


def finished_summary(stage: Stage, cfg: Any, run_dir: Path) -> dict[str, Any] | None:
    """The stage summary in ``run_dir`` when it records a finished run of exactly ``cfg``; otherwise None."""
    summary_path, config_path = run_dir / stage.summary_file, run_dir / "config.yaml"
    if not (summary_path.exists() and config_path.exists()):
        return None
    saved = OmegaConf.to_container(OmegaConf.load(config_path), resolve=True)
    if config_differences(saved, to_dict(cfg), ignore=("run.",)):  # type: ignore[arg-type]
        return None
    summary = json.loads(summary_path.read_text())
    return summary if stage.is_done(cfg, summary) else None


def stage_job(stage: Stage, name: str, cfg: Any, workdir: Path, after: Sequence[str] = (), progress: bool = True,
              cpus: float = 1.0, gpus: float = 0.0, cost: float = 1.0) -> Any:
    """The :class:`darla.jobs.Job` that runs ``cfg`` with ``stage``'s CLI.

    Its config is written to ``workdir/jobs/<name>.yaml`` just before it starts and its output goes to
    ``workdir/logs/<name>.log``; it counts as done when ``cfg.run.dir`` holds a finished run of exactly ``cfg``.
    """
    from darla.jobs import Job

    config_path = Path(workdir) / JOBS_DIR / f"{name}.yaml"
    argv = ("-m", stage.module, "--config", str(config_path), *(() if progress else ("--no-progress",)))
    return Job(name, argv, Path(workdir) / LOGS_DIR / f"{name}.log", after=tuple(after),
               done=lambda: finished_summary(stage, cfg, Path(cfg.run.dir)) is not None,
               prepare=lambda: atomic_write_text(config_path, to_yaml(cfg)), cpus=cpus, gpus=gpus, cost=cost,
               config=cfg)
