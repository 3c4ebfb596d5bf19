"""The whole study in one command: ``python -m darla.pipeline --config configs/quickstart.yaml [key=value ...]``.

Plan: (1) collect the stage-1 frames once; (2) train every vision module the variants need (e.g. a DAE, then a
β-VAE_DAE on its features, a β = 1 VAE); (3) train every variant × seed with stage 2 on the source domain;
(4) evaluate them all zero-shot with stage 3 and print the transfer table. Each job writes its own run directory
under ``pipeline.dir``; a finished job is skipped, an interrupted one resumes, so rerunning after a kill
continues where it stopped.

Jobs that do not wait for each other run side by side (:mod:`darla.jobs`): BASELINE agents beside the vision
training, every agent of a module as soon as it is trained. Locally (the default) as many jobs at once as there
are cores, one thread each (``--jobs``, ``--threads``); on a Ray cluster with ``--address``. Every job's output
goes to ``pipeline.dir/logs/<job>.log``, its config to ``pipeline.dir/jobs/<job>.yaml``; the console gets one line
per job start and end. A job's numbers depend on its config, seed and thread count only, never on what ran beside
it: ``--jobs 1 --threads 1`` reproduces a parallel run's numbers exactly.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from omegaconf import OmegaConf

from darla.config import ConfigError, Stage1Config, Stage2Config, apply_overrides, load_config, to_dict, to_yaml
from darla.jobs import (Job, JobError, MissingRayError, Runner, add_runner_arguments, echo_line, raise_for_failures,
                        run_jobs, runner_from_args)
from darla.runs import JOBS_DIR, LOGS_DIR, STAGES, config_differences, prepare_run_dir, stage_job
from vision.runtime import atomic_write_json, atomic_write_text

FRAMES = "frames.npz"  # the stage-1 frames every vision module trains on
REPLACED_DIR = "replaced"  # where --replace-changed moves the output of jobs whose settings changed
# Rough seconds on one CPU core (the quickstart's jobs, measured): a stage-1 step, an env step of an agent on
# latents and of one on pixels, an evaluation episode. They only order the jobs ready to start, longest chain first.
STAGE1_STEP, LATENT_STEP, PIXEL_STEP, EPISODE = 0.1, 0.0007, 0.0016, 0.15


@dataclass
class TransferSection:
    """Stage-3 settings of a pipeline."""

    episodes: int = 20
    reps: int = 2000
    # Scenes for each agent's policy invariance (darla.transfer --invariance); 0: not measured
    invariance_scenes: int = 0

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"transfer.episodes: must be >= 1, got {self.episodes}")
        if self.invariance_scenes != 0 and self.invariance_scenes < 2:
            raise ValueError(f"transfer.invariance_scenes: must be 0 (off) or >= 2, got {self.invariance_scenes}")


@dataclass
class PipelineSection:
    """Where the study lives and which variants it compares."""

    dir: str = "runs/pipeline"
    # Variant -> the vision module (a key of `vision`) it uses; "" for pixel variants (BASELINE, AUG).
    variants: dict[str, str] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    # Optional: take DARLA's vision module from the UDR-best model of this sweep directory instead of training one.
    udr_sweep: str = ""

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("pipeline.seeds: list at least one seed")


@dataclass
class PipelineConfig:
    pipeline: PipelineSection = field(default_factory=PipelineSection)
    stage1: Stage1Config = field(default_factory=Stage1Config)  # shared base of every vision module
    # Vision module name -> dotted overrides on `stage1` (e.g. [model.family=dae, train.steps=2000]).
    # A value "@name" is replaced by the run directory of the module `name` trained before it.
    vision: dict[str, list[str]] = field(default_factory=dict)
    stage2: Stage2Config = field(default_factory=Stage2Config)  # shared base of every agent
    # Variant -> dotted overrides on `stage2` for that variant only (e.g. pixel agents need other PPO settings
    # than agents on latents: {BASELINE: [agent.hparams.n_epochs=4]}).
    agents: dict[str, list[str]] = field(default_factory=dict)
    transfer: TransferSection = field(default_factory=TransferSection)


def plan(cfg: PipelineConfig, progress: bool = True) -> list[Job]:
    """The jobs of a pipeline and what each waits for: the shared frames, then each vision module (after the
    frames and the modules it names with ``@``), each variant × seed (after its module) and the transfer table
    (after every agent). Writes nothing; a job's config file is written when it starts."""
    root = Path(cfg.pipeline.dir)
    if not cfg.pipeline.variants:
        raise ConfigError("pipeline.variants: list at least one variant (e.g. {DARLA: beta_vae_dae, BASELINE: ''})")
    used = {m for m in cfg.pipeline.variants.values() if m}
    unknown = sorted(used - set(cfg.vision))
    if unknown:
        raise ConfigError(f"pipeline.variants: vision module {unknown[0]!r} is not defined under `vision`")
    stray = sorted(set(cfg.agents) - set(cfg.pipeline.variants))
    if stray:
        raise ConfigError(f"agents.{stray[0]}: not a variant listed in pipeline.variants {sorted(cfg.pipeline.variants)}")
    jobs: list[Job] = []
    module_dirs: dict[str, Path] = {}
    frames_path = root / FRAMES
    needs_frames = cfg.stage1.data.source == "env" and bool(cfg.vision)
    if needs_frames:
        jobs.append(Job("frames", ("-m", "darla.pipeline", "--config", str(root / JOBS_DIR / "frames.yaml"),
                                   "--collect-frames", str(frames_path), *(() if progress else ("--no-progress",))),
                        root / LOGS_DIR / "frames.log", done=frames_path.exists,
                        prepare=lambda: atomic_write_text(root / JOBS_DIR / "frames.yaml", to_yaml(cfg))))
    for name, overrides in cfg.vision.items():
        refs = [_module_ref(ov, module_dirs, name) for ov in overrides]
        run_dir = root / "stage1" / name
        base_overrides = [f"run.dir={run_dir}"]
        if needs_frames:  # every module trains on the same collected frames; metrics still use the env's factors
            base_overrides += ["data.source=frames", f"data.path={frames_path}"]
        s1 = apply_overrides(cfg.stage1, base_overrides + [ov for ov, _ in refs])
        module_dirs[name] = run_dir
        after = (["frames"] if needs_frames else []) + [f"stage1/{ref}" for _, ref in refs if ref]
        steps = s1.train.steps + (s1.train.restarts - 1) * s1.train.restart_steps
        jobs.append(stage_job(STAGES["stage1"], f"stage1/{name}", s1, root, after=after, progress=progress,
                              cost=STAGE1_STEP * steps))
    if cfg.pipeline.udr_sweep:
        from darla.select import best_vision_run

        module_dirs = {**module_dirs, **{m: Path(best_vision_run(cfg.pipeline.udr_sweep)) for m in used if m not in module_dirs}}
    agents: list[Job] = []
    runs: list[str] = []
    for variant, module in cfg.pipeline.variants.items():
        for seed in cfg.pipeline.seeds:
            s2 = _stage2_config(cfg, variant, seed, str(module_dirs[module]) if module else "")
            after = [f"stage1/{module}"] if module in cfg.vision else []
            cost = s2.train.total_timesteps * (LATENT_STEP if module else PIXEL_STEP)
            agents.append(stage_job(STAGES["stage2"], f"stage2/{variant}/seed{seed}", s2, root, after=after,
                                    progress=progress, cost=cost))
            runs.append(s2.run.dir)
    transfer = Job("transfer", ("-m", "darla.transfer", "--runs", *runs, "--out", str(root / "transfer"),
                                "--episodes", str(cfg.transfer.episodes), "--reps", str(cfg.transfer.reps),
                                "--invariance", str(cfg.transfer.invariance_scenes)),
                   root / LOGS_DIR / "transfer.log", after=tuple(j.name for j in agents),
                   cost=EPISODE * len(runs) * cfg.transfer.episodes)
    return jobs + agents + [transfer]


