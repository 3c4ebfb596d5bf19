"""Sweeps on Ray Tune: ``python -m darla.sweep --config configs/sweeps/<name>.yaml [--address auto]``.

A sweep is data: a stage, a base config, and axes over any of its keys. Every trial is one ordinary stage run
with its own run directory under ``<dir>/trials/<name>``, so a trial can be inspected, resumed or rerun by hand
with the stage's own CLI. The same command runs on a laptop (local Ray, the default) and on a Ray cluster
(``--address auto`` or ``ray://host:10001``; ``dir`` must then be storage every node sees).

.. code-block:: yaml

    stage: stage1                       # a registered stage (see STAGES)
    base: configs/dsprites/beta_vae.yaml
    overrides: [train.steps=1500]       # applied to every trial
    grid:                               # crossed: one trial per combination
      model.beta: [1, 4, 16]
      train.seed: [0, 1, 2]
    variants: {}                        # named bundles of linked values, crossed with the grid
    random:                             # drawn per trial from a seeded RNG
      train.lr: {loguniform: [1.0e-4, 1.0e-3]}
    num_samples: 1                      # random draws per grid point
    seed: 0
    resources: {cpu: 1, gpu: 0}         # per trial; gpu may be fractional
    max_concurrent: 2                   # 0: as many as the resources allow
    dir: runs/sweeps/dsprites_beta

Trials are expanded here, deterministically, so each has a stable name (``model.beta=4,train.seed=0``) and run
directory. Trials whose run directory already holds a finished result are skipped before Ray is started: an
interrupted sweep, rerun, only does the missing work (an unfinished trial resumes from its last checkpoint).

Sweeps can build on sweeps. A value ``udr-best:<sweep dir>`` (in ``overrides``, ``grid`` or ``variants``) is
replaced by the UDR-best stage-1 run of that sweep (:func:`darla.select.best_vision_run`): "the best vision
module of sweep X" without choosing β by hand. A grid axis given as ``["trials:<sweep dir>"]`` takes the run
directories of every trial of that (finished) sweep, e.g. one agent per vision module.

The sweep directory holds ``sweep.json`` (the expanded plan), ``trials/`` (one run directory per trial, each
with its own tensorboard events), ``ray/`` (Tune's experiment state and its tensorboard stream of trial results)
and ``summary.json`` / ``summary.md`` (one row per trial).
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import itertools
import json
import logging
import math
import os
import re
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Sequence

import numpy as np
from omegaconf import OmegaConf

from darla.config import ConfigError, Stage1Config, Stage2Config, load_config, to_dict
from darla.runs import config_differences
from vision.runtime import atomic_write_json, atomic_write_text

SWEEP_PLAN = "sweep.json"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
TRIALS_DIR = "trials"
RAY_DIR = "ray"
UDR_BEST = "udr-best:"
TRIALS_OF = "trials:"
RANDOM_KINDS = ("uniform", "loguniform", "randint", "choice")
INSTALL_HINT = 'darla.sweep runs on Ray Tune, which is not installed: pip install -e ".[sweep]"  (or pip install "ray[tune]")'


class MissingRayError(ImportError):
    """Ray Tune is needed and not installed."""


# ----- stages ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    """How the sweep runner drives one darla stage.

    ``module`` names the module whose ``run(cfg, progress=...) -> summary`` executes a run (imported in the
    trial's worker process, so the driver never loads a stage's dependencies); ``summary_file`` is the JSON the
    stage writes into its run directory when a run ends; ``is_done(cfg, summary)`` says whether that summary
    shows the run reached the length ``cfg`` asks for; ``row(summary, run_dir)`` gives the scalar columns of the
    sweep table.
    """

    name: str
    schema: type
    module: str
    summary_file: str
    is_done: Callable[[Any, dict[str, Any]], bool]
    row: Callable[[dict[str, Any], Path], dict[str, Any]]

    def runner(self) -> Callable[..., dict[str, Any]]:
        return importlib.import_module(self.module).run  # type: ignore[no-any-return]


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
    "stage1": Stage("stage1", Stage1Config, "darla.stage1", "stage1.json", _stage1_done, _stage1_row),
    "stage2": Stage("stage2", Stage2Config, "darla.stage2", "stage2.json", _stage2_done, _stage2_row),
}


def register_stage(stage: Stage) -> None:
    """Make ``stage`` available to sweeps as ``stage: <stage.name>``."""
    STAGES[stage.name] = stage


# ----- the sweep schema ------------------------------------------------------------------------------------
@dataclass
class ResourcesConfig:
    """What Ray reserves for each trial; ``cpu`` also sets the trial's torch thread count."""

    cpu: float = 1.0
    gpu: float = 0.0  # fractions share a GPU between trials (e.g. 0.25: four trials per GPU)

    def __post_init__(self) -> None:
        if self.cpu <= 0:
            raise ValueError(f"resources.cpu: must be > 0, got {self.cpu}")
        if self.gpu < 0:
            raise ValueError(f"resources.gpu: must be >= 0, got {self.gpu}")


