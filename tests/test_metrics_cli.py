"""``python -m darla.metrics``: scores a run directory, merges metrics.json, logs TensorBoard scalars."""
import json

import numpy as np
import pytest
import torch

from darla.metrics import main
from vision.checkpoint import save_checkpoint
from vision.models import ModelConfig, build_model


@pytest.fixture()
def run_dir(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig(family="beta_vae", latent_dim=4), (1, 64, 64))
    save_checkpoint(tmp_path / "checkpoint.pt", model, step=7)
    return tmp_path


def test_cli_writes_metrics_json_and_tensorboard(run_dir, capsys):
    assert main(["--run", str(run_dir), "--metrics", "mig", "dci", "--num-points", "200", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "mig" in out and "lightgbm" in out and "metrics.json" in out
    res = json.loads((run_dir / "metrics.json").read_text())
    assert set(res) == {"mig", "dci"}
    assert res["dci"]["variant"] == "lightgbm" and res["mig"]["params"]["num_points"] == 200
    assert res["mig"]["params"]["dropped_factors"] == ["color"] and np.isfinite(res["mig"]["scores"]["mig"])
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    # A second call adds its metric and keeps the others.
    assert main(["--run", str(run_dir), "--metrics", "irs", "--num-points", "200", "--no-progress"]) == 0
    assert set(json.loads((run_dir / "metrics.json").read_text())) == {"mig", "dci", "irs"}


def test_cli_rejects_unknown_data_and_metric(run_dir, capsys):
    assert main(["--run", str(run_dir), "--data", "pickup", "--no-progress"]) == 2
    assert "unknown data source 'pickup'" in capsys.readouterr().err
    assert main(["--run", str(run_dir), "--metrics", "bogus", "--no-progress"]) == 2
    assert "unknown metric 'bogus'" in capsys.readouterr().err
    assert main(["--run", str(run_dir / "nowhere"), "--no-progress"]) == 2
    assert not (run_dir / "metrics.json").exists()


def test_cli_domain_invariance_on_an_env_that_renders_from_factors(tmp_path, capsys):
    torch.manual_seed(0)
    model = build_model(ModelConfig(family="beta_vae", latent_dim=4), (3, 64, 64))
    save_checkpoint(tmp_path / "checkpoint.pt", model, step=3)
    assert main(["--run", str(tmp_path), "--domain-invariance", "darla/Sprites-v0", "--no-progress"]) == 0
    assert "domain_invariance" in capsys.readouterr().out
    r = json.loads((tmp_path / "metrics.json").read_text())["domain_invariance"]
    assert r["params"]["env_id"] == "darla/Sprites-v0" and r["params"]["targets"] == ["target"]
    assert "background_colour" not in r["params"]["weight_factors"]  # weighted by state factors only
    per = r["details"]["per_target"]["target"]["per_latent"]
    assert len(per) == 4 and all(0.0 <= v <= 1.0 for v in per)
    assert 0.0 <= r["scores"]["domain_invariance"] <= 1.0


def test_domain_invariance_on_a_first_person_env_weights_by_its_view_factors():
    """Pickup's frames do not determine the agent's absolute position; latents are weighted by what they do show."""
    from darla.metrics import env_domain_invariance
    from envs import make_factor_env

    view = list(make_factor_env("darla/Pickup-v0").view_sizes)
    rng = np.random.default_rng(0)
    proj = rng.normal(size=(64 * 64 * 3, 3)).astype(np.float32)

    def encode(images):  # an EncodeFn that is not a model: a fixed random projection of the pixels
        return images.reshape(len(images), -1).astype(np.float32) / 255.0 @ proj, None

    r = env_domain_invariance(encode, "darla/Pickup-v0", num_scenes=200)
    assert r["params"]["weight_factors"] == view and "ball_bearing" in view and "agent_x" not in view
    assert set(r["details"]["per_target"]) == {"target", "target_light"}
    assert 0.0 <= r["scores"]["domain_invariance"] <= 1.0
    picked = env_domain_invariance(encode, "darla/Pickup-v0", num_scenes=200, weight_factors=["agent_x"])
    assert picked["params"]["weight_factors"] == ["agent_x"]
