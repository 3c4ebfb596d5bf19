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


# ----- transfer to domains of the user's choosing ----------------------------------------------------------------
STAGE2_TINY = ["env.id=darla/Sprites-v0", "env.n_envs=2", "train.total_timesteps=64", "train.eval_every=64",
               "train.eval_episodes=1", "train.eval_envs=1", "train.ckpt_every=64", "train.device=cpu",
               "agent.algo=ppo", "agent.variant=BASELINE", "agent.hparams={n_steps: 32, batch_size: 32, n_epochs: 1}",
               "agent.policy_kwargs={net_arch: [32]}"]


@pytest.fixture(scope="module")
def agent_run(tmp_path_factory):
    from darla import stage2
    from darla.config import Stage2Config, load_config

    run_dir = tmp_path_factory.mktemp("agent") / "baseline"
    stage2.run(load_config(Stage2Config, None, [f"run.dir={run_dir}", *STAGE2_TINY]), progress=False)
    return run_dir


def test_transfer_evaluates_named_factor_and_shifted_domains(agent_run, tmp_path):
    import json

    from darla import transfer

    out = tmp_path / "out"
    assert transfer.main(["--runs", str(agent_run), "--out", str(out), "--episodes", "2", "--reps", "20",
                          "--domains", "target", "blue={background_colour: [3]}", "hue90={shift: hue, degrees: 90}",
                          "perm={shift: channels, permutation: [2, 0, 1], domain: target}"]) == 0
    got = json.loads((out / "transfer.json").read_text())
    assert got["variants"]["BASELINE"]["target_domains"] == ["target", "blue", "hue90", "perm"]
    assert got["domain_specs"]["hue90"] == {"shift": "hue", "degrees": 90}
    returns = got["runs"][0]["returns"]
    assert set(returns) == {"source", "target", "blue", "hue90", "perm"} and all(len(r) == 2 for r in returns.values())
    cache = json.loads((agent_run / transfer.EVAL_FILE).read_text())["episodes=2,seed=1000003"]
    assert 'hue90 {"degrees": 90, "shift": "hue"}' in cache  # a label reused for another spec is not served stale


def test_a_shifted_env_shows_shifted_pixels():
    import gymnasium as gym

    import envs  # noqa: F401
    from darla.config import EnvConfig
    from darla.stage2 import env_factory

    plain = env_factory(EnvConfig(id="darla/Sprites-v0"), "source")()
    shifted = env_factory(EnvConfig(id="darla/Sprites-v0"), {"shift": "channels", "permutation": [2, 0, 1]})()
    a, _ = plain.reset(seed=3)
    b, _ = shifted.reset(seed=3)
    assert np.array_equal(b, a[..., [2, 0, 1]]) and isinstance(plain, gym.Env)


@pytest.mark.parametrize("spec, message", [
    ("x={shift: blur}", "--domains: x: unknown shift 'blur'"),
    ("x={shift: hue, strength: 3}", "--domains: x: "),
    ("x={no_such_factor: [1]}", "--domains: x: "),
    ("=target", "has no label"),
])
def test_bad_domains_are_one_line_and_write_nothing(agent_run, tmp_path, capsys, spec, message):
    from darla import transfer

    out = tmp_path / "out"
    assert transfer.main(["--runs", str(agent_run), "--out", str(out), "--episodes", "1", "--domains", spec]) == 2
    assert message in one_line_error(capsys)
    assert not out.exists()
