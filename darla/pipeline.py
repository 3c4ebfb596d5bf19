"""The whole study in one command: ``python -m darla.pipeline --config configs/quickstart.yaml [key=value ...]``.

Plan: (1) collect the stage-1 frames once; (2) train every vision module the variants need (e.g. a DAE, then a
β-VAE_DAE on its features, a β = 1 VAE); (3) train every variant × seed with stage 2 on the source domain;
(4) evaluate them all zero-shot with stage 3 and print the transfer table. Each job writes its own run directory
under ``pipeline.dir``; a finished job is skipped, an interrupted one resumes, so rerunning after a kill
continues where it stopped.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from darla.config import ConfigError, Stage1Config, Stage2Config, apply_overrides, load_config
from darla.runs import prepare_run_dir
from vision.runtime import atomic_write_json, progress_bar


@dataclass
class TransferSection:
    """Stage-3 settings of a pipeline."""

    episodes: int = 20
    reps: int = 2000

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"transfer.episodes: must be >= 1, got {self.episodes}")


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


@dataclass
class Job:
    """One unit of the plan: a stage run with its run directory and the function that executes it."""

    name: str
    run_dir: Path
    done: Callable[[], bool]
    execute: Callable[[], Any]


def _finished(summary: Path, key: str, target: int) -> bool:
    if not summary.exists():
        return False
    return int(json.loads(summary.read_text()).get(key, -1)) >= target


def plan(cfg: PipelineConfig, progress: bool = True) -> list[Job]:
    """The ordered jobs of a pipeline (stage 1 modules, then stage 2 variants × seeds)."""
    from darla import stage1, stage2

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
    frames_path = root / "frames.npz"
    needs_frames = cfg.stage1.data.source == "env" and bool(cfg.vision)
    if needs_frames:
        jobs.append(Job("frames", root, frames_path.exists, lambda: _collect(cfg.stage1, frames_path, progress)))
    for name, overrides in cfg.vision.items():
        resolved = [_resolve_refs(ov, module_dirs, name) for ov in overrides]
        run_dir = root / "stage1" / name
        base_overrides = [f"run.dir={run_dir}"]
        if needs_frames:  # every module trains on the same collected frames; metrics still use the env's factors
            base_overrides += ["data.source=frames", f"data.path={frames_path}"]
        s1 = apply_overrides(cfg.stage1, base_overrides + resolved)
        module_dirs[name] = run_dir
        jobs.append(Job(f"stage1/{name}", run_dir,
                        lambda d=run_dir, s=s1: _finished(d / "stage1.json", "step", s.train.steps),
                        lambda s=s1: stage1.run(s, progress=progress)))
    if cfg.pipeline.udr_sweep:
        from darla.select import best_vision_run

        module_dirs = {**module_dirs, **{m: Path(best_vision_run(cfg.pipeline.udr_sweep)) for m in used if m not in module_dirs}}
    for variant, module in cfg.pipeline.variants.items():
        for seed in cfg.pipeline.seeds:
            s2 = _stage2_config(cfg, variant, seed, str(module_dirs[module]) if module else "")
            run_dir = Path(s2.run.dir)
            jobs.append(Job(f"stage2/{variant}/seed{seed}", run_dir,
                            lambda d=run_dir, s=s2: _finished(d / "stage2.json", "num_timesteps", s.train.total_timesteps),
                            lambda s=s2: stage2.run(s, progress=progress)))
    return jobs


def _stage2_config(cfg: PipelineConfig, variant: str, seed: int, vision_run: str) -> Stage2Config:
    """The stage-2 config of one variant × seed: ``stage2``, then the variant's ``agents`` overrides, then its place."""
    ovs = list(cfg.agents.get(variant, []))
    ovs += [f"run.dir={Path(cfg.pipeline.dir) / 'stage2' / variant / f'seed{seed}'}", f"agent.variant={variant}",
            f"train.seed={seed}"]
    if vision_run:
        ovs.append(f"vision.run={vision_run}")
    return apply_overrides(cfg.stage2, ovs)


def _resolve_refs(override: str, module_dirs: dict[str, Path], current: str) -> str:
    key, _, value = override.partition("=")
    if value.startswith("@"):
        ref = value[1:]
        if ref not in module_dirs:
            raise ConfigError(f"vision.{current}: {override!r} refers to {ref!r}, which is not a module defined before it")
        return f"{key}={module_dirs[ref]}"
    return override


def _collect(s1: Stage1Config, path: Path, progress: bool) -> None:
    from darla.stage1 import collect_store

    collect_store(s1.data, progress).save(path)


def run(cfg: PipelineConfig, progress: bool = True) -> dict[str, Any]:
    """Execute the plan (skipping finished jobs), then stage 3; returns the transfer result."""
    from darla.transfer import transfer

    root, _ = prepare_run_dir(cfg.pipeline.dir, cfg, "pipeline", resume=True,
                              ignore=("transfer.", "stage2.train.total_timesteps", "stage1.train.steps", "stage1.eval."))
    jobs = plan(cfg, progress)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    bar = progress_bar(jobs, desc="pipeline", disable=not progress, position=0, leave=True)
    for job in bar:
        bar.set_postfix_str(job.name)
        if job.done():
            timings[job.name] = 0.0
            continue
        t = time.perf_counter()
        job.execute()
        timings[job.name] = round(time.perf_counter() - t, 1)
    stage2_dirs = [j.run_dir for j in jobs if j.name.startswith("stage2/")]
    result = transfer(stage2_dirs, root / "transfer", episodes=cfg.transfer.episodes, reps=cfg.transfer.reps,
                      progress=progress)
    atomic_write_json(root / "pipeline.json", {"jobs": timings, "total_seconds": round(time.perf_counter() - t0, 1)})
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m darla.pipeline", description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/quickstart.yaml", help="pipeline YAML (default: the quickstart)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. pipeline.seeds=[0,1]")
    a = p.parse_args(argv)
    try:
        cfg = load_config(PipelineConfig, a.config, a.overrides)
        t0 = time.perf_counter()
        run(cfg, progress=not a.no_progress)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    root = Path(cfg.pipeline.dir)
    print((root / "transfer" / "transfer.md").read_text())
    print(f"pipeline finished in {time.perf_counter() - t0:.0f} s; outputs in {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