def _stage2_config(cfg: PipelineConfig, variant: str, seed: int, vision_run: str) -> Stage2Config:
    """The stage-2 config of one variant × seed: ``stage2``, then the variant's ``agents`` overrides, then its place."""
    ovs = list(cfg.agents.get(variant, []))
    ovs += [f"run.dir={Path(cfg.pipeline.dir) / 'stage2' / variant / f'seed{seed}'}", f"agent.variant={variant}",
            f"train.seed={seed}"]
    if vision_run:
        ovs.append(f"vision.run={vision_run}")
    return apply_overrides(cfg.stage2, ovs)


def _module_ref(override: str, module_dirs: dict[str, Path], current: str) -> tuple[str, str]:
    """(override, referenced module): a value ``@name`` becomes the run directory of the module ``name``."""
    key, _, value = override.partition("=")
    if value.startswith("@"):
        ref = value[1:]
        if ref not in module_dirs:
            raise ConfigError(f"vision.{current}: {override!r} refers to {ref!r}, which is not a module defined before it")
        return f"{key}={module_dirs[ref]}", ref
    return override, ""


def _job_output(job: Job, root: Path) -> Path | None:
    """Where a job of the plan leaves a result that later runs reuse: the frames file or a stage's run directory."""
    if job.name == "frames":
        return root / FRAMES
    # the transfer table is remade on every run, so it never needs replacing
    return Path(job.config.run.dir) if job.config is not None else None


