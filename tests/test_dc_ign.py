"""DC-IGN: the clamp (forward and gradient), single-factor batches from the ground truth, the latent layout,
checkpoints through ``vision.load``, and the stage-1 CLI (run, resume, one-line errors)."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

import vision
from darla.stage1 import main
from vision.data.dsprites import DSprites
from vision.data.frames import FrameStore
from vision.models import DCIGN, MODEL_FAMILIES, ModelConfig, build_model
from vision.models.dc_ign import REST, LatentGroups, SingleFactorBatches, clamp_to_batch_mean
from vision.train import TrainConfig, train

SHAPE = (1, 64, 64)
TINY = ["data.num_images=64", "train.batch_size=8", "train.log_every=5", "train.image_every=100",
        "train.ckpt_every=100", "train.num_threads=1", "eval.metrics=[]"]


def _model(**kw):
    torch.manual_seed(0)
    kw.setdefault("latent_dim", 7)
    kw.setdefault("beta", 1.0)
    return build_model(ModelConfig(family="dc_ign", **kw), SHAPE)


def _store(n=32, seed=0):
    ds = DSprites()
    f = ds.sample_factors(n, np.random.default_rng(seed))
    return ds, FrameStore(ds.render(f), f, ds.factor_names, ds.factor_sizes)


def test_registered_and_encodes():
    assert MODEL_FAMILIES["dc_ign"] is DCIGN
    model = _model()
    mu, logvar = model.encode(torch.rand(5, *SHAPE))
    assert mu.shape == logvar.shape == (5, 7)
    assert model.render(mu).shape == (5, *SHAPE)


# ----- the clamp ---------------------------------------------------------------------------------------------
def test_clamp_forward_and_gradient_known_values():
    z = torch.tensor([[1.0, 0.0, 5.0], [3.0, 2.0, 7.0], [8.0, 4.0, 0.0]], requires_grad=True)
    mask = torch.tensor([True, False, True])
    out = clamp_to_batch_mean(z, mask, weight=1.0)
    # forward: clamped columns become their batch mean in every row; the free column passes through
    assert torch.equal(out.detach(), torch.tensor([[4.0, 0.0, 4.0], [4.0, 2.0, 4.0], [4.0, 4.0, 4.0]]))
    upstream = torch.tensor([[10.0, 20.0, 30.0], [40.0, 50.0, 60.0], [70.0, 80.0, 90.0]])
    out.backward(upstream)
    # backward: a clamped unit's gradient is replaced by (z − batch mean); the free unit's is passed unchanged
    assert torch.equal(z.grad, torch.tensor([[-3.0, 20.0, 1.0], [-1.0, 50.0, 3.0], [4.0, 80.0, -4.0]]))
    z.grad = None
    clamp_to_batch_mean(z, mask, weight=0.5).backward(upstream)
    assert torch.equal(z.grad[:, 0], torch.tensor([-1.5, -0.5, 2.0]))
    with pytest.raises(ValueError, match="mask"):
        clamp_to_batch_mean(z, torch.ones(2, dtype=torch.bool))


def test_clamped_latents_are_equal_across_the_batch_in_forward():
    model = _model().train()
    mask = torch.tensor([True, True, False, True, True, True, True])
    with model.clamped(mask):
        out = model.loss(torch.rand(6, *SHAPE))
    assert out.z is not None
    assert torch.equal(out.z[:, mask], out.z[:1, mask].expand(6, -1))  # identical rows on the clamped units
    assert out.z[:, 2].std() > 0  # the varied factor's latent still differs image to image
    assert out.terms["invariance"] > 0
    model.eval()
    with model.clamped(mask):  # eval mode: μ, nothing clamped
        assert model.loss(torch.rand(6, *SHAPE)).z[:, 0].std() > 0
    assert "invariance" not in _model().loss(torch.rand(4, *SHAPE)).terms  # outside a clamp: the plain VAE loss


def test_reconstruction_never_reaches_clamped_units():
    # β = 0 and clamp weight 0: a clamped unit's only gradient would be the reconstruction's, which DC-IGN drops.
    model = _model(beta=0.0, dcign_clamp_weight=0.0).train()
    mask = torch.ones(7, dtype=torch.bool)
    mask[3] = False
    with model.clamped(mask):
        model.loss(torch.rand(6, *SHAPE)).loss.backward()
    head = model.encoder.head.weight.grad  # rows 0..6: μ, rows 7..13: log σ²
    clamped = [j for j in range(7) if j != 3]
    assert head[clamped].abs().sum() == 0 and head[[7 + j for j in clamped]].abs().sum() == 0
    assert head[3].abs().sum() > 0 and head[10].abs().sum() > 0


def test_train_step_with_clamp_changes_parameters_and_logs_invariance():
    model = _model()
    opts = model.configure_optimizers(1e-3)
    before = torch.cat([p.detach().flatten().clone() for p in model.main_parameters()])
    out = model.train_step(torch.rand(8, *SHAPE), 0, opts, clamp=torch.arange(7) != 1)
    assert torch.isfinite(out.loss) and {"recon", "kl", "beta", "invariance", "loss"} <= set(out.terms)
    assert not torch.equal(before, torch.cat([p.detach().flatten() for p in model.main_parameters()]))
    assert model._clamp is None  # the clamp lasts one step
    out = model.train_step(torch.rand(8, *SHAPE), 1, opts, autocast=True, clamp=torch.arange(7) != 1)
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)


# ----- layout and batches ----------------------------------------------------------------------------------------
def test_layout_one_group_per_varying_factor_then_rest():
    ds = DSprites()
    groups = LatentGroups.for_data(ModelConfig(family="dc_ign", latent_dim=12, dcign_latents_per_factor=2),
                                   ds.factor_names, ds.factor_sizes)
    assert groups.factors == ("shape", "scale", "orientation", "posX", "posY")  # colour has one value: no group
    assert groups.as_dict() == {"shape": [0, 1], "scale": [2, 3], "orientation": [4, 5], "posX": [6, 7],
                                "posY": [8, 9], REST: [10, 11]}
    assert groups.rest_columns == () and groups.num_groups == 5
    assert groups.clamp_mask(1).tolist() == [True, True, False, False] + [True] * 8
    picked = LatentGroups.for_data(ModelConfig(family="dc_ign", latent_dim=3, dcign_factors=["posY", "posX"]),
                                   ds.factor_names, ds.factor_sizes)
    assert picked.as_dict() == {"posY": [0], "posX": [1], REST: [2]}
    assert picked.rest_columns == (1, 2, 3) and picked.varied_columns(2) == (1, 2, 3)  # shape, scale, orientation
    assert picked.clamp_mask(2).tolist() == [True, True, False]


@pytest.mark.parametrize("kw, match", [
    (dict(latent_dim=4), r"model.latent_dim: dc_ign needs >= 5 latents \(5 factors"),
    (dict(latent_dim=2, dcign_factors=["posX", "posY"]), r"model.latent_dim: dc_ign needs >= 3 latents .*rest group"),
    (dict(dcign_factors=["size"]), r"model.dcign_factors: unknown factor\(s\) \['size'\]"),
    (dict(dcign_factors=["color"]), r"model.dcign_factors: \['color'\] take a single value"),
])
def test_layout_errors_name_the_key(kw, match):
    ds = DSprites()
    with pytest.raises(ValueError, match=match) as e:
        LatentGroups.for_data(ModelConfig(family="dc_ign", **kw), ds.factor_names, ds.factor_sizes)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("key, value", [("dcign_latents_per_factor", 0), ("dcign_rest_weight", -1.0),
                                        ("dcign_clamp_weight", -1.0), ("dcign_factors", ["posX", "posX"])])
def test_config_errors_name_the_key(key, value):
    with pytest.raises(ValueError, match=f"model.{key}") as e:
        ModelConfig(family="dc_ign", **{key: value})
    assert "\n" not in str(e.value)


def test_batches_vary_one_factor_and_render_it():
    ds, store = _store()
    model = _model(latent_dim=6)
    batches = model.batch_sampler(store, ds)
    assert model.latent_groups == {"shape": [0], "scale": [1], "orientation": [2], "posX": [3], "posY": [4], REST: [5]}
    rng = np.random.default_rng(0)
    for g, column in enumerate(batches.groups.columns):
        rows, got = batches.factors(64, rng, group=g)
        assert got == g
        others = [c for c in range(rows.shape[1]) if c != column]
        assert (rows[:, others] == rows[:1, others]).all()  # every other factor shared by the batch
        assert len(np.unique(rows[:, column])) > 1
    frames, kw = batches(16, torch.Generator().manual_seed(3))
    assert frames.shape == (16, 64, 64, 1) and frames.dtype == np.uint8
    assert kw["clamp"].dtype == torch.bool and int((~kw["clamp"]).sum()) == 1
    again, kw2 = batches(16, torch.Generator().manual_seed(3))  # all randomness from the trainer's generator
    assert np.array_equal(frames, again) and torch.equal(kw["clamp"], kw2["clamp"])
    drawn = {int(torch.nonzero(~batches(2, torch.Generator().manual_seed(s))[1]["clamp"])[0]) for s in range(60)}
    assert drawn == {0, 1, 2, 3, 4}  # every factor's batches occur; the rest group has nothing to vary here


def test_rest_batches_vary_the_unnamed_factors_together():
    ds = DSprites()
    groups = LatentGroups.for_data(ModelConfig(family="dc_ign", latent_dim=3, dcign_factors=["posX", "posY"]),
                                   ds.factor_names, ds.factor_sizes)
    batches = SingleFactorBatches(ds, groups, rest_weight=10.0, frame_shape=(64, 64, 1))
    assert batches.probs.tolist() == pytest.approx([1 / 12, 1 / 12, 10 / 12])
    rows, g = batches.factors(64, np.random.default_rng(0), group=2)
    assert (rows[:, [4, 5]] == rows[:1, [4, 5]]).all()  # posX, posY fixed
    assert all(len(np.unique(rows[:, c])) > 1 for c in (1, 2, 3))


def test_batches_stay_inside_the_data_domain():
    class Domain:  # a domain that forbids scale index 0 (as a held-out combination would be forbidden)
        @staticmethod
        def contains(f):
            return f[:, 2] != 0

    class Restricted(DSprites):
        domain = Domain()

        def sample_factors(self, n, rng):
            f = super().sample_factors(n, rng)
            f[:, 2] = np.maximum(f[:, 2], 1)
            f[0, 2] = 0 if n > 1 else f[0, 2]  # one forbidden row among the varied draws
            return f

    data = Restricted()
    groups = LatentGroups.for_data(ModelConfig(family="dc_ign", latent_dim=5), data.factor_names, data.factor_sizes)
    rows, _ = SingleFactorBatches(data, groups, 1.0, (64, 64, 1)).factors(32, np.random.default_rng(0), group=1)
    assert (rows[:, 2] != 0).all()


def test_env_scene_batches():
    from envs import scene_data

    data = scene_data("darla/Reach-v0", domain="source")
    store = FrameStore(np.zeros((4, 64, 64, 3), np.uint8))
    model = build_model(ModelConfig(family="dc_ign", latent_dim=12), (3, 64, 64))
    frames, kw = model.batch_sampler(store, data)(8, torch.Generator().manual_seed(0))
    assert frames.shape == (8, 64, 64, 3) and kw["clamp"].shape == (12,)
    assert set(model.latent_groups) == {n for n, s in zip(data.factor_names, data.factor_sizes) if s > 1} | {REST}


def test_no_factors_is_a_one_line_error():
    _, store = _store(8)
    with pytest.raises(ValueError, match="model.family: dc_ign renders its batches from ground-truth factors") as e:
        _model().batch_sampler(store, None)
    assert "\n" not in str(e.value)


# ----- training, checkpoints, CLI ----------------------------------------------------------------------------
def test_train_then_load_round_trip_and_exact_resume(tmp_path):
    ds, store = _store(32)
    cfg = TrainConfig(steps=4, batch_size=8, lr=1e-3, amp=False, log_every=2, image_every=100, ckpt_every=2)
    straight = _model(latent_dim=6)
    train(straight, store, cfg, tmp_path / "a", progress=False, ground_truth=ds)
    first = _model(latent_dim=6)
    train(first, store, replace(cfg, steps=2), tmp_path / "b", progress=False, ground_truth=ds)
    resumed = _model(latent_dim=6)
    got = train(resumed, store, cfg, tmp_path / "b", progress=False, ground_truth=ds)
    assert got.resumed_from == 2 and "invariance" in got.terms
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), k  # same batches, same clamps, same steps
    loaded = vision.load(tmp_path / "a", device="cpu")
    assert isinstance(loaded, DCIGN) and not loaded.training
    assert loaded.latent_groups == straight.latent_groups and loaded.latent_groups["posX"] == [3]
    for k, v in loaded.state_dict().items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, straight.state_dict()[k]), k
    x = torch.rand(3, *SHAPE)
    with torch.no_grad():  # the trained copy is channels-last: same values up to the kernels' rounding
        torch.testing.assert_close(loaded.encode(x)[0], straight.eval().encode(x)[0])


def test_cli_runs_and_resumes(tmp_path):
    run = tmp_path / "run"
    args = ["--no-progress", "--config", "configs/dsprites/dc_ign.yaml", f"run.dir={run}", *TINY]
    assert main([*args, "train.steps=20"]) == 0
    first = json.loads((run / "stage1.json").read_text())
    assert first["family"] == "dc_ign" and first["step"] == 20 and "invariance" in first["terms"]
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert main([*args, "train.steps=24"]) == 0
    second = json.loads((run / "stage1.json").read_text())
    assert second["resumed_from"] == 20 and second["step"] == 24
    assert vision.load(run, device="cpu").latent_groups["shape"] == [0]


@pytest.mark.parametrize("extra, match", [
    (["data.source=frames", "data.path=FRAMES"], "model.family: 'dc_ign' renders its batches from ground-truth factors"),
    (["data.source=env", "data.env_id=darla/CarRacing-v0"], "'darla/CarRacing-v0' has no ground-truth factors"),
    (["model.latent_dim=3"], "model.latent_dim: dc_ign needs >= 5 latents"),
    (["model.dcign_latents_per_factor=0"], "model.dcign_latents_per_factor: must be >= 1"),
])
def test_cli_bad_config_is_one_line(tmp_path, capsys, extra, match):
    FrameStore(np.zeros((4, 64, 64, 1), np.uint8)).save(tmp_path / "frames.npz")
    extra = [e.replace("FRAMES", str(tmp_path / "frames.npz")) for e in extra]
    run = tmp_path / "run"
    assert main(["--no-progress", "--config", "configs/dsprites/dc_ign.yaml", f"run.dir={run}", "train.steps=2", *TINY, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1
    assert not run.exists()  # a failed start leaves no run directory behind


@pytest.mark.slow
def test_position_batches_move_their_own_latents_on_dsprites():
    """800 steps of the dSprites config (batch 64, ~1 min on one core): in batches where only posX (posY) varies,
    the latent with the largest spread of μ is posX's (posY's) own. Position is what a VAE learns first."""
    from vision.images import to_tensor

    ds, store = _store(256)
    model = _model(latent_dim=10).to(memory_format=torch.channels_last)
    batches = model.batch_sampler(store, ds)
    opts = model.configure_optimizers(5e-4)
    g = torch.Generator().manual_seed(0)
    for step in range(800):
        frames, kw = batches(64, g)
        model.train_step(to_tensor(frames, memory_format=torch.channels_last), step, opts, autocast=True, **kw)
    model.eval()
    rng = np.random.default_rng(1)
    with torch.no_grad():
        for name in ("posX", "posY"):
            group = batches.groups.factors.index(name)
            spread = np.mean([model.encode(to_tensor(ds.render(batches.factors(64, rng, group=group)[0])))[0].var(0).numpy()
                              for _ in range(10)], axis=0)
            assert int(spread.argmax()) == model.latent_groups[name][0], (name, spread.round(3))
