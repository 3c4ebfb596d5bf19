"""``python -m darla.stage1`` end to end: bit-identical results across processes, metric curves, mixed precision."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from darla.stage1 import main
from vision.checkpoint import read_checkpoint
from vision.runtime import autocast_dtype

ROOT = Path(__file__).resolve().parents[1]
TINY = ["data.num_images=256", "train.batch_size=16", "train.log_every=2", "train.image_every=100",
        "train.ckpt_every=100", "model.latent_dim=4", "train.num_threads=1", "eval.metrics=[]", "train.restarts=1"]


def _cli(run_dir: Path, *extra: str) -> None:
    """One stage-1 run in its own Python process (fresh interpreter, fresh RNG state)."""
    cmd = [sys.executable, "-m", "darla.stage1", "--config", "configs/dsprites/beta_vae.yaml",
           f"run.dir={run_dir}", "train.steps=6", *TINY, "eval.metrics=[mig]", "eval.num_points=300",
           "train.restarts=2", "train.restart_steps=3", *extra]  # the shipped recipe's restarts, in miniature
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)


def test_same_config_and_seed_is_bit_identical_across_processes(tmp_path):
    _cli(tmp_path / "a")
    _cli(tmp_path / "b")
    a, b = read_checkpoint(tmp_path / "a"), read_checkpoint(tmp_path / "b")
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    sa, sb = (json.loads((tmp_path / r / "stage1.json").read_text()) for r in ("a", "b"))
    assert sa["terms"] == sb["terms"] and sa["kl_per_latent"] == sb["kl_per_latent"]
    ma, mb = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("a", "b"))
    assert ma["mig"]["scores"] == mb["mig"]["scores"]
    # A different seed is a different run.
    _cli(tmp_path / "c", "train.seed=1")
    c = read_checkpoint(tmp_path / "c")
    assert not torch.equal(a["state_dict"]["encoder.head.weight"], c["state_dict"]["encoder.head.weight"])


def test_metric_curve_during_training_and_on_resume(tmp_path):
    run = tmp_path / "run"
    args = ["--no-progress", "--config", "configs/dsprites/beta_vae.yaml", f"run.dir={run}", *TINY,
            "eval.metrics=[mig,beta_vae]", "eval.num_points=300", "eval.every=2"]
    assert main([*args, "train.steps=4"]) == 0
    curve = json.loads((run / "metrics_curve.json").read_text())
    assert [r["step"] for r in curve] == [2, 4]
    assert set(curve[0]) == {"step", "train_seconds", "mig", "beta_vae"}
    assert 0 < curve[0]["train_seconds"] <= curve[1]["train_seconds"]
    assert main([*args, "train.steps=6"]) == 0  # resumed: the curve continues, training time accumulates
    curve2 = json.loads((run / "metrics_curve.json").read_text())
    assert [r["step"] for r in curve2] == [2, 4, 6] and curve2[:2] == curve
    assert curve2[2]["train_seconds"] >= curve[1]["train_seconds"]


def test_eval_every_needs_metrics(tmp_path, capsys):
    rc = main(["--config", "configs/dsprites/beta_vae.yaml", f"run.dir={tmp_path / 'r'}", "eval.every=10", "eval.metrics=[]"])
    assert rc != 0
    assert "eval.every" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(autocast_dtype(torch.device("cpu")) is None, reason="this CPU has no native bf16")
def test_cpu_autocast_trains_in_bf16_with_float32_losses(tmp_path):
    from vision.data.dsprites import DSprites
    from vision.data.frames import FrameStore
    from vision.data.ground_truth import sample_observations
    from vision.models import ModelConfig, build_model

    ds = DSprites()
    frames, factors = sample_observations(ds, 32, __import__("numpy").random.default_rng(0))
    model = build_model(ModelConfig(latent_dim=4), (1, 64, 64), 32)
    x = torch.from_numpy(frames).float().div(255).permute(0, 3, 1, 2)
    with torch.autocast("cpu", dtype=autocast_dtype(torch.device("cpu"))):
        out = model.loss(x)
        logits = model.decode(model.encode(x)[0])
    assert logits.dtype == torch.bfloat16  # the networks run in bf16 ...
    assert out.loss.dtype == torch.float32 and out.kl_per_latent.dtype == torch.float32  # ... the objective in fp32


def test_rerunning_a_finished_run_keeps_its_summary(tmp_path):
    run = tmp_path / "run"
    args = ["--no-progress", "--config", "configs/dsprites/beta_vae.yaml", f"run.dir={run}", "train.steps=4", *TINY]
    assert main(args) == 0
    first = (run / "stage1.json").read_text()
    assert main(args) == 0
    assert (run / "stage1.json").read_text() == first
    json.loads(first, parse_constant=lambda c: pytest.fail(f"stage1.json holds {c}"))  # strict JSON: no NaN


def test_domain_invariance_at_the_end_of_stage1_on_env_frames(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["--no-progress", "--config", "configs/dsprites/beta_vae.yaml", f"run.dir={run}", "train.steps=2", *TINY,
            "data.source=env", "data.env_id=darla/Sprites-v0", "data.num_images=64", "data.coverage=randomised",
            "eval.metrics=[domain_invariance,mig]", "eval.num_points=200"]
    assert main(args) == 0
    res = json.loads((run / "metrics.json").read_text())
    assert set(res) == {"domain_invariance", "mig"}
    assert 0.0 <= res["domain_invariance"]["scores"]["domain_invariance"] <= 1.0
    # Without an env to render domains from, the metric is refused before anything is written.
    bad = tmp_path / "bad"
    assert main(["--no-progress", "--config", "configs/dsprites/beta_vae.yaml", f"run.dir={bad}",
                 "eval.metrics=[domain_invariance]"]) != 0
    assert "eval.metrics: domain_invariance" in capsys.readouterr().err
    assert not bad.exists()


def test_final_metrics_reach_tensorboard_and_restarts_are_summarised(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    assert main(["--no-progress", "--config", "configs/dsprites/beta_vae.yaml", f"run.dir={run}", *TINY,
                 "train.steps=4", "eval.metrics=[mig]", "eval.num_points=300", "train.restarts=2",
                 "train.restart_steps=2", "train.restart_metric=recon"]) == 0
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    scores = json.loads((run / "metrics.json").read_text())["mig"]["scores"]
    tag = f"metrics/mig/{next(iter(scores))}"
    assert [(e.step, round(e.value, 6)) for e in acc.Scalars(tag)] == [(4, round(next(iter(scores.values())), 6))]
    summary = json.loads((run / "stage1.json").read_text())
    restarts = json.loads((run / "restarts.json").read_text())
    assert summary["restarts"] == {"metric": "recon", "steps": 2, "chosen": restarts["chosen"]}
    assert summary["train_seconds"] >= restarts["seconds"]  # the losing candidate's minutes count too
    assert main(["--no-progress", "--config", "configs/dsprites/beta_vae.yaml", f"run.dir={run}", *TINY,
                 "train.steps=4", "eval.metrics=[mig]", "eval.num_points=300", "train.restarts=2",
                 "train.restart_steps=2", "train.restart_metric=recon"]) == 0  # finished: the choice stands
    assert json.loads((run / "restarts.json").read_text()) == restarts
