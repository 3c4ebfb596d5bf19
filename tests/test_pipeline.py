"""Pipeline and stage 3 on tiny real runs: every output file, consistent numbers, resume without redoing work."""
import json
from pathlib import Path

import numpy as np
import pytest

from darla.config import ConfigError, load_config
from darla.jobs import Runner, run_jobs
from darla.pipeline import PipelineConfig, plan, run
from darla.report import flatten_scores, spearman_with_ci, transfer_markdown
from darla.transfer import aggregate, RunEvaluation


def _tiny(tmp_path, **extra):
    overrides = [
        f"pipeline.dir={tmp_path / 'study'}",
        "pipeline.variants={PIXEL_VAE: vae, BASELINE: ''}",
        "pipeline.seeds=[0,1]",
        "stage1.data.source=env", "stage1.data.env_id=darla/Sprites-v0", "stage1.data.num_images=128",
        "stage1.data.coverage=source+target-factors",
        "stage1.model.latent_dim=4", "stage1.train.steps=3", "stage1.train.batch_size=8", "stage1.train.device=cpu",
        "vision.vae=[model.family=vae]",
        "stage2.env.id=darla/Sprites-v0", "stage2.env.n_envs=2",
        "stage2.agent.algo=ppo", "stage2.agent.hparams={n_steps: 16, batch_size: 16, n_epochs: 1}",
        "stage2.train.total_timesteps=64", "stage2.train.eval_every=64", "stage2.train.eval_episodes=1",
        "stage2.train.eval_envs=1", "stage2.train.ckpt_every=64", "stage2.train.device=cpu",
        "transfer.episodes=2", "transfer.reps=200",
        *[f"{k}={v}" for k, v in extra.items()],
    ]
    return load_config(PipelineConfig, None, overrides)


def _numbers(root, seeds=("seed0", "seed1")):
    """What a pipeline computed, without timings: stage-1 losses and KL, every agent's last evaluation and its
    zero-shot returns (of the agents with these seeds)."""
    vae = json.loads((root / "stage1" / "vae" / "stage1.json").read_text())
    agents = [p for p in sorted((root / "stage2").glob("*/*")) if p.name in seeds]
    return {"terms": vae["terms"], "kl": vae["kl_per_latent"],
            "final": {f"{p.parent.name}/{p.name}": json.loads((p / "stage2.json").read_text())["final"] for p in agents},
            "evals": {f"{p.parent.name}/{p.name}": json.loads((p / "transfer_eval.json").read_text()) for p in agents}}


