"""``python -m darla.report acquisition`` and ``traversals`` on a short stage-1 run."""
import json

import pytest

from darla.report import kl_curves
from darla.report import main as report_main
from darla.stage1 import main as stage1_main

TINY = ["--no-progress", "--config", "configs/dsprites/beta_vae.yaml", "data.num_images=256", "train.batch_size=16",
        "train.log_every=2", "train.image_every=100", "train.ckpt_every=100", "model.latent_dim=4",
        "train.num_threads=1", "eval.metrics=[]", "train.steps=6", "train.restarts=1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "run"
    assert stage1_main([*TINY, f"run.dir={path}"]) == 0
    return path


def test_kl_curves_read_every_logged_step(run):
    steps, kl = kl_curves(run)
    assert steps.tolist() == [2, 4, 6] and kl.shape == (3, 4)


def test_acquisition_writes_figure_and_json(run, tmp_path, capsys):
    out = tmp_path / "acq.png"
    assert report_main(["acquisition", "--run", str(run), "--out", str(out), "--onset-nats", "0"]) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    assert out.stat().st_size > 0 and len(res["latents"]) == 4
    names = {"shape", "scale", "orientation", "posX", "posY"}  # colour is constant in dSprites: never a label
    assert all(d["factor"] in names and 0.0 <= d["normalised_mi"] <= 1.0 for d in res["latents"])
    assert "order of acquisition" in capsys.readouterr().out


def test_labelled_traversals_rows_are_sorted_by_kl(run, tmp_path):
    out = tmp_path / "trav.png"
    assert report_main(["traversals", "--run", str(run), "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert rows and [r["kl"] for r in rows] == sorted((r["kl"] for r in rows), reverse=True)
    assert all(r["normalised_mi"] >= r["next_best_mi"] for r in rows)


def test_a_directory_without_a_run_is_one_clear_error(tmp_path, capsys):
    assert report_main(["acquisition", "--run", str(tmp_path), "--out", str(tmp_path / "a.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path) in err and not (tmp_path / "a.png").exists()


def test_traversals_of_an_env_run_are_labelled_with_the_env_factors(tmp_path):
    env_run = tmp_path / "sprites"
    assert stage1_main([*TINY, f"run.dir={env_run}", "data.source=env", "data.env_id=darla/Sprites-v0",
                        "data.num_images=64", "data.env_kwargs={grid: 4}"]) == 0
    out = tmp_path / "trav.png"
    assert report_main(["traversals", "--run", str(env_run), "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    sprites_factors = {"background_colour", "agent_colour", "goal_colour", "agent_x", "agent_y", "goal_x", "goal_y"}
    assert rows and all(r["factor"] in sprites_factors for r in rows)


def test_prior_samples_are_a_four_row_grid_and_repeatable(run, tmp_path, capsys):
    import cv2

    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert report_main(["samples", "--run", str(run), "--out", str(a), "--n", "8"]) == 0
    assert report_main(["samples", "--run", str(run), "--out", str(b), "--n", "8"]) == 0
    img = cv2.imread(str(a))
    assert img.shape == (4 * 66 + 2, 2 * 66 + 2, 3)  # 64-px images with a 2-px border, 4 rows of 2
    assert a.read_bytes() == b.read_bytes()  # same seed, same samples
    assert report_main(["samples", "--run", str(run), "--out", str(tmp_path / "c.png"), "--n", "6"]) == 2
    assert "--n" in capsys.readouterr().err and not (tmp_path / "c.png").exists()


def test_traversals_of_a_model_without_kl_rank_by_code_spread(tmp_path):
    import numpy as np

    run = tmp_path / "ae"
    assert stage1_main([*TINY, f"run.dir={run}", "model.family=ae"]) == 0
    out = tmp_path / "trav.png"
    assert report_main(["traversals", "--run", str(run), "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    sds = [r["sd"] for r in rows]
    assert sds == sorted(sds, reverse=True) and all(r["kl"] == 0.0 for r in rows)
    import vision
    from vision.viz import traversal_grid

    with pytest.raises(ValueError, match="ranges: one"):
        traversal_grid(vision.load(run, "cpu"), np.zeros((64, 64, 1), np.uint8), np.array([0, 1]),
                       ranges=np.zeros((1, 2)))


def _curve_run(path, rows):
    path.mkdir(parents=True)
    (path / "metrics_curve.json").write_text(json.dumps(rows))
    return path


def test_metric_curve_shifts_by_extra_minutes_and_draws_targets(tmp_path, capsys):
    a = _curve_run(tmp_path / "a", [{"step": 5, "train_seconds": 60.0, "mig": 0.1, "factor_vae": 0.5},
                                    {"step": 10, "train_seconds": 120.0, "mig": 0.2, "factor_vae": 0.6}])
    b = _curve_run(tmp_path / "b", [{"step": 5, "train_seconds": 30.0, "mig": 0.3}])
    out = tmp_path / "curve.png"
    assert report_main(["curve", "--runs", str(a), str(b), "--out", str(out), "--extra-minutes", "2", "0",
                        "--target", "mig=0.15"]) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    assert out.stat().st_size > 0 and res["extra_minutes"] == [2.0, 0.0] and res["targets"] == {"mig": 0.15}
    assert "step 10" in capsys.readouterr().out


def test_metric_curve_errors_name_the_bad_argument(tmp_path, capsys):
    a = _curve_run(tmp_path / "a", [{"step": 5, "train_seconds": 60.0, "mig": 0.1}])
    assert report_main(["curve", "--runs", str(tmp_path / "none"), "--out", str(tmp_path / "c.png")]) == 2
    assert "metrics_curve.json" in capsys.readouterr().err
    assert report_main(["curve", "--runs", str(a), "--out", str(tmp_path / "c.png"), "--target", "mig=high"]) == 2
    assert "--target" in capsys.readouterr().err
    assert report_main(["curve", "--runs", str(a), "--out", str(tmp_path / "c.png"), "--extra-minutes", "1", "2"]) == 2
    assert "--extra-minutes" in capsys.readouterr().err and not (tmp_path / "c.png").exists()
