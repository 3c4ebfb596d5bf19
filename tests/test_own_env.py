"""Stage 1 on a user's own data: any Gymnasium id (observations or env.render()), a folder of images; resized to
64x64; one-line errors for what such data cannot do (named domains, metrics)."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from darla import stage1
from envs.collect import collect_frames
from vision.data.frames import load_image_folder
from vision.images import resize_frames

ROOT = Path(__file__).resolve().parents[1]
TINY = ["data.num_images=48", "train.batch_size=8", "train.log_every=1", "train.image_every=100",
        "train.ckpt_every=100", "model.latent_dim=4", "train.num_threads=1", "train.steps=2"]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_a_state_vector_env_is_collected_from_its_rendering():
    got = collect_frames("CartPole-v1", 30, seed=0, progress=False, transform=lambda f: resize_frames(f, (64, 64)))
    assert got.frames.shape == (30, 64, 64, 3) and got.frames.dtype == np.uint8
    assert got.factor_names == () and got.frames.std() > 0  # the cart was drawn, not a blank canvas
    again = collect_frames("CartPole-v1", 30, seed=0, progress=False, transform=lambda f: resize_frames(f, (64, 64)))
    assert np.array_equal(got.frames, again.frames)
    with pytest.raises(ValueError, match="coverage: 'CartPole-v1' has no named domains"):
        collect_frames("CartPole-v1", 5, coverage="randomised", progress=False)


def test_stage1_trains_on_any_gymnasium_id(tmp_path):
    run = tmp_path / "cartpole"
    assert stage1.main(["--config", str(ROOT / "configs/own/gym_env.yaml"), f"run.dir={run}",
                        "data.env_id=CartPole-v1", "data.imports=[]", *TINY]) == 0
    frames = np.load(run / "frames.npz")["frames"]
    assert frames.shape == (48, 64, 64, 3) and (run / "checkpoint.pt").exists()


@pytest.mark.parametrize("override, key", [
    ("eval.metrics=[mig]", "eval.metrics: 'CartPole-v1' reports no ground-truth factors"),
    ("data.coverage=randomised", "data.coverage: 'CartPole-v1' has no named domains"),
    ("data.imports=[no_such_module_xyz]", "data.imports: cannot import 'no_such_module_xyz'"),
])
def test_what_an_env_without_factors_cannot_do_is_one_line(tmp_path, capsys, override, key):
    run = tmp_path / "bad"
    assert stage1.main(["--config", str(ROOT / "configs/own/gym_env.yaml"), f"run.dir={run}",
                        "data.env_id=CartPole-v1", "data.imports=[]", *TINY, override]) == 2
    assert key in one_line_error(capsys)
    assert not run.exists()


def test_a_folder_of_images_of_any_size_trains(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        cv2.imwrite(str(folder / f"{i:03d}.png"), rng.integers(0, 256, (80, 100, 3), dtype=np.uint8))
    (folder / "notes.txt").write_text("not an image")
    store = load_image_folder(folder)
    assert store.frames.shape == (12, 64, 64, 3) and store.factors is None
    run = tmp_path / "run"
    assert stage1.main(["--config", str(ROOT / "configs/own/frames.yaml"), f"run.dir={run}", f"data.path={folder}",
                        *TINY]) == 0
    capsys.readouterr()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert stage1.main(["--config", str(ROOT / "configs/own/frames.yaml"), f"run.dir={tmp_path / 'r2'}",
                        f"data.path={empty}", *TINY]) == 2
    assert "holds no image files" in one_line_error(capsys)
    assert not (tmp_path / "r2").exists()  # a failed start leaves nothing that blocks the corrected command