def test_pipeline_end_to_end_resume_and_parallel_equals_sequential(tmp_path):
    cfg = _tiny(tmp_path)
    jobs = plan(cfg, progress=False)
    assert [j.name for j in jobs] == ["frames", "stage1/vae", "stage2/PIXEL_VAE/seed0", "stage2/PIXEL_VAE/seed1",
                                      "stage2/BASELINE/seed0", "stage2/BASELINE/seed1", "transfer"]
    after = {j.name: j.after for j in jobs}
    assert after["stage1/vae"] == ("frames",) and after["stage2/PIXEL_VAE/seed1"] == ("stage1/vae",)
    assert after["stage2/BASELINE/seed0"] == ()  # pixel agents need no vision: they run beside stage 1
    assert set(after["transfer"]) == {j.name for j in jobs if j.name.startswith("stage2/")}
    # "Kill" after stage 1: run only the first jobs, then the whole pipeline, two jobs at a time.
    two = Runner(num_cpus=2)
    assert all(r.status == "done" for r in run_jobs(jobs[:2], two, echo=None).values())
    stage1_summary = (tmp_path / "study" / "stage1" / "vae" / "stage1.json").read_text()
    ckpt_mtime = (tmp_path / "study" / "stage1" / "vae" / "checkpoint.pt").stat().st_mtime_ns
    lines = []
    result = run(cfg, progress=False, runner=two, echo=lines.append)
    saved = json.loads((tmp_path / "study" / "pipeline.json").read_text())
    assert saved["status"]["frames"] == saved["status"]["stage1/vae"] == "skipped"  # not redone
    assert saved["jobs"]["frames"] == 0.0 and set(saved["threads"].values()) == {1}
    assert (tmp_path / "study" / "stage1" / "vae" / "checkpoint.pt").stat().st_mtime_ns == ckpt_mtime
    assert (tmp_path / "study" / "stage1" / "vae" / "stage1.json").read_text() == stage1_summary
    assert sum(ln.startswith("start ") for ln in lines) == sum(ln.startswith("done ") for ln in lines) == 5
    assert (tmp_path / "study" / "logs" / "stage2" / "BASELINE" / "seed1.log").is_file()
    out = tmp_path / "study" / "transfer"
    for name in ("transfer.json", "transfer.md", "transfer.png"):
        assert (out / name).is_file()
    assert any((out / "tb").iterdir())
    assert set(result["variants"]) == {"PIXEL_VAE", "BASELINE"}
    for row in result["variants"].values():
        assert row["seeds"] == [0, 1]
        assert row["source_domain"] == "source" and row["target_domains"]
        for s in row["domains"].values():
            lo, hi = s["iqm_ci"]
            assert lo - 1e-9 <= s["iqm"] <= hi + 1e-9
            assert np.isclose(s["mean"], np.mean(s["per_seed"]))
    md = (out / "transfer.md").read_text()
    assert "PIXEL_VAE" in md and "BASELINE" in md
    # A second run does no training at all (only the table is rebuilt, from cached evaluations).
    run(cfg, progress=False, runner=two, echo=None)
    status = json.loads((tmp_path / "study" / "pipeline.json").read_text())["status"]
    assert {k: v for k, v in status.items() if k != "transfer"} == {j.name: "skipped" for j in jobs[:-1]}
    # One job at a time, at the same thread count (seed 0 only, to keep the test short): the same numbers, bit for bit.
    seq = _tiny(tmp_path, **{"pipeline.dir": tmp_path / "sequential", "pipeline.seeds": "[0]"})
    run(seq, progress=False, runner=Runner(num_cpus=2, max_parallel=1, threads=1), echo=None)
    assert _numbers(tmp_path / "sequential", ("seed0",)) == _numbers(tmp_path / "study", ("seed0",))


def test_pipeline_cli_failure_names_the_job_and_keeps_going(tmp_path, capsys):
    from darla.pipeline import main

    # BASELINE's PPO batch is refused when its agent is built, inside the stage-2 job; PIXEL_VAE's chain still runs.
    cfg = _tiny(tmp_path, **{"pipeline.seeds": "[0]", "agents": "{BASELINE: [agent.hparams.batch_size=0]}"})
    jobs = {j.name: j for j in plan(cfg, progress=False)}
    code = main(["--no-progress", "--num-cpus", "2", "--config", str(_write_config(tmp_path, cfg))])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert err[0].startswith("error: job stage2/BASELINE/seed0 failed: ") and "(1 more did not finish)" in err[0]
    status = json.loads((tmp_path / "study" / "pipeline.json").read_text())["status"]
    assert status == {"frames": "done", "stage1/vae": "done", "stage2/PIXEL_VAE/seed0": "done",
                      "stage2/BASELINE/seed0": "failed", "transfer": "blocked"}
    assert not (tmp_path / "study" / "stage2" / "BASELINE" / "seed0").exists()  # nothing blocks the corrected command
    assert jobs["stage2/BASELINE/seed0"].log.is_file()


def _write_config(tmp_path, cfg):
    from darla.config import to_yaml

    path = tmp_path / "pipeline.yaml"
    path.write_text(to_yaml(cfg))
    return path


def test_pipeline_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="pipeline.variants"):
        plan(_tiny(tmp_path, **{"pipeline.variants": "{DARLA: nosuchmodule}"}), progress=False)
    with pytest.raises(ConfigError, match="pipeline.variants"):
        run(_tiny(tmp_path, **{"pipeline.variants": "{DARLA: nosuchmodule}"}), progress=False, echo=None)
    assert not (tmp_path / "study").exists()  # nothing on disk to refuse the corrected command
    with pytest.raises(ConfigError, match="vision.bvd"):
        plan(_tiny(tmp_path, **{"vision.bvd": "[model.family=beta_vae_dae,model.dae_checkpoint=@dae]",
                                "pipeline.variants": "{DARLA: bvd}"}), progress=False)
    with pytest.raises(ConfigError, match="transfer.episodes"):
        _tiny(tmp_path, **{"transfer.episodes": 0})
    with pytest.raises(ConfigError, match="agents.DARLA: not a variant"):
        plan(_tiny(tmp_path, **{"agents": "{DARLA: [agent.hparams.n_epochs=2]}"}), progress=False)