def _changed(job: Job, cfg: PipelineConfig, root: Path) -> bool:
    """Whether ``job``'s existing output was made with other settings than the study's config asks for now."""
    if job.name == "frames":
        saved = root / JOBS_DIR / "frames.yaml"
        old = OmegaConf.to_container(OmegaConf.load(saved), resolve=True)["stage1"]["data"] if saved.exists() else None
        return old is not None and bool(config_differences(old, to_dict(cfg.stage1.data)))  # type: ignore[arg-type]
    if job.config is None:
        return False
    saved = Path(job.config.run.dir) / "config.yaml"
    if not saved.exists():  # a directory without a config holds no run to compare
        return False
    old = OmegaConf.to_container(OmegaConf.load(saved), resolve=True)
    return bool(config_differences(old, to_dict(job.config),  # type: ignore[arg-type]
                                   ignore=STAGES[job.name.split("/")[0]].resumable))


def stale_jobs(cfg: PipelineConfig, jobs: list[Job]) -> list[Job]:
    """The jobs of ``plan(cfg)`` whose existing output no longer belongs to the study: made with settings the config
    has since changed, or downstream of a job that is stale or will run again (a retrained vision module makes
    every agent on it, and the transfer table, stale)."""
    root = Path(cfg.pipeline.dir)
    stale: set[str] = set()
    rerun: set[str] = set()  # jobs whose output is missing: they will run, so what was made from them is stale
    for job in jobs:  # plan order: a job comes after every job it waits for
        out = _job_output(job, root)
        if out is None or not out.exists():
            rerun.add(job.name)
        elif any(a in stale or a in rerun for a in job.after) or _changed(job, cfg, root):
            stale.add(job.name)
    return [j for j in jobs if j.name in stale]


def replace_stale(cfg: PipelineConfig, jobs: list[Job], echo: Callable[[str], None] | None = echo_line) -> Path | None:
    """Move the output of every stale job (:func:`stale_jobs`) to ``pipeline.dir/replaced/<UTC time>/``, keeping
    its path below the study's directory, so that the study reruns them; returns that directory (None: none)."""
    root = Path(cfg.pipeline.dir)
    stale = stale_jobs(cfg, jobs)
    if not stale:
        return None
    dest = root / REPLACED_DIR / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for job in stale:
        out = _job_output(job, root)
        assert out is not None  # stale jobs have an output
        target = dest / out.resolve().relative_to(root.resolve())
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(out), str(target))
        if echo:
            echo(f"replaced {job.name}: its earlier output is in {target}")
    return dest


def _collect(s1: Stage1Config, path: Path, progress: bool) -> None:
    from darla.stage1 import collect_store

    collect_store(s1.data, progress).save(path)


def select_jobs(jobs: Sequence[Job], patterns: Sequence[str]) -> list[Job]:
    """The jobs whose names match any of ``patterns`` (fnmatch globs), with the finished jobs they wait for.

    Raises a one-line :class:`ValueError` for a pattern that matches nothing, or for a matched job that waits for
    an unfinished job no pattern matches (it could never start)."""
    from fnmatch import fnmatchcase

    by_name = {j.name: j for j in jobs}
    for pattern in patterns:
        if not any(fnmatchcase(name, pattern) for name in by_name):
            raise ValueError(f"--only: {pattern!r} matches no job of the plan (see --dry-run)")
    chosen = {name for name in by_name if any(fnmatchcase(name, p) for p in patterns)}
    wanted = set(chosen)
    stack = list(chosen)
    while stack:
        for dep in by_name[stack.pop()].after:
            if dep in wanted:
                continue
            if not by_name[dep].done():
                raise ValueError(f"--only: a selected job waits for {dep}, which is not finished; select it too")
            wanted.add(dep)
            stack.append(dep)
    return [j for j in jobs if j.name in wanted]


