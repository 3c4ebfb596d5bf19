"""User-facing rough edges: clear one-line errors naming the config key, no run directory left by a failed start,
honest messages, quiet and bounded output."""
import importlib.util
import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from tests.test_stage2 import Kill  # simulates a kill mid-training

import envs  # noqa: F401  (registers the darla/* ids)
from agents.callbacks import TqdmProgress
from darla import stage1, stage2, transfer
from darla.config import ConfigError, Stage1Config, Stage2Config, load_config
from darla.runs import undo_failed_start
from vision.checkpoint import save_checkpoint
from vision.models import build_model
from vision.models.base import ModelConfig

ROOT = Path(__file__).resolve().parents[1]
ENV = "darla/Sprites-v0"
STAGE2_TINY = [f"env.id={ENV}", "env.n_envs=2", "train.total_timesteps=64", "train.eval_every=64",
               "train.eval_episodes=1", "train.eval_envs=1", "train.ckpt_every=64", "train.device=cpu",
               "agent.algo=ppo", "agent.hparams={n_steps: 32, batch_size: 32, n_epochs: 1}",
               "agent.policy_kwargs={net_arch: [32]}"]
STAGE1_TINY = ["data.num_images=64", "train.batch_size=8", "train.log_every=1", "train.image_every=100",
               "train.ckpt_every=100", "model.latent_dim=4", "train.num_threads=1", "eval.metrics=[]",
               "train.steps=2", "train.restarts=1"]