def test_pipeline_per_variant_agent_overrides(tmp_path):
    from darla.pipeline import _stage2_config

    cfg = _tiny(tmp_path, **{"agents": "{BASELINE: [agent.hparams.n_epochs=3, train.total_timesteps=32]}"})
    base, pixel = _stage2_config(cfg, "PIXEL_VAE", 0, "/x/vae"), _stage2_config(cfg, "BASELINE", 1, "")
    assert base.agent.hparams["n_epochs"] == 1 and base.train.total_timesteps == 64 and base.vision.run == "/x/vae"
    assert pixel.agent.hparams == {"n_steps": 16, "batch_size": 16, "n_epochs": 3}
    assert pixel.train.total_timesteps == 32 and pixel.train.seed == 1 and pixel.agent.variant == "BASELINE"


def _eval(variant, seed, src, tgt):
    return RunEvaluation(f"r/{variant}/{seed}", variant, "ppo", seed, "source", {"source": [src, src], "target": [tgt, tgt]})


def test_aggregate_known_values():
    evals = [_eval("A", s, 10.0, 5.0 + s) for s in range(4)] + [_eval("B", s, 10.0, 1.0) for s in range(4)]
    res = aggregate(evals, reps=300)
    a, b = res["variants"]["A"], res["variants"]["B"]
    assert a["domains"]["source"]["iqm"] == pytest.approx(10.0)
    assert a["domains"]["target"]["per_seed"] == [5.0, 6.0, 7.0, 8.0]
    assert a["domains"]["target"]["iqm"] == pytest.approx(6.5)  # middle half of 5..8
    assert a["transfer_ratio"]["value"] == pytest.approx(0.65)
    assert a["generalisation_gap"]["value"] == pytest.approx(3.5)
    assert b["transfer_ratio"]["value"] == pytest.approx(0.1)
    assert res["probability_of_improvement"]["A > B"]["value"] == pytest.approx(1.0)
    assert res["probability_of_improvement"]["B > A"]["value"] == pytest.approx(0.0)
    assert "| A |" in transfer_markdown(res)


def test_aggregate_reports_each_target_apart():
    # A wins on the held-out target and loses on the extrapolation one: pooled, the two cancel to 0.5.
    def ev(variant, seed, held_out, light):
        return RunEvaluation(f"r/{variant}/{seed}", variant, "ppo", seed, "source",
                             {"source": [9.0], "target": [held_out], "target_light": [light]})

    evals = [ev("A", s, 8.0 + s, 1.0) for s in range(3)] + [ev("B", s, 2.0, 5.0 + s) for s in range(3)]
    res = aggregate(evals, reps=200)
    assert res["probability_of_improvement"]["A > B"]["value"] == pytest.approx(0.5)
    by = res["probability_of_improvement_by_target"]
    assert by["target"]["A > B"]["value"] == pytest.approx(1.0)
    assert by["target_light"]["A > B"]["value"] == pytest.approx(0.0)
    assert by["target_light"]["B > A"]["value"] == pytest.approx(1.0)
    md = transfer_markdown(res)
    assert "| P(X > Y) | all targets [95% CI] | target [95% CI] | target_light [95% CI] |" in md
    assert "| A > B | 0.50" in md
    # One target: nothing to split, and the table keeps its single column.
    one = aggregate([_eval("A", s, 10.0, 5.0) for s in range(2)] + [_eval("B", s, 10.0, 1.0) for s in range(2)], reps=50)
    assert one["probability_of_improvement_by_target"] == {}
    assert "| P(X > Y) | all targets [95% CI] |\n" in transfer_markdown(one)


