"""Stage-1 trainer and checkpoints: resume equality, determinism, NaN stop, frozen loading, clear errors."""
import numpy as np
import pytest
import torch

import vision
from vision.checkpoint import CheckpointError, load, read_checkpoint, save_checkpoint
from vision.data.dsprites import DSprites
from vision.data.frames import FrameStore
from vision.data.ground_truth import sample_observations
from vision.images import to_tensor
from vision.models import ModelConfig, build_model
from vision.train import TrainConfig, TrainingDiverged, train


@pytest.fixture(scope="module")
def store():
    ds = DSprites()
    frames, factors = sample_observations(ds, 64, np.random.default_rng(0))
    return FrameStore(frames, factors, ds.factor_names, ds.factor_sizes)


def _cfg(steps, **kw):
    base = dict(batch_size=8, lr=1e-3, device="cpu", log_every=2, image_every=100, ckpt_every=100)
    return TrainConfig(steps=steps, **{**base, **kw})


def _model(store, **kw):
    torch.manual_seed(0)
    return build_model(ModelConfig(latent_dim=4, **kw), (1, 64, 64), len(store))


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_deterministic_on_cpu(store, tmp_path):
    a, b = _model(store), _model(store)
    train(a, store, _cfg(4), tmp_path / "a", progress=False)
    train(b, store, _cfg(4), tmp_path / "b", progress=False)
    assert torch.equal(_params(a), _params(b))


def test_resume_equals_uninterrupted(store, tmp_path):
    full = _model(store)
    train(full, store, _cfg(6), tmp_path / "full", progress=False)
    part = _model(store)
    r1 = train(part, store, _cfg(3), tmp_path / "part", progress=False)
    assert r1.step == 3
    resumed = _model(store)  # fresh process state: weights, optimizer and RNG come from the checkpoint
    r2 = train(resumed, store, _cfg(6), tmp_path / "part", progress=False)
    assert r2.resumed_from == 3 and r2.step == 6
    assert torch.equal(_params(full), _params(resumed))
    assert read_checkpoint(tmp_path / "part")["step"] == 6
    # A finished run returns at once with its stored state.
    r3 = train(_model(store), store, _cfg(6), tmp_path / "part", progress=False)
    assert r3.resumed_from == 6 and r3.step == 6 and np.isfinite(r3.terms["loss"])


def test_outputs_written(store, tmp_path):
    train(_model(store), store, _cfg(2), tmp_path, progress=False)
    for name in ("checkpoint.pt", "reconstructions.png", "traversals.png"):
        assert (tmp_path / name).is_file()
    assert any((tmp_path / "tb").iterdir())


def test_nan_stops_and_keeps_last_good_checkpoint(store, tmp_path):
    model = _model(store)
    train(model, store, _cfg(2, ckpt_every=1), tmp_path, progress=False)
    good = read_checkpoint(tmp_path)["state_dict"]
    # The checkpoint is reloaded on resume, so poison the loss itself from step 3 on.
    original = model.reconstruction
    model.reconstruction = lambda x, logits: original(x, logits) * float("nan")
    with pytest.raises(TrainingDiverged, match="step 2"):
        train(model, store, _cfg(4, ckpt_every=1), tmp_path, progress=False)
    after = read_checkpoint(tmp_path)
    assert after["step"] == 2
    assert all(torch.equal(good[k], after["state_dict"][k]) for k in good)


