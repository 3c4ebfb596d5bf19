"""Sweeps: ``python -m darla.sweep --config configs/sweeps/<name>.yaml [--address auto]``.

A sweep is data: a stage, a base config, and axes over any of its keys. Every trial is one ordinary stage run
with its own run directory under ``<dir>/trials/<name>``, so a trial can be inspected, resumed or rerun by hand
with the stage's own CLI. Trials run on darla's job runner (:mod:`darla.jobs`), like the pipeline's jobs: local
subprocesses by default (``max_concurrent`` at a time, or as many as the cores allow, each with its share of the
threads), or a Ray cluster with ``--address auto`` / ``ray://host:10001`` (``dir`` must then be storage every
node sees; ``--address local`` starts Ray on this machine).

.. code-block:: yaml

    stage: stage1                       # a registered stage (darla.runs.STAGES)
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
    resources: {cpu: 1, gpu: 0}         # per trial; gpu may be fractional (on Ray)
    max_concurrent: 2                   # 0: as many as the cores (or the cluster's resources) allow
    dir: runs/sweeps/dsprites_beta

Trials are expanded here, deterministically, so each has a stable name (``model.beta=4,train.seed=0``) and run
directory. Trials whose run directory already holds a finished result are skipped before anything starts: an
interrupted sweep, rerun, only does the missing work (an unfinished trial resumes from its last checkpoint).

Sweeps can build on sweeps, with two plain mappings in place of a value:

- ``{udr_best_of: <sweep dir>}`` (a value in ``grid`` or ``variants``) is the UDR-best stage-1 run of that sweep
  (:func:`darla.select.best_vision_run`): "the best vision module of sweep X" without choosing β by hand;
- ``{trials_of: <sweep dir>}`` (a whole grid axis) is the run directory of every trial of that finished sweep,
  e.g. one agent per vision module.

The sweep directory holds ``sweep.json`` (the expanded plan), ``trials/`` (one run directory per trial, each
with its own tensorboard events), ``jobs/`` and ``logs/`` (each trial's config file and output) and
``summary.json`` / ``summary.md`` (one row per trial).
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import re
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Sequence

import numpy as np

from darla.config import ConfigError, load_config
from darla.jobs import JobError, MissingRayError, Runner, add_runner_arguments, echo_line, run_jobs, runner_from_args
from darla.runs import STAGES, Stage, finished_summary, register_stage, stage_job
from vision.runtime import atomic_write_json, atomic_write_text

__all__ = ["STAGES", "Stage", "register_stage", "finished_summary", "SweepConfig", "Trial", "load_sweep", "expand",
           "trial_config", "run_sweep", "write_plan", "summarize", "summary_markdown", "main"]

SWEEP_PLAN = "sweep.json"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
TRIALS_DIR = "trials"
UDR_BEST_OF = "udr_best_of"  # {udr_best_of: DIR}: the UDR-best stage-1 run of the sweep in DIR
TRIALS_OF = "trials_of"  # {trials_of: DIR}: a grid axis over the run directories of the sweep in DIR
OLD_FORMS = {"udr-best:": "{udr_best_of: DIR}", "trials:": "{trials_of: DIR} as the whole axis"}
RANDOM_KINDS = ("uniform", "loguniform", "randint", "choice")


# ----- the sweep schema ------------------------------------------------------------------------------------
@dataclass
class ResourcesConfig:
    """What each trial reserves: ``cpu`` cores (locally, ``max_concurrent`` and the cores set how many run at once),
    ``gpu`` on Ray."""

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
    grid: dict[str, Any] = field(default_factory=dict)  # dotted key -> [values] or {trials_of: <sweep dir>}
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {dotted key: value}
    random: dict[str, dict[str, list[Any]]] = field(default_factory=dict)  # dotted key -> {kind: args}
    num_samples: int = 1
    seed: int = 0
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    max_concurrent: int = 0  # 0: as many trials at once as the cores (or the cluster's resources) allow
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
        for o in self.overrides:
            _check_value("overrides", o.partition("=")[2])
        for key, values in self.grid.items():
            _check_key(f"grid.{key}", key)
            if _reference(values, f"grid.{key}") == TRIALS_OF:
                continue
            if not isinstance(values, list):
                raise ValueError(f"grid.{key}: expected a list of values or {{{TRIALS_OF}: <sweep dir>}}, got {values!r}")
            if not values:
                raise ValueError(f"grid.{key}: needs at least one value")
            for v in values:
                _check_value(f"grid.{key}", v)
        for name, bundle in self.variants.items():
            if not bundle:
                raise ValueError(f"variants.{name}: needs at least one key: value")
            for key, v in bundle.items():
                _check_key(f"variants.{name}.{key}", key)
                _check_value(f"variants.{name}.{key}", v)
        for key, spec in self.random.items():
            _check_key(f"random.{key}", key)
            _check_random(key, spec)
        both = set(self.grid) & set(self.random)
        if both:
            raise ValueError(f"random.{sorted(both)[0]}: also a grid axis; a key is swept one way")


def _check_key(where: str, key: str) -> None:
    if key.startswith("run."):
        raise ValueError(f"{where}: run.* is set by the sweep (each trial's run.dir is <dir>/trials/<name>)")


def _reference(value: Any, where: str = "") -> str:
    """``udr_best_of`` / ``trials_of`` when ``value`` is that one-key mapping (a reference to another sweep), else ''."""
    if isinstance(value, Mapping) and len(value) == 1:
        (kind, target), = value.items()
        if kind in (UDR_BEST_OF, TRIALS_OF):
            if not isinstance(target, str) or not target:
                raise ValueError(f"{where}.{kind}: expected a sweep directory, got {target!r}")
            return str(kind)
    return ""


def _check_value(where: str, value: Any) -> None:
    kind = _reference(value, where)
    if kind == TRIALS_OF:
        raise ValueError(f"{where}: {{{TRIALS_OF}: DIR}} is a whole grid axis (grid.KEY: {{{TRIALS_OF}: DIR}}), not a value")
    if isinstance(value, str):
        for prefix, new_form in OLD_FORMS.items():
            if value.startswith(prefix):
                raise ValueError(f"{where}: {value!r} is the old string form; write {new_form} "
                                 f"({'in grid or variants' if prefix == 'udr-best:' else 'e.g. vision.run: {trials_of: DIR}'})")


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
    if _reference(value) == UDR_BEST_OF:
        value = f"udr-best:{value[UDR_BEST_OF]}"  # the label trials of this value have always had
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
    """Replaces ``{udr_best_of: <sweep dir>}`` by that sweep's UDR-best stage-1 run directory (each sweep looked up
    once); other values pass unchanged."""
    memo: dict[str, str] = {}

    def resolve(value: Any) -> Any:
        if _reference(value) != UDR_BEST_OF:
            return value
        sweep_dir = value[UDR_BEST_OF]
        if sweep_dir not in memo:
            from darla.select import best_vision_run

            memo[sweep_dir] = str(best_vision_run(sweep_dir))
        return memo[sweep_dir]

    return resolve


def _axis(key: str, values: Any) -> list[tuple[str, Any]]:
    """(label, value) pairs of a grid axis; ``{trials_of: <sweep dir>}`` lists that sweep's trial run directories."""
    if _reference(values) != TRIALS_OF:
        return [(value_label(v), v) for v in values]
    src = Path(values[TRIALS_OF])
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