@dataclass
class SweepConfig:
    """A sweep: trials = variants × grid × num_samples random draws, each one run of ``stage``."""

    stage: str = "stage1"
    base: str = ""  # the stage's YAML config; "" starts from the schema's defaults
    overrides: list[str] = field(default_factory=list)  # dotted key=value, applied to every trial
    grid: dict[str, list[Any]] = field(default_factory=dict)  # dotted key -> values
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {dotted key: value}
    random: dict[str, dict[str, list[Any]]] = field(default_factory=dict)  # dotted key -> {kind: args}
    num_samples: int = 1
    seed: int = 0
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    max_concurrent: int = 0  # 0: as many trials at once as the cluster's resources allow
    dir: str = "runs/sweeps/sweep"

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage: unknown {self.stage!r}; choose from {tuple(STAGES)}")
        if self.num_samples < 1:
            raise ValueError(f"num_samples: must be >= 1, got {self.num_samples}")
        if self.max_concurrent < 0:
            raise ValueError(f"max_concurrent: must be >= 0, got {self.max_concurrent}")
        if not self.dir:
            raise ValueError("dir: required")
        if self.num_samples > 1 and not self.random:
            raise ValueError("num_samples: > 1 repeats identical trials without random axes; sweep a seed axis instead")
        for key, values in self.grid.items():
            _check_key(f"grid.{key}", key)
            if not values:
                raise ValueError(f"grid.{key}: needs at least one value")
        for name, bundle in self.variants.items():
            if not bundle:
                raise ValueError(f"variants.{name}: needs at least one key: value")
            for key in bundle:
                _check_key(f"variants.{name}.{key}", key)
        for key, spec in self.random.items():
            _check_key(f"random.{key}", key)
            _check_random(key, spec)
        both = set(self.grid) & set(self.random)
        if both:
            raise ValueError(f"random.{sorted(both)[0]}: also a grid axis; a key is swept one way")


def _check_key(where: str, key: str) -> None:
    if key.startswith("run."):
        raise ValueError(f"{where}: run.* is set by the sweep (each trial's run.dir is <dir>/trials/<name>)")


def _check_random(key: str, spec: Mapping[str, list[Any]]) -> None:
    if len(spec) != 1 or next(iter(spec)) not in RANDOM_KINDS:
        raise ValueError(f"random.{key}: expected one of {RANDOM_KINDS} with its arguments, e.g. {{loguniform: [1.0e-4, 1.0e-3]}}")
    kind, args = next(iter(spec.items()))
    if kind == "choice":
        if not args:
            raise ValueError(f"random.{key}.choice: needs at least one value")
        return
    if len(args) != 2 or not all(isinstance(a, (int, float)) for a in args) or not args[0] < args[1]:
        raise ValueError(f"random.{key}.{kind}: expected [low, high] with low < high, got {list(args)}")
    if kind == "loguniform" and args[0] <= 0:
        raise ValueError(f"random.{key}.loguniform: low must be > 0, got {args[0]}")
    if kind == "randint" and not all(float(a).is_integer() for a in args):
        raise ValueError(f"random.{key}.randint: expected integers [low, high), got {list(args)}")


def load_sweep(path: str | Path, overrides: Sequence[str] = ()) -> SweepConfig:
    """A sweep YAML validated into a :class:`SweepConfig` (one-line :class:`ConfigError` naming the key)."""
    return load_config(SweepConfig, path, overrides)


# ----- expansion -------------------------------------------------------------------------------------------
@dataclass
class Trial:
    """One planned stage run: its stable name, the values that define it, and its full override list."""

    name: str
    params: dict[str, Any]  # swept keys -> values (variant bundles flattened in, plus "variant": name)
    overrides: list[str]  # the sweep's overrides, then this trial's values, then run.dir
    run_dir: Path

    def command(self, stage: str, base: str) -> str:
        """The equivalent single-run command line (to rerun or debug one trial by hand)."""
        parts = [f"python -m darla.{stage}"] + ([f"--config {base}"] if base else [])
        return " ".join(parts + [f"'{o}'" for o in self.overrides])