def one_line_error(capsys) -> str:
    """The CLI's stderr, asserted to be a single 'error: …' line (no traceback)."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# ----- 1. discrete actions -----------------------------------------------------------------------------------
@pytest.mark.parametrize("env_id,n", [("darla/Sprites-v0", 4), ("darla/Pickup-v0", 5),
                                      ("darla/ReachDiscrete-v0", 5)])
def test_discrete_envs_refuse_non_integer_actions(env_id, n):
    env = gym.make(env_id)
    env.reset(seed=0)
    for ok in (1, np.int64(1), np.int32(n - 1), np.array(1)):  # SB3 passes numpy integers
        env.step(ok)
    for bad in (2.5, 2.0, np.float32(1.0), np.array(1.5), "1", n, -1):
        with pytest.raises(ValueError, match=rf"^action: expected an integer in \[0, {n}\) for action space "
                                             rf"Discrete\({n}\), got ") as e:
            env.step(bad)
        assert str(e.value).endswith(repr(bad))  # names the offending action


# ----- 2 + 4. stage 2: errors name the key the user set; a failed start leaves no run directory ---------------
@pytest.fixture(scope="module")
def vae_run(tmp_path_factory) -> Path:
    """A stage-1-style run directory holding a small plain VAE."""
    root = tmp_path_factory.mktemp("vision") / "vae"
    torch.manual_seed(0)
    save_checkpoint(root / "checkpoint.pt", build_model(ModelConfig(family="vae", latent_dim=4, hidden=32), (3, 64, 64)),
                    step=0)
    return root


def stage2_cli(tmp_path: Path, run_dir: Path, *extra: str) -> int:
    yaml = tmp_path / "stage2.yaml"
    yaml.write_text("agent:\n  variant: BASELINE\n")
    return stage2.main(["--config", str(yaml), "--no-progress", f"run.dir={run_dir}", *STAGE2_TINY, *extra])


@pytest.mark.parametrize("bad,key", [
    (["env.id=NoSuchEnv-v9"], "env.id"),
    (["env.train_domain=tagret"], "env.train_domain"),
    (["env.eval_domains=[source,tagret]"], "env.eval_domains"),
    (["agent.variant=DARLA"], "vision.run"),
    (["env.kwargs={grid: 40}"], "env.kwargs.grid"),
])
def test_stage2_failed_start_names_the_key_and_leaves_no_run_dir(tmp_path, capsys, bad, key):
    run_dir = tmp_path / "run"
    assert stage2_cli(tmp_path, run_dir, *bad) == 2
    err = one_line_error(capsys)
    assert err.startswith(f"error: {key}: "), err
    assert "domain:" not in err.replace("_domain:", "")  # the env's own argument name is not what the user set
    assert not run_dir.exists()
    assert stage2_cli(tmp_path, run_dir) == 0  # the corrected command starts afresh
    assert "stage2 done" in capsys.readouterr().out


def test_stage2_failure_after_the_run_dir_exists_still_cleans_up(tmp_path, vae_run):
    run_dir = tmp_path / "run"
    cfg = load_config(Stage2Config, None, [f"run.dir={run_dir}", *STAGE2_TINY, "agent.variant=DARLA_DAE",
                                           f"vision.run={vae_run}"])
    with pytest.raises(ValueError, match="expects a vision module of family dae"):  # found only once loaded
        stage2.run(cfg, progress=False)
    assert not run_dir.exists()


def test_undo_failed_start_keeps_what_was_there(tmp_path):
    run_dir = tmp_path / "mine"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("the user's")
    with pytest.raises(RuntimeError), undo_failed_start(run_dir):
        (run_dir / "config.yaml").write_text("x: 1\n")
        (run_dir / "tb").mkdir()
        raise RuntimeError("start failed")
    assert sorted(p.name for p in run_dir.iterdir()) == ["notes.txt"]
    with undo_failed_start(run_dir):  # success: nothing undone
        (run_dir / "config.yaml").write_text("x: 1\n")
    assert (run_dir / "config.yaml").exists()


# ----- 3. YAML errors keep their position --------------------------------------------------------------------
@pytest.mark.parametrize("text,where", [("model: {beta: [1,\n", ":2:1: "), ("a: 1\nb:\n  - x\n c: 2\n", ":4:2: "),
                                        ("a: @x\n", ":1:4: ")])
def test_yaml_error_names_file_line_and_column(tmp_path, text, where):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(Stage1Config, bad)
    msg = str(e.value)
    assert f"{bad}{where}" in msg and "not valid YAML" in msg and "\n" not in msg


# ----- 4 + 5. stage 1: failed starts and divergence ----------------------------------------------------------
def stage1_cli(run_dir: Path, *extra: str) -> int:
    return stage1.main(["--config", str(ROOT / "configs/dsprites/beta_vae.yaml"), "--no-progress",
                        f"run.dir={run_dir}", *STAGE1_TINY, *extra])


@pytest.mark.parametrize("bad,key", [
    (["model.family=beta_vea"], "model.family"),
    (["data.source=env", "data.env_id=darla/Nope-v0"], "data.env_id"),
])
def test_stage1_failed_start_names_the_key_and_leaves_no_run_dir(tmp_path, capsys, bad, key):
    run_dir = tmp_path / "run"
    assert stage1_cli(run_dir, *bad) == 2
    assert one_line_error(capsys).startswith(f"error: {key}: ")
    assert not run_dir.exists()
    assert stage1_cli(run_dir) == 0
    assert "stage1 done" in capsys.readouterr().out


def test_stage1_divergence_is_one_honest_line(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert stage1_cli(run_dir, "train.lr=1e30") == 1
    err = one_line_error(capsys)
    assert "training diverged: loss is nan" in err and "no checkpoint was written yet" in err
    assert "last good checkpoint kept" not in err and not (run_dir / "checkpoint.pt").exists()


# ----- 6. transfer checks its run directories first ----------------------------------------------------------
def test_transfer_refuses_missing_runs_before_writing(tmp_path, capsys):
    out = tmp_path / "out"
    (tmp_path / "empty").mkdir()
    for runs, says in (([tmp_path / "nope"], "does not exist"), ([tmp_path / "empty"], "holds no trained agent")):
        assert transfer.main(["--runs", *map(str, runs), "--out", str(out)]) == 2
        assert says in one_line_error(capsys)
        assert not out.exists()


# ----- 7. stage 2 purges tensorboard on resume ---------------------------------------------------------------
def test_stage2_resume_purges_tensorboard_past_the_checkpoint(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    # Evaluations every 32 steps, a checkpoint at 64, killed past 100: the evaluation at 96 is logged but not saved.
    cfg = load_config(Stage2Config, None, [f"run.dir={run_dir}", *STAGE2_TINY, "agent.variant=BASELINE",
                                           "train.total_timesteps=160", "train.eval_every=32"])
    with pytest.raises(KeyboardInterrupt):
        stage2.run(cfg, progress=False, callbacks=[Kill(at=100)])
    assert stage2.run(cfg, progress=False)["resumed_from"] == 64
    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("eval/source/mean_reward")]
    assert steps == sorted(set(steps)) and steps[0] == 0 and steps[-1] >= 160  # no repeats, never backwards
    evaluated = [h["timesteps"] for h in json.loads((run_dir / "evaluations.json").read_text())["source"]]
    assert steps == evaluated


# ----- 8. progress bars stop at their total ------------------------------------------------------------------
def test_stage2_progress_bar_never_passes_its_total():
    model = SimpleNamespace(num_timesteps=0, get_env=lambda: None, logger=None)
    bar = TqdmProgress(total=100)
    bar.init_callback(model)
    bar.on_training_start({}, {})
    seen = []
    for t in (64, 128, 192):  # whole rollouts overshoot the total
        model.num_timesteps = t
        bar.on_step()
        seen.append(bar.bar.n)
    assert seen == [64, 100, 100]
    bar.on_training_end()


# ----- 9. no arch FutureWarning in the transfer table, and no global filter ----------------------------------
def test_transfer_aggregate_is_quiet_about_arch():
    evals = [transfer.RunEvaluation("r", "V", "ppo", s, "source", {"source": [1.0, 2.0], "target": [0.0, s * 1.0]})
             for s in range(3)]
    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        transfer.aggregate(evals, reps=20)
    assert not [w for w in got if "random_state" in str(w.message)], [str(w.message) for w in got]
    assert warnings.filters == before


# ----- 11. the env benchmark runs without Box2D --------------------------------------------------------------
def test_env_throughput_needs_box2d_only_for_carracing(monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("env_throughput", ROOT / "bench" / "env_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(bench, "has_box2d", lambda: False)
    assert bench.main(["--seconds", "0.05", "--envs", ENV]) == 0
    out = capsys.readouterr().out
    assert "skipped (Box2D is not installed)" in out and ENV in out
    assert bench.main(["--seconds", "0.05", "--envs", "darla/CarRacing-v0"]) == 2
    assert "needs Box2D" in one_line_error(capsys)