def run(cfg: PipelineConfig, progress: bool = True, runner: Runner | None = None,
        echo: Callable[[str], None] | None = echo_line, vision_only: bool = False,
        replace_changed: bool = False, only: Sequence[str] = ()) -> dict[str, Any]:
    """Run every unfinished job of the plan, independent ones side by side (``runner``: local subprocesses
    sized to the cores by default, or Ray); returns the transfer result.

    ``vision_only`` runs the frames and the vision modules and stops there (returns ``{}``): what a hyper-parameter
    sweep of the agents on the study's own vision (``configs/sweeps/sprites_tuning.yaml``) needs first.

    ``replace_changed`` first moves aside the output of every job whose settings changed since it ran, and of
    everything downstream of it (:func:`replace_stale`), so that a study whose vision changed reruns that module
    and the agents on it and keeps every other finished job.

    ``only`` (glob patterns over job names, e.g. ``stage2/DARLA*``) runs just the matching jobs, after what they
    wait for; a job they wait for must be finished or matched too. Returns ``{}`` unless ``transfer`` is matched.

    ``progress`` shows the stages' progress in their logs; ``echo`` gets one line per job start and end. Writes
    ``pipeline.json`` (each job's status and seconds, 0 for a job finished earlier). A failed job raises a
    one-line :class:`JobError` after the jobs that do not need it have run.
    """
    jobs = plan(cfg, progress)  # a bad plan is refused before the study's directory is written
    if replace_changed:
        # judged on the whole plan: a --vision-only run that retrains a module still retires the agents on it
        replace_stale(cfg, jobs, echo)
    if vision_only:
        jobs = [j for j in jobs if j.name == "frames" or j.name.startswith("stage1/")]
    if only:
        jobs = select_jobs(jobs, only)
    try:
        root, _ = prepare_run_dir(cfg.pipeline.dir, cfg, "pipeline", resume=True,
                                  # agents' settings may be filled in after a --vision-only run (each stage-2
                                  # run directory still refuses a changed config of its own); with
                                  # replace_changed, whatever changed has just been moved aside
                                  ignore=("",) if replace_changed else (
                                      "transfer.", "stage2.train.total_timesteps", "stage1.train.steps",
                                      "stage1.eval.", "agents."))
    except ConfigError as e:
        raise ConfigError(f"{e}, or pass --replace-changed to rerun what changed and everything downstream of it "
                          f"(the earlier runs are moved to {Path(cfg.pipeline.dir) / REPLACED_DIR})") from None
    t0 = time.perf_counter()
    results = run_jobs(jobs, runner, echo=echo, label=f"pipeline {root}")
    atomic_write_json(root / "pipeline.json", {
        "jobs": {name: r.seconds for name, r in results.items()},
        "status": {name: r.status for name, r in results.items()},
        "threads": {name: r.threads for name, r in results.items() if r.threads},
        "total_seconds": round(time.perf_counter() - t0, 1),
    })
    raise_for_failures(results)
    if vision_only or (only and not any(j.name == "transfer" for j in jobs)):
        return {}
    return json.loads((root / "transfer" / "transfer.json").read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m darla.pipeline", description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/quickstart.yaml", help="pipeline YAML (default: the quickstart)")
    p.add_argument("--no-progress", action="store_true", help="no progress lines in the jobs' logs")
    p.add_argument("--dry-run", action="store_true", help="list the jobs, what each waits for and its status; run nothing")
    p.add_argument("--collect-frames", metavar="PATH", help=argparse.SUPPRESS)  # the plan's `frames` job
    p.add_argument("--vision-only", action="store_true", help="run the frames and the vision modules only")
    p.add_argument("--only", nargs="+", metavar="PATTERN",
                   help="run only the jobs whose names match these globs (e.g. 'stage2/DARLA*'; names from "
                        "--dry-run), after the finished jobs they wait for")
    p.add_argument("--replace-changed", action="store_true",
                   help="rerun the jobs whose settings changed and everything downstream of them; their earlier "
                        "output is moved to pipeline.dir/replaced/<time>/")
    add_runner_arguments(p)
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. pipeline.seeds=[0,1]")
    a = p.parse_args(argv)
    try:
        cfg = load_config(PipelineConfig, a.config, a.overrides)
        if a.collect_frames:
            _collect(cfg.stage1, Path(a.collect_frames), progress=not a.no_progress)
            return 0
        if a.dry_run:
            jobs = plan(cfg, progress=not a.no_progress)
            for job in select_jobs(jobs, a.only) if a.only else jobs:
                waits = f"  (after {', '.join(job.after)})" if job.after else ""
                print(f"{'finished' if job.done() else 'pending':9s} {job.name}{waits}\n          {job.command()}")
            return 0
        t0 = time.perf_counter()
        result = run(cfg, progress=not a.no_progress, runner=runner_from_args(a), vision_only=a.vision_only,
                     replace_changed=a.replace_changed, only=a.only or ())
    except (ConfigError, ValueError, FileNotFoundError, MissingRayError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except JobError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the running jobs were stopped; rerun the same command to resume", file=sys.stderr)
        return 130
    root = Path(cfg.pipeline.dir)
    if a.vision_only:
        print(f"pipeline vision finished in {time.perf_counter() - t0:.0f} s; modules in {root / 'stage1'}")
        return 0
    if not result:
        print(f"pipeline: the selected jobs finished in {time.perf_counter() - t0:.0f} s; job logs in {root / LOGS_DIR}")
        return 0
    print((root / "transfer" / "transfer.md").read_text())
    print(f"pipeline finished in {time.perf_counter() - t0:.0f} s; outputs in {root}, job logs in {root / LOGS_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