def expand(spec: SweepConfig, extra_overrides: Sequence[str] = ()) -> list[Trial]:
    """The sweep's trials in a deterministic order with stable names and run directories.

    Random axes are drawn from an RNG seeded by (``seed``, sample index, grid point), so adding a grid value
    leaves the draws of every other trial unchanged.
    """
    root = Path(spec.dir).resolve()
    resolve = _resolver()
    common = [*spec.overrides, *extra_overrides]
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


# ----- running ---------------------------------------------------------------------------------------------
def run_sweep(spec: SweepConfig, runner: Runner | None = None, *, extra_overrides: Sequence[str] = (),
              progress: bool = False, echo: Callable[[str], None] | None = echo_line) -> dict[str, Any]:
    """Run every unfinished trial of ``spec``; returns the summary written to ``<dir>/summary.json``.

    ``runner`` (:class:`darla.jobs.Runner`): local subprocesses by default, ``max_concurrent`` at a time (or as
    many as the cores allow for ``resources.cpu`` each); Ray with an ``address``. Finished trials are not
    started at all (when none is left, no executor, and so no Ray, is started). ``progress`` writes the stages'
    progress lines into the trials' logs; ``echo`` gets one line per trial start and end.
    """
    stage = STAGES[spec.stage]
    root = Path(spec.dir).resolve()
    runner = runner or Runner(max_parallel=spec.max_concurrent)
    trials = expand(spec, extra_overrides)
    configs = {t.name: trial_config(spec, t) for t in trials}  # every trial validated before anything runs
    write_plan(spec, trials, extra_overrides)
    jobs = [stage_job(stage, t.name, configs[t.name], root, progress=progress, cpus=spec.resources.cpu,
                      gpus=spec.resources.gpu) for t in trials]
    results = run_jobs(jobs, runner, echo=echo, label=f"sweep {root.name}")
    errors = {name: r.error for name, r in results.items() if r.status in ("failed", "blocked")}
    skipped = {name for name, r in results.items() if r.status == "skipped"}
    summary = summarize(spec, trials, stage, skipped=skipped, errors=errors)
    atomic_write_json(root / SUMMARY_JSON, summary)
    atomic_write_text(root / SUMMARY_MD, summary_markdown(summary))
    return summary


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
    parser.add_argument("--set", dest="trial_overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override applied to every trial (repeatable), e.g. --set train.steps=300")
    parser.add_argument("--dry-run", action="store_true", help="print the trials and their status; run nothing")
    parser.add_argument("--progress", action="store_true", help="progress lines in the trials' logs")
    parser.add_argument("--quiet", action="store_true", help="no line per trial start and end")
    add_runner_arguments(parser)
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
        summary = run_sweep(spec, runner_from_args(args, max_parallel=spec.max_concurrent),
                            extra_overrides=args.trial_overrides, progress=args.progress,
                            echo=None if args.quiet else echo_line)
    except (ConfigError, ValueError, MissingRayError, FileNotFoundError, JobError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the running trials were stopped; rerun the same command to resume", file=sys.stderr)
        return 130
    root = Path(summary["dir"])
    print(summary_markdown(summary))
    print(f"summary: {root / SUMMARY_MD}; logs: {root / 'logs'}; tensorboard --logdir {root / TRIALS_DIR}")
    return 1 if summary["counts"]["error"] or summary["counts"]["incomplete"] else 0


if __name__ == "__main__":
    sys.exit(main())
