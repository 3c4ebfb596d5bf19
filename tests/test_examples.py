"""examples/: the custom-env walkthrough runs end to end at a tiny scale."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_minigrid_walkthrough_trains_vision_wraps_and_learns(tmp_path):
    pytest.importorskip("minigrid")
    example = _load("minigrid_latents")
    result = example.main(["--out", str(tmp_path), "--frames", "300", "--vision-steps", "10", "--ppo-steps", "1024",
                           "--episodes", "2"])
    assert json.loads((tmp_path / "result.json").read_text()) == result
    assert (tmp_path / "beta_vae" / "checkpoint.pt").is_file() and (tmp_path / "ppo_latents.zip").is_file()
    assert 0.0 <= result["random_policy"][0] <= 1.0 and 0.0 <= result["ppo_on_latents"][0] <= 1.0
    # The wrapped env really emits the checkpoint's latents: 10 floats per frame.
    from vision.wrappers import DisentangledObservation
    env = DisentangledObservation(example.make_pixel_env(), tmp_path / "beta_vae")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (10,) and obs.dtype == np.float32