def test_tensorboard_keeps_the_checkpoint_step_on_resume_and_skips_kl_of_deterministic_models(store, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def scalars(run):
        acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
        acc.Reload()
        return acc

    train(_model(store), store, _cfg(4, ckpt_every=2), tmp_path / "v", progress=False)
    train(_model(store), store, _cfg(6, ckpt_every=2), tmp_path / "v", progress=False)  # resumes at step 4
    # two event files written within one second may be read in either order: compare the steps, not their order
    assert sorted(e.step for e in scalars(tmp_path / "v").Scalars("loss/loss")) == [2, 4, 6]
    train(_model(store, family="dae"), store, _cfg(2), tmp_path / "dae", progress=False)
    tags = scalars(tmp_path / "dae").Tags()["scalars"]
    assert "loss/loss" in tags and not [t for t in tags if t.startswith("kl_per_latent/") or t == "loss/kl"]


def test_shape_mismatch_is_clear(store, tmp_path):
    model = build_model(ModelConfig(latent_dim=4), (3, 64, 64), len(store))
    with pytest.raises(ValueError, match=r"\(64, 64, 1\)"):
        train(model, store, _cfg(1), tmp_path, progress=False)


def test_load_returns_frozen_model_with_same_encodings(store, tmp_path):
    model = _model(store)
    save_checkpoint(tmp_path / "m.pt", model, step=0)
    loaded = vision.load(tmp_path / "m.pt", device="cpu")
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    x = torch.rand(3, 1, 64, 64)
    model.eval()
    assert torch.allclose(model.encode(x)[0], loaded.encode(x)[0])


def test_bad_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        vision.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        vision.load(tmp_path / "junk.pt")
    torch.save({"hello": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a darla vision checkpoint"):
        vision.load(tmp_path / "other.pt")


def test_final_model_carries_its_latent_statistics(store, tmp_path):
    model = _model(store)
    train(model, store, _cfg(3), tmp_path, progress=False)
    with torch.no_grad():
        mu = model.encode(to_tensor(store.frames))[0]
        z = model.standardize(mu)
    # Fitted on every frame of this small store: standardised means have mean 0 and sd 1 per latent.
    torch.testing.assert_close(z.mean(0), torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std(0), torch.ones(4), atol=1e-4, rtol=0)
    loaded = load(tmp_path, device="cpu")
    assert torch.equal(loaded.latent_mean, model.latent_mean) and torch.equal(loaded.latent_std, model.latent_std)


def test_checkpoints_without_latent_statistics_load_as_identity(store, tmp_path):
    model = _model(store)
    save_checkpoint(tmp_path / "old.pt", model, step=0)
    payload = torch.load(tmp_path / "old.pt", weights_only=False)
    for key in ("latent_mean", "latent_std"):
        del payload["state_dict"][key]  # as written before the statistics existed
    torch.save(payload, tmp_path / "old.pt")
    loaded = load(tmp_path / "old.pt", device="cpu")
    assert torch.equal(loaded.latent_mean, torch.zeros(4)) and torch.equal(loaded.latent_std, torch.ones(4))


def test_a_checkpoint_write_killed_midway_leaves_no_temp_file_behind(store, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    stale = run / ".checkpoint.pt.abc123.tmp"  # what a kill during atomic_write_bytes leaves
    stale.write_bytes(b"partial")
    train(_model(store), store, _cfg(2), run, progress=False)
    assert not stale.exists() and (run / "checkpoint.pt").exists()


def test_progress_bar_writes_plain_lines_when_not_on_a_terminal(monkeypatch, capsys):
    import io
    import sys

    from vision.runtime import progress_bar

    buf = io.StringIO()  # not a terminal
    monkeypatch.setattr(sys, "stderr", buf)
    bar = progress_bar(range(1000), desc="work", line_interval=3600)
    for i in bar:
        bar.set_postfix(i=i)  # a postfix redraws the bar; not a line each time
    out = buf.getvalue()
    assert "\r" not in out and "\x1b" not in out
    lines = out.splitlines()
    assert 1 <= len(lines) <= 3 and lines[-1].startswith("work: 100%")


def test_best_of_restarts_continues_the_lowest_scoring_candidate_exactly(store, tmp_path):
    from vision.runtime import seed_everything
    from vision.train import heldout_terms, restart_seed, select_restart

    def build():
        return build_model(ModelConfig(latent_dim=4), (1, 64, 64), len(store))

    cfg = _cfg(4, restarts=3, restart_steps=2)
    got = select_restart(build, store, cfg, tmp_path / "best", progress=False)
    seeds = [c["seed"] for c in got["candidates"]]
    assert seeds[0] == 0 and len(set(seeds)) == 3  # candidate 0 is the plain run of the seed
    scores = [c["score"] for c in got["candidates"]]
    assert got["chosen"] == int(np.argmin(scores)) and scores == [c["terms"]["recon"] for c in got["candidates"]]
    winner = build()
    train(winner, store, cfg, tmp_path / "best", progress=False)  # resumes the winner's checkpoint
    # ... and ends exactly where an uninterrupted run from the winner's own seed ends.
    seed_everything(restart_seed(0, got["chosen"]))
    alone = build()
    train(alone, store, _cfg(4, seed=restart_seed(0, got["chosen"])), tmp_path / "alone", progress=False)
    assert torch.equal(_params(winner), _params(alone))
    # Held-out scoring is repeatable and leaves the caller's random state alone.
    state = torch.get_rng_state()
    assert heldout_terms(alone, store.frames[:16], 4) == heldout_terms(alone, store.frames[:16], 4)
    assert torch.equal(state, torch.get_rng_state())


def test_restarts_can_choose_by_rotation_gain(store, tmp_path):
    from vision.train import heldout_rotation_gain, select_restart

    def build():
        return build_model(ModelConfig(latent_dim=4), (1, 64, 64), len(store))

    got = select_restart(build, store, _cfg(4, restarts=2, restart_steps=2, restart_metric="rotation"),
                         tmp_path / "rot", progress=False)
    scores = [c["score"] for c in got["candidates"]]
    assert scores == [c["terms"]["rotation"] for c in got["candidates"]] and min(scores) >= 0  # inf: 2 steps
    assert got["metric"] == "rotation" and got["chosen"] == int(np.argmin(scores))
    model = build()
    assert heldout_rotation_gain(model, store.frames[:64]) == float("inf")  # untrained: no latent above 0.5 nats


def test_restart_settings_are_checked():
    with pytest.raises(ValueError, match="train.restart_steps: must be < train.steps"):
        TrainConfig(steps=100, restarts=2, restart_steps=100)
    with pytest.raises(ValueError, match="train.restart_metric: unknown 'kl'"):
        TrainConfig(restart_metric="kl")
    with pytest.raises(ValueError, match="train.restarts: must be >= 1"):
        TrainConfig(restarts=0)