def format_value(value: Any) -> str:
    """``value`` as the right-hand side of a dotted override (JSON is valid YAML flow syntax)."""
    return json.dumps(value)


def value_label(value: Any) -> str:
    """A short, file-name-safe rendering of an axis value for trial names."""
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, (str, int, bool)) or value is None:
        text = str(value)
    else:
        text = json.dumps(value, separators=(",", ":"))
    return re.sub(r"[^A-Za-z0-9._+\-=]", "_", text)


def _draw(rng: np.random.Generator, spec: Mapping[str, list[Any]]) -> Any:
    kind, args = next(iter(spec.items()))
    if kind == "uniform":
        return float(rng.uniform(args[0], args[1]))
    if kind == "loguniform":
        return float(math.exp(rng.uniform(math.log(args[0]), math.log(args[1]))))
    if kind == "randint":
        return int(rng.integers(int(args[0]), int(args[1])))
    return args[int(rng.integers(len(args)))]


def _resolver() -> Callable[[Any], Any]:
    """Replaces ``udr-best:<sweep dir>`` by that sweep's UDR-best stage-1 run directory (each sweep looked up once)."""
    memo: dict[str, str] = {}

    def resolve(value: Any) -> Any:
        if not (isinstance(value, str) and value.startswith(UDR_BEST)):
            return value
        if value not in memo:
            from darla.select import best_vision_run

            memo[value] = str(best_vision_run(value[len(UDR_BEST):]))
        return memo[value]

    return resolve


def _axis(key: str, values: list[Any]) -> list[tuple[str, Any]]:
    """(label, value) pairs of a grid axis; ``["trials:<sweep dir>"]`` lists that sweep's trial run directories."""
    if len(values) == 1 and isinstance(values[0], str) and values[0].startswith(TRIALS_OF):
        src = Path(values[0][len(TRIALS_OF):])
        plan_path = src / SWEEP_PLAN
        if not plan_path.exists():
            raise ConfigError(f"grid.{key}: {src} holds no {SWEEP_PLAN}; run that sweep first")
        plan = json.loads(plan_path.read_text())
        unfinished = [t["name"] for t in plan["trials"]
                      if not (Path(t["run_dir"]) / STAGES[plan["stage"]].summary_file).exists()]
        if unfinished:
            raise ConfigError(f"grid.{key}: {len(unfinished)} trials of {src} are not finished "
                              f"(e.g. {unfinished[0]}); finish that sweep first")
        return [(value_label(t["name"]), t["run_dir"]) for t in plan["trials"]]
    return [(value_label(v), v) for v in values]


def expand(spec: SweepConfig, extra_overrides: Sequence[str] = ()) -> list[Trial]:
    """The sweep's trials in a deterministic order with stable names and run directories.

    Random axes are drawn from an RNG seeded by (``seed``, sample index, grid point), so adding a grid value
    leaves the draws of every other trial unchanged.
    """
    root = Path(spec.dir).resolve()
    resolve = _resolver()
    common = []
    for o in [*spec.overrides, *extra_overrides]:
        key, _, value = o.partition("=")
        common.append(f"{key}={resolve(value)}" if value.startswith(UDR_BEST) else o)
    variants = list(spec.variants.items()) or [("", {})]
    axes = [_axis(k, v) for k, v in spec.grid.items()]
    points = list(itertools.product(*axes)) if axes else [()]
    keys = list(spec.grid)
    trials: list[Trial] = []
    for (vname, bundle), point, sample in itertools.product(variants, points, range(spec.num_samples)):
        params: dict[str, Any] = {"variant": vname} if vname else {}
        params.update(bundle)
        params.update((k, v) for k, (_, v) in zip(keys, point))
        parts = ([value_label(vname)] if vname else []) + [f"{k}={label}" for k, (label, _) in zip(keys, point)]
        if spec.random:
            point_id = zlib.crc32(",".join(parts).encode())
            rng = np.random.default_rng([spec.seed, sample, point_id])
            params.update({k: _draw(rng, s) for k, s in spec.random.items()})
            parts.append(f"sample={sample}")
        name = ",".join(parts) or "trial"
        run_dir = root / TRIALS_DIR / name
        values = [f"{k}={format_value(resolve(v))}" for k, v in params.items() if k != "variant"]
        trials.append(Trial(name, params, [*common, *values, f"run.dir={format_value(str(run_dir))}", "run.resume=true"], run_dir))
    seen: set[str] = set()
    for t in trials:
        if t.name in seen:
            raise ConfigError(f"grid: two trials are both named {t.name!r}; make the axis values distinct")
        seen.add(t.name)
    return trials