def test_spearman_and_score_flattening():
    c = spearman_with_ci([1, 2, 3, 4, 5], [2, 4, 6, 8, 11], reps=200)
    assert c["rho"] == pytest.approx(1.0) and c["n"] == 5
    assert spearman_with_ci([1, 2, 3, 4], [4, 3, 2, 1], reps=200)["rho"] == pytest.approx(-1.0)
    flat = flatten_scores({"mig": {"metric": "mig", "variant": "hist20", "params": {"bins": 20}, "scores": {"mig": 0.4}},
                           "dci": {"scores": {"disentanglement": 0.5, "completeness": 0.6},
                                   "details": {"num_active_dims": 3}}})
    assert flat == {"mig.mig": 0.4, "dci.disentanglement": 0.5, "dci.completeness": 0.6}


def test_pipeline_vision_only_stops_after_the_modules(tmp_path, capsys):
    from darla.pipeline import main

    cfg = _tiny(tmp_path, **{"pipeline.seeds": "[0]"})
    code = main(["--no-progress", "--vision-only", "--num-cpus", "1", "--config", str(_write_config(tmp_path, cfg))])
    root = tmp_path / "study"
    assert code == 0 and "pipeline vision finished" in capsys.readouterr().out
    assert (root / "frames.npz").is_file() and (root / "stage1" / "vae" / "stage1.json").is_file()
    assert not (root / "stage2").exists() and not (root / "transfer").exists()
    assert set(json.loads((root / "pipeline.json").read_text())["status"]) == {"frames", "stage1/vae"}


def test_correlation_joins_each_modules_udr(tmp_path, monkeypatch):
    import darla.report as report
    import darla.transfer as transfer

    # three vision modules, one agent each: target return rises with the metric and falls with UDR
    modules = [tmp_path / f"vision{i}" for i in range(3)]
    agents = [tmp_path / f"agent{i}" for i in range(3)]
    for i, m in enumerate(modules):
        m.mkdir()
        (m / "metrics.json").write_text(json.dumps({"mig": {"scores": {"mig": 0.1 * (i + 1)}}}))
        agents[i].mkdir()
    vision_of = {str(a): str(m) for a, m in zip(agents, modules)}
    monkeypatch.setattr(report, "_vision_run_of", lambda run: vision_of[str(run)])
    monkeypatch.setattr(transfer, "evaluate_run", lambda run, episodes, seed: RunEvaluation(
        str(run), "DARLA", "ppo", 0, "source", {"source": [9.0], "target": [float(str(run)[-1])]}))
    selection = tmp_path / "selection.json"
    selection.write_text(json.dumps({"models": [{"run_dir": str(m), "udr": 1.0 - 0.1 * i} for i, m in enumerate(modules)]}))
    res = report.correlation([str(a) for a in agents], tmp_path / "out", udr=selection)
    assert res["correlations"]["mig.mig"]["rho"] == pytest.approx(1.0)
    assert res["correlations"]["udr"]["rho"] == pytest.approx(-1.0)
    assert res["correlations"]["udr"]["scores"] == pytest.approx([1.0, 0.9, 0.8])
    # modules from two sweeps: one selection each, joined by run directory
    other = tmp_path / "selection_other.json"
    selection.write_text(json.dumps({"models": [{"run_dir": str(modules[0]), "udr": 1.0}]}))
    other.write_text(json.dumps({"models": [{"run_dir": str(m), "udr": 1.0 - 0.1 * i} for i, m in enumerate(modules) if i]}))
    res = report.correlation([str(a) for a in agents], tmp_path / "out", udr=[selection, other])
    assert res["correlations"]["udr"]["scores"] == pytest.approx([1.0, 0.9, 0.8])
    with pytest.raises(ValueError, match=r"--udr: .* has no UDR for vision run .*vision1"):
        report.correlation([str(a) for a in agents], tmp_path / "out", udr=selection)


