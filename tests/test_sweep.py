"""Sweeps: trial expansion, references to other sweeps, finished-trial detection, summaries, and a 2×2 sweep on the
local job runner (a rerun does no work)."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from darla import stage1
from darla.config import ConfigError
from darla.jobs import Runner
from darla.sweep import (STAGES, SUMMARY_JSON, SUMMARY_MD, SWEEP_PLAN, SweepConfig, Trial, expand, finished_summary,
                         load_sweep, main, run_sweep, summarize, summary_markdown, trial_config)

ROOT = Path(__file__).resolve().parents[1]
# Stage-1 runs of a few seconds: 256 dSprites images, 3 steps, 3 latents.
TINY = ["data.num_images=256", "train.steps=3", "train.batch_size=8", "model.latent_dim=3", "eval.metrics=[]",
        "train.log_every=1", "train.image_every=100", "train.ckpt_every=100", "train.restarts=1"]


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # sweep configs name their base config relative to the repository root


def _spec(tmp_path: Path, **kw: object) -> SweepConfig:
    fields = {"stage": "stage1", "base": "configs/dsprites/beta_vae.yaml", "overrides": list(TINY),
              "grid": {"model.beta": [1, 4], "train.seed": [0, 1]}, "dir": str(tmp_path / "sweep"), **kw}
    return SweepConfig(**fields)  # type: ignore[arg-type]


def test_expand_names_values_and_run_dirs(tmp_path: Path) -> None:
    trials = expand(_spec(tmp_path))
    assert [t.name for t in trials] == ["model.beta=1,train.seed=0", "model.beta=1,train.seed=1",
                                        "model.beta=4,train.seed=0", "model.beta=4,train.seed=1"]
    t = trials[2]
    assert t.params == {"model.beta": 4, "train.seed": 0}
    assert t.run_dir == (tmp_path / "sweep" / "trials" / t.name).resolve()
    cfg = trial_config(_spec(tmp_path), t)
    assert (cfg.model.beta, cfg.train.seed, cfg.train.steps, cfg.run.dir) == (4.0, 0, 3, str(t.run_dir))
    assert "--config configs/dsprites/beta_vae.yaml" in t.command("stage1", "configs/dsprites/beta_vae.yaml")


def test_random_axes_are_seeded_and_stable_under_grid_growth(tmp_path: Path) -> None:
    rand = {"train.lr": {"loguniform": [1e-4, 1e-3]}, "model.latent_dim": {"randint": [2, 5]},
            "model.likelihood": {"choice": ["bernoulli", "gaussian"]}}
    small = expand(_spec(tmp_path, grid={"model.beta": [1]}, random=rand, num_samples=3))
    again = expand(_spec(tmp_path, grid={"model.beta": [1]}, random=rand, num_samples=3))
    grown = expand(_spec(tmp_path, grid={"model.beta": [1, 2]}, random=rand, num_samples=3))
    assert [t.params for t in small] == [t.params for t in again]
    assert [t.name for t in small] == ["model.beta=1,sample=0", "model.beta=1,sample=1", "model.beta=1,sample=2"]
    assert {t.name: t.params for t in small}.items() <= {t.name: t.params for t in grown}.items()
    lrs = [t.params["train.lr"] for t in small]
    assert len(set(lrs)) == 3 and all(1e-4 <= lr <= 1e-3 for lr in lrs)
    assert all(2 <= t.params["model.latent_dim"] < 5 for t in grown)
    other_seed = expand(_spec(tmp_path, grid={"model.beta": [1]}, random=rand, num_samples=3, seed=1))
    assert [t.params["train.lr"] for t in other_seed] != lrs


def test_variants_bundle_linked_overrides(tmp_path: Path) -> None:
    spec = _spec(tmp_path, grid={"train.seed": [0, 1]},
                 variants={"wide": {"model.latent_dim": 8, "model.beta": 2}, "narrow": {"model.latent_dim": 2}})
    trials = expand(spec)
    assert [t.name for t in trials] == ["wide,train.seed=0", "wide,train.seed=1", "narrow,train.seed=0", "narrow,train.seed=1"]
    cfg = trial_config(spec, trials[1])
    assert (cfg.model.latent_dim, cfg.model.beta, cfg.train.seed) == (8, 2.0, 1)
    assert trials[2].params == {"variant": "narrow", "model.latent_dim": 2, "train.seed": 0}


def test_trials_axis_expands_another_sweeps_run_dirs(tmp_path: Path) -> None:
    src = tmp_path / "vision"
    runs = [src / "trials" / n for n in ("model.beta=1,train.seed=0", "model.beta=4,train.seed=0")]
    for r in runs:
        r.mkdir(parents=True)
        (r / "stage1.json").write_text("{}")
    (src / SWEEP_PLAN).write_text(json.dumps({"stage": "stage1", "trials": [
        {"name": r.name, "run_dir": str(r), "params": {}} for r in runs]}))
    spec = SweepConfig(stage="stage2", grid={"vision.run": {"trials_of": str(src)}, "train.seed": [0]},
                       dir=str(tmp_path / "agents"))
    trials = expand(spec)
    assert [t.params["vision.run"] for t in trials] == [str(r) for r in runs]
    assert trials[0].name == "vision.run=model.beta=1_train.seed=0,train.seed=0"
    assert trial_config(spec, trials[1]).vision.run == str(runs[1])
    (runs[1] / "stage1.json").unlink()
    with pytest.raises(ConfigError, match="grid.vision.run: 1 trials of .* are not finished"):
        expand(spec)


def test_udr_best_reference_is_resolved_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import darla.select

    calls = []
    monkeypatch.setattr(darla.select, "best_vision_run", lambda d: calls.append(d) or Path("/runs/best"))
    best = {"udr_best_of": "runs/sweeps/x"}
    spec = SweepConfig(stage="stage2", grid={"train.seed": [0, 1, 2]}, dir=str(tmp_path / "agents"),
                       variants={"DARLA": {"agent.variant": "DARLA", "vision.run": best},
                                 "DARLA_FT": {"agent.variant": "DARLA_FT", "vision.run": best}})
    trials = expand(spec)
    assert calls == ["runs/sweeps/x"]
    assert all(trial_config(spec, t).vision.run == "/runs/best" for t in trials)
    assert trials[0].params["vision.run"] == best  # the plan records the reference, the trial its run
    grid = expand(SweepConfig(stage="stage2", grid={"vision.run": [best]}, dir=str(tmp_path / "g")))
    assert grid[0].name == "vision.run=udr-best_runs_sweeps_x"  # the name such trials have always had


@pytest.mark.parametrize("fields, match", [
    ({"stage": "stage9"}, "stage: unknown 'stage9'"),
    ({"grid": {"run.dir": ["x"]}}, "grid.run.dir: run.\\* is set by the sweep"),
    ({"grid": {"model.beta": []}}, "grid.model.beta: needs at least one value"),
    ({"random": {"train.lr": {"normal": [0, 1]}}}, "random.train.lr: expected one of"),
    ({"random": {"train.lr": {"loguniform": [0, 1]}}}, "random.train.lr.loguniform: low must be > 0"),
    ({"random": {"train.lr": {"uniform": [2, 1]}}}, "random.train.lr.uniform: expected \\[low, high\\]"),
    ({"random": {"model.beta": {"uniform": [1, 2]}}}, "random.model.beta: also a grid axis"),
    ({"num_samples": 3}, "num_samples: > 1 repeats identical trials"),
    ({"resources": {"cpu": 0}}, "resources.cpu: must be > 0"),
    ({"grid": {"vision.run": ["trials:runs/x"]}}, "grid.vision.run: 'trials:runs/x' is the old string form; write "
                                                   "\\{trials_of: DIR\\} as the whole axis"),
    ({"overrides": ["vision.run=udr-best:runs/x"]}, "overrides: 'udr-best:runs/x' is the old string form; write "
                                                     "\\{udr_best_of: DIR\\} \\(in grid or variants\\)"),
    ({"variants": {"a": {"vision.run": {"trials_of": "runs/x"}}}}, "variants.a.vision.run: \\{trials_of: DIR\\} is a whole grid axis"),
    ({"grid": {"vision.run": {"udr_best_of": "runs/x"}}}, "grid.vision.run: expected a list of values or"),
    ({"grid": {"vision.run": {"trials_of": ""}}}, "grid.vision.run.trials_of: expected a sweep directory"),
])
def test_bad_sweep_configs_name_the_key(tmp_path: Path, fields: dict, match: str) -> None:
    path = tmp_path / "bad.yaml"
    base = {"grid": {"model.beta": [1, 4]}, "dir": str(tmp_path / "s")}
    base.update(fields)
    path.write_text(json.dumps(base))
    with pytest.raises(ConfigError, match=match):
        load_sweep(path)


def test_unknown_stage_key_names_the_trial(tmp_path: Path) -> None:
    spec = _spec(tmp_path, grid={"model.nope": [1]})
    with pytest.raises(ConfigError, match="trial model.nope=1: .*nope"):
        trial_config(spec, expand(spec)[0])


def test_shipped_sweep_configs_validate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import darla.select

    # References to other sweeps' results: a stand-in best run and a stand-in finished sweep.
    monkeypatch.setattr(darla.select, "best_vision_run", lambda d: tmp_path / "best")
    src = tmp_path / "vision"
    (src / "trials" / "a").mkdir(parents=True)
    (src / "trials" / "a" / "stage1.json").write_text("{}")
    (src / SWEEP_PLAN).write_text(json.dumps({"stage": "stage1", "trials": [
        {"name": "a", "run_dir": str(src / "trials" / "a"), "params": {}}]}))
    paths = sorted((ROOT / "configs" / "sweeps").glob("*.yaml"))
    assert {"local", "dsprites_beta", "pickup_vision", "pickup_agents", "pickup_correlation"} <= {p.stem for p in paths}
    for path in paths:
        copy = tmp_path / path.name
        copy.write_text(re.sub(r"trials_of: [^}\s]+", f"trials_of: {src}", path.read_text()))
        spec = load_sweep(copy, [f"dir={tmp_path / path.stem}"])
        for t in expand(spec):
            trial_config(spec, t)  # every key of every trial exists in the stage's schema


def test_finished_summary_needs_the_same_config_and_full_length(tmp_path: Path) -> None:
    spec = _spec(tmp_path, grid={"train.seed": [0]})
    trial = expand(spec)[0]
    cfg = trial_config(spec, trial)
    assert finished_summary(STAGES["stage1"], cfg, trial.run_dir) is None
    stage1.run(cfg, progress=False)
    assert finished_summary(STAGES["stage1"], cfg, trial.run_dir)["step"] == 3
    longer = trial_config(spec, Trial(trial.name, trial.params, [*trial.overrides, "train.steps=5"], trial.run_dir))
    assert finished_summary(STAGES["stage1"], longer, trial.run_dir) is None
    other = trial_config(spec, Trial(trial.name, trial.params, [*trial.overrides, "model.beta=2"], trial.run_dir))
    assert finished_summary(STAGES["stage1"], other, trial.run_dir) is None


def test_stage2_trials_are_done_at_their_timestep_budget(tmp_path: Path) -> None:
    stage = STAGES["stage2"]
    spec = SweepConfig(stage="stage2", overrides=["train.total_timesteps=1000"], grid={"train.seed": [0]},
                       dir=str(tmp_path / "agents"))
    cfg = trial_config(spec, expand(spec)[0])
    summary = {"num_timesteps": 1024, "train_seconds": 3.5,
               "final": {"source": {"timesteps": 1024, "mean_reward": 2.5, "std_reward": 1.0},
                         "target": {"timesteps": 1024, "mean_reward": 0.5, "std_reward": 1.0}}}
    assert stage.is_done(cfg, summary) and not stage.is_done(cfg, {**summary, "num_timesteps": 512})
    assert stage.row(summary, tmp_path) == {"timesteps": 1024, "train_seconds": 3.5, "reward/source": 2.5,
                                            "reward/target": 0.5}


def test_summary_reports_errors_and_incomplete_trials(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    trials = expand(spec)
    summary = summarize(spec, trials, STAGES["stage1"], errors={trials[0].name: "ValueError: boom"})
    assert summary["counts"] == {"done": 0, "skipped": 0, "error": 1, "incomplete": 3}
    md = summary_markdown(summary)
    assert "| model.beta=1,train.seed=0 | error | 1 | 0 |" in md and "ValueError: boom" in md


def test_two_by_two_sweep_on_the_job_runner_then_rerun_does_no_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_sweep(ROOT / "configs/sweeps/local.yaml", [f"dir={tmp_path / 'local'}", "max_concurrent=2"])
    trials = expand(spec, TINY)
    # One trial finished before the sweep started (an interrupted earlier invocation): the runner runs the other three.
    stage1.run(trial_config(spec, trials[0]), progress=False)
    lines: list[str] = []
    summary = run_sweep(spec, Runner(max_parallel=2, num_cpus=2), extra_overrides=TINY, echo=lines.append)
    assert summary["counts"] == {"done": 3, "skipped": 1, "error": 0, "incomplete": 0}
    assert sum(ln.startswith("start ") for ln in lines) == 3
    root = Path(summary["dir"])
    saved = json.loads((root / SUMMARY_JSON).read_text())
    assert [r["trial"] for r in saved["trials"]] == [t.name for t in trials]
    assert all(r["result"]["step"] == 3 for r in saved["trials"])
    assert (root / SUMMARY_MD).read_text().count("| model.beta=") == 4
    assert all(list((t.run_dir / "tb").glob("events.out.tfevents.*")) for t in trials)
    assert all((root / "logs" / f"{t.name}.log").is_file() for t in trials[1:])
    stamps = {t.name: (t.run_dir / "checkpoint.pt").stat().st_mtime_ns for t in trials}

    # Rerun: everything is finished, so no executor (local or Ray) starts and no checkpoint is touched.
    import darla.jobs

    monkeypatch.setattr(darla.jobs, "_Local", lambda *a, **k: pytest.fail("a finished sweep started jobs"))
    monkeypatch.setattr(darla.jobs, "_Ray", lambda *a, **k: pytest.fail("a finished sweep started Ray"))
    assert main(["--config", "configs/sweeps/local.yaml", f"dir={tmp_path / 'local'}", "--quiet", "--address", "auto",
                 *(f"--set={o}" for o in TINY)]) == 0
    assert json.loads((root / SUMMARY_JSON).read_text())["counts"]["skipped"] == 4
    assert stamps == {t.name: (t.run_dir / "checkpoint.pt").stat().st_mtime_ns for t in trials}


def test_a_failing_trial_is_reported_and_the_others_finish(tmp_path: Path) -> None:
    # A missing frame store is found when the trial starts, inside its own process.
    spec = _spec(tmp_path, grid={"train.seed": [0]}, variants={
        "ok": {"train.lr": 0.001}, "bad": {"data.source": "frames", "data.path": str(tmp_path / "none.npz")}})
    summary = run_sweep(spec, Runner(num_cpus=2), echo=None)
    rows = {r["trial"]: r for r in summary["trials"]}
    assert rows["ok,train.seed=0"]["status"] == "done" and rows["bad,train.seed=0"]["status"] == "error"
    assert rows["bad,train.seed=0"]["error"].startswith("error: ") and "none.npz" in rows["bad,train.seed=0"]["error"]
    assert main(["--config", str(_write_spec(tmp_path, spec)), "--quiet", "--num-cpus", "2"]) == 1


def _write_spec(tmp_path: Path, spec: SweepConfig) -> Path:
    import dataclasses

    path = tmp_path / "sweep.yaml"
    path.write_text(json.dumps(dataclasses.asdict(spec)))
    return path