def trial_config(spec: SweepConfig, trial: Trial) -> Any:
    """The validated stage config of ``trial`` (a one-line ConfigError prefixed by the trial's name)."""
    stage = STAGES[spec.stage]
    try:
        return load_config(stage.schema, spec.base or None, trial.overrides)
    except ConfigError as e:
        raise ConfigError(f"trial {trial.name}: {e}") from None


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


# ----- running ---------------------------------------------------------------------------------------------
def _import_ray() -> Any:
    try:
        import ray
        from ray import tune  # noqa: F401
    except ImportError:
        raise MissingRayError(INSTALL_HINT) from None
    return ray


def _run_trial(config: dict[str, Any], *, stage: Stage, base: str, plans: dict[str, list[str]], threads: int,
               cwd: str) -> None:
    """Tune's trainable: one stage run in a Ray worker, reporting the trial's table row."""
    import torch
    from ray import tune

    # Tune starts each trial in a scratch directory; relative paths in configs (frame stores, DAE and vision
    # checkpoints) mean what they mean on the sweep's command line.
    if Path(cwd).is_dir():
        os.chdir(cwd)
    torch.set_num_threads(threads)
    cfg = load_config(stage.schema, base or None, plans[config["trial"]])
    summary = stage.runner()(cfg, progress=False)
    row = stage.row(summary, Path(cfg.run.dir))
    tune.report({k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})


def run_sweep(
    spec: SweepConfig,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    extra_overrides: Sequence[str] = (),
    verbose: int = 1,
) -> dict[str, Any]:
    """Run every unfinished trial of ``spec`` on Ray Tune; returns the summary written to ``<dir>/summary.json``.

    ``address`` None starts a local Ray (``num_cpus``/``num_gpus`` cap it; default: the whole machine) and shuts
    it down afterwards; otherwise the sweep joins that cluster. Trials already finished are not handed to Ray;
    when none is left Ray is not started at all.
    """
    stage = STAGES[spec.stage]
    root = Path(spec.dir).resolve()
    trials = expand(spec, extra_overrides)
    configs = {t.name: trial_config(spec, t) for t in trials}  # every trial validated before anything runs
    done = {t.name: s for t in trials if (s := finished_summary(stage, configs[t.name], t.run_dir)) is not None}
    pending = [t for t in trials if t.name not in done]
    write_plan(spec, trials, extra_overrides)
    print(f"sweep {root.name}: {len(trials)} trials, {len(done)} already finished, {len(pending)} to run", flush=True)

    errors: dict[str, str] = {}
    if pending:
        errors = _tune(spec, stage, pending, root, address=address, num_cpus=num_cpus, num_gpus=num_gpus, verbose=verbose)
    summary = summarize(spec, trials, stage, skipped=set(done), errors=errors)
    atomic_write_json(root / SUMMARY_JSON, summary)
    atomic_write_text(root / SUMMARY_MD, summary_markdown(summary))
    return summary


def _tune(spec: SweepConfig, stage: Stage, pending: list[Trial], root: Path, *, address: str | None,
          num_cpus: int | None, num_gpus: int | None, verbose: int) -> dict[str, str]:
    """Hand ``pending`` to Ray Tune; returns {trial name: one-line error} for the trials that failed."""
    ray = _import_ray()
    from ray import tune

    started = False
    if not ray.is_initialized():
        if address is None:
            ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, logging_level=logging.WARNING)
        else:
            try:
                ray.init(address=address, logging_level=logging.WARNING)
            except ConnectionError as e:
                raise ConfigError(f"--address {address}: {str(e).splitlines()[0]}") from None
        started = True
    try:
        trainable = tune.with_parameters(
            _run_trial, stage=stage, base=str(Path(spec.base).resolve()) if spec.base else "", plans={t.name: t.overrides for t in pending},
            threads=max(1, int(spec.resources.cpu)), cwd=str(Path.cwd()),
        )
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}),
            param_space={"trial": tune.grid_search([t.name for t in pending])},
            tune_config=tune.TuneConfig(max_concurrent_trials=spec.max_concurrent or None),
            run_config=tune.RunConfig(
                storage_path=str(root / RAY_DIR), name=time.strftime("tune-%Y%m%d-%H%M%S"), verbose=verbose,
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        )
        results = tuner.fit()
        errors: dict[str, str] = {}
        for result in results:
            if result.error is not None:
                cause = getattr(result.error, "cause", None) or result.error
                errors[result.config["trial"]] = (f"{type(cause).__name__}: {cause}".strip().splitlines() or [""])[0]
        return errors
    finally:
        if started:
            ray.shutdown()