def test_replace_changed_reruns_a_changed_module_and_only_what_depends_on_it(tmp_path, capsys):
    from darla.config import to_yaml
    from darla.pipeline import main, stale_jobs

    cfg = _tiny(tmp_path, **{"pipeline.seeds": "[0]"})
    root = tmp_path / "study"
    args = ["--no-progress", "--vision-only", "--num-cpus", "1"]
    assert main([*args, "--config", str(_write_config(tmp_path, cfg))]) == 0
    # agents as a finished study would hold them: each run directory saved with its job's config
    for job in plan(cfg, progress=False):
        if job.name.startswith("stage2/"):
            Path(job.config.run.dir).mkdir(parents=True)
            (Path(job.config.run.dir) / "config.yaml").write_text(to_yaml(job.config))
    assert stale_jobs(cfg, plan(cfg, progress=False)) == []
    first_vae = (root / "stage1" / "vae" / "stage1.json").read_text()

    changed = _tiny(tmp_path, **{"pipeline.seeds": "[0]", "vision.vae": "[model.family=vae,model.beta=2.0]"})
    assert [j.name for j in stale_jobs(changed, plan(changed, progress=False))] == ["stage1/vae", "stage2/PIXEL_VAE/seed0"]
    path = _write_config(tmp_path, changed)
    capsys.readouterr()
    assert main([*args, "--config", str(path)]) == 2  # refused without the flag, and told how to go on
    assert "--replace-changed" in capsys.readouterr().err
    assert main([*args, "--replace-changed", "--config", str(path)]) == 0
    replaced = list((root / "replaced").iterdir())
    assert len(replaced) == 1
    assert (replaced[0] / "stage1" / "vae" / "stage1.json").read_text() == first_vae  # the earlier module, kept
    assert (replaced[0] / "stage2" / "PIXEL_VAE" / "seed0" / "config.yaml").is_file()  # the agent on it, retired
    assert (root / "stage2" / "BASELINE" / "seed0" / "config.yaml").is_file()  # a pixel agent does not depend on it
    assert (root / "frames.npz").is_file() and not (replaced[0] / "frames.npz").exists()  # same data section
    from omegaconf import OmegaConf

    assert OmegaConf.load(root / "stage1" / "vae" / "config.yaml").model.beta == 2.0  # retrained with the new β
    assert stale_jobs(changed, plan(changed, progress=False)) == []
    other_data = _tiny(tmp_path, **{"pipeline.seeds": "[0]", "vision.vae": "[model.family=vae,model.beta=2.0]",
                                    "stage1.data.num_images": 96})
    # other frames: every module made from them (and the agents on those, none left here)
    assert [j.name for j in stale_jobs(other_data, plan(other_data, progress=False))] == ["frames", "stage1/vae"]


def test_pipeline_only_runs_the_matching_jobs(tmp_path, capsys):
    from darla.pipeline import main, select_jobs

    cfg = _tiny(tmp_path, **{"pipeline.seeds": "[0]"})
    path = str(_write_config(tmp_path, cfg))
    jobs = plan(cfg, progress=False)
    with pytest.raises(ValueError, match=r"--only: a selected job waits for stage1/vae, which is not finished"):
        select_jobs(jobs, ["stage2/PIXEL_VAE/*"])
    with pytest.raises(ValueError, match=r"--only: 'stage2/DARLA\*' matches no job"):
        select_jobs(jobs, ["stage2/DARLA*"])
    assert main(["--no-progress", "--num-cpus", "1", "--config", path, "--only", "stage2/BASELINE/*"]) == 0
    root = tmp_path / "study"
    assert "the selected jobs finished" in capsys.readouterr().out
    assert (root / "stage2" / "BASELINE" / "seed0" / "stage2.json").is_file()
    assert not (root / "stage1").exists() and not (root / "transfer").exists()
    assert set(json.loads((root / "pipeline.json").read_text())["status"]) == {"stage2/BASELINE/seed0"}
    # the frames and the module next; then the agent on it alone, taking the finished jobs it waits for as they are
    assert main(["--no-progress", "--num-cpus", "1", "--config", path, "--only", "frames", "stage1/*"]) == 0
    assert [j.name for j in select_jobs(plan(cfg, progress=False), ["stage2/PIXEL_VAE/*"])] == [
        "frames", "stage1/vae", "stage2/PIXEL_VAE/seed0"]
    assert main(["--no-progress", "--num-cpus", "1", "--config", path, "--only", "stage2/PIXEL_VAE/*"]) == 0
    assert (root / "stage2" / "PIXEL_VAE" / "seed0" / "stage2.json").is_file()
