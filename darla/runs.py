"""Run directories: every stage writes its resolved config, versions and git SHA beside its results."""
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
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from omegaconf import OmegaConf

from darla.config import ConfigError, load_config, to_dict, to_yaml
from vision.runtime import atomic_write_json, atomic_write_text, git_sha, versions


T = TypeVar("T")


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