def write_plan(spec: SweepConfig, trials: list[Trial], extra_overrides: Sequence[str] = ()) -> Path:
    """Write ``<dir>/sweep.json``: the sweep's config and every trial's values, run directory and command."""
    root = Path(spec.dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(root / SWEEP_PLAN, {
        "stage": spec.stage,
        "base": spec.base,
        "config": dataclasses.asdict(spec),
        "extra_overrides": list(extra_overrides),
        "axes": [*(["variant"] if spec.variants else []), *spec.grid, *spec.random],
        "trials": [{"name": t.name, "params": t.params, "run_dir": str(t.run_dir), "overrides": t.overrides,
                    "command": t.command(spec.stage, spec.base)} for t in trials],
    })
    return root / SWEEP_PLAN


def summarize(spec: SweepConfig, trials: list[Trial], stage: Stage, *, skipped: Collection[str] = (),
              errors: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One row per trial: status (finished before this invocation / ran now / error / incomplete) and results."""
    errors = errors or {}
    rows = []
    for t in trials:
        summary_path = t.run_dir / stage.summary_file
        if t.name in errors:
            status, result = "error", {}
        elif summary_path.exists():
            status = "skipped" if t.name in skipped else "done"
            result = stage.row(json.loads(summary_path.read_text()), t.run_dir)
        else:
            status, result = "incomplete", {}
        rows.append({"trial": t.name, "status": status, "params": t.params, "run_dir": str(t.run_dir),
                     "result": result, **({"error": errors[t.name]} if t.name in errors else {})})
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "skipped", "error", "incomplete")}
    return {"sweep": Path(spec.dir).resolve().name, "stage": spec.stage, "dir": str(Path(spec.dir).resolve()),
            "counts": counts, "trials": rows}


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|")


def summary_markdown(summary: Mapping[str, Any]) -> str:
    """The sweep summary as a Markdown table (one row per trial)."""
    rows = summary["trials"]
    params = list(dict.fromkeys(k for r in rows for k in r["params"]))
    results = list(dict.fromkeys(k for r in rows for k in r["result"]))
    header = ["trial", "status", *params, *results]
    lines = [f"# Sweep {summary['sweep']} ({summary['stage']})", "",
             ", ".join(f"{n} {s}" for s, n in summary["counts"].items() if n), "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["trial"], r["status"], *(r["params"].get(k) for k in params), *(r["result"].get(k) for k in results)]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    errors = [r for r in rows if r.get("error")]
    if errors:
        lines += ["", "Errors:", ""] + [f"- `{r['trial']}`: {r['error']}" for r in errors]
    return "\n".join(lines) + "\n"


# ----- CLI -------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m darla.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="sweep YAML (see configs/sweeps/)")
    parser.add_argument("--address", default=None, help="Ray cluster to join (auto, ray://host:10001); default: local Ray")
    parser.add_argument("--num-cpus", type=int, default=None, help="local Ray only: CPUs to use (default: all)")
    parser.add_argument("--num-gpus", type=int, default=None, help="local Ray only: GPUs to use (default: all)")
    parser.add_argument("--set", dest="trial_overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override applied to every trial (repeatable), e.g. --set train.steps=300")
    parser.add_argument("--dry-run", action="store_true", help="print the trials and their status; run nothing")
    parser.add_argument("--quiet", action="store_true", help="no Tune progress tables")
    parser.add_argument("overrides", nargs="*", help="sweep-level overrides, e.g. max_concurrent=1 dir=runs/sweeps/x")
    args = parser.parse_args(argv)
    try:
        spec = load_sweep(args.config, args.overrides)
        if args.dry_run:
            stage = STAGES[spec.stage]
            for t in expand(spec, args.trial_overrides):
                state = "finished" if finished_summary(stage, trial_config(spec, t), t.run_dir) else "pending"
                print(f"{state:9s} {t.name}\n          {t.command(spec.stage, spec.base)}")
            return 0
        summary = run_sweep(spec, address=args.address, num_cpus=args.num_cpus, num_gpus=args.num_gpus,
                            extra_overrides=args.trial_overrides, verbose=0 if args.quiet else 1)
    except (ConfigError, MissingRayError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    root = Path(summary["dir"])
    print(summary_markdown(summary))
    print(f"summary: {root / SUMMARY_MD}; tensorboard --logdir {root / TRIALS_DIR}")
    return 1 if summary["counts"]["error"] or summary["counts"]["incomplete"] else 0


if __name__ == "__main__":
    sys.exit(main())
