"""InfoGAN: players and their parameters, spectral normalisation, the MI term on a tiny run, the representation,
checkpoints through ``vision.load`` and the wrappers, and the stage-1 CLI (run, resume, metrics, one-line errors)."""
import json

import numpy as np
import pytest
import torch
from torch.nn.utils import parametrize

import vision
from darla.stage1 import main
from vision.checkpoint import save_checkpoint
from vision.models import MODEL_FAMILIES, InfoGAN, ModelConfig, build_model
from vision.models.base import weights_frozen
from vision.wrappers import FrozenEncoder

SHAPE = (1, 64, 64)
TINY = ["data.num_images=64", "train.batch_size=8", "train.log_every=5", "train.image_every=100",
        "train.ckpt_every=100", "train.num_threads=1", "eval.metrics=[]"]


def _model(shape=SHAPE, **kw):
    torch.manual_seed(0)
    kw.setdefault("latent_dim", 5)  # 3 class probabilities + 2 continuous codes
    return build_model(ModelConfig(family="infogan", **kw), shape)


def _real(n=8, shape=SHAPE, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, *shape, generator=g) > 0.9).float()


def test_registered_and_shapes():
    assert MODEL_FAMILIES["infogan"] is InfoGAN
    model = _model().eval()
    assert (model.num_categories, model.num_continuous, model.noise_dim) == (3, 2, 5) and not model.stochastic
    code, logvar = model.encode(_real(4))
    assert code.shape == (4, 5) and torch.equal(logvar, torch.zeros_like(logvar))
    probs = code[:, :3]
    assert (probs >= 0).all() and torch.allclose(probs.sum(1), torch.ones(4))  # the categorical part: probabilities
    images = model.render(code)  # G at zero noise reads the representation as its code
    assert images.shape == (4, *SHAPE) and images.min() >= 0 and images.max() <= 1
    prior, classes = model.sample_code(6, "cpu")
    assert prior.shape == (6, 5) and torch.equal(prior[:, :3].argmax(1), classes)
    assert prior[:, 3:].abs().max() <= 1
    assert model.generate(prior, torch.randn(6, 5)).shape == (6, *SHAPE)


def test_players_own_disjoint_parameters_and_d_is_spectrally_normalised():
    model = _model()
    g_names = {n for n, p in model.named_parameters() if any(p is q for q in model.main_parameters())}
    d_names = {n for n, p in model.named_parameters() if any(p is q for q in model.discriminator_parameters())}
    assert g_names and all(n.startswith("decoder.") for n in g_names)
    assert d_names == {n for n, _ in model.named_parameters()} - g_names
    assert any(n.startswith("encoder.q.") for n in d_names) and any(n.startswith("d_head.") for n in d_names)
    d_layers = [m for m in [*model.encoder.trunk.modules(), model.d_head] if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(d_layers) == 6 and all(parametrize.is_parametrized(m, "weight") for m in d_layers)
    assert not any(parametrize.is_parametrized(m) for m in model.encoder.q.modules())
    model.train()
    for _ in range(30):  # power iterations run in training-mode forwards
        model.encoder.features(_real(4))
    fc = model.encoder.trunk.fc[1]
    assert torch.linalg.matrix_norm(fc.weight.detach(), 2).item() == pytest.approx(1.0, abs=1e-2)


def test_each_player_step_leaves_the_other_alone():
    model = _model().train()
    fake, code, classes = model._fake(4, "cpu")
    d_total, _ = model.discriminator_loss(_real(4), fake, code, classes)
    d_total.backward()
    assert all(p.grad is None for p in model.main_parameters())  # fakes are detached for D/Q
    model.zero_grad(set_to_none=True)
    with weights_frozen(model.discriminator_parameters()):
        g_total, _ = model.generator_loss(fake, code, classes)
        g_total.backward()
    assert all(p.grad is None for p in model.discriminator_parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.main_parameters())


@pytest.mark.parametrize("autocast", [False, True])
def test_train_step_updates_both_players_and_logs(autocast):
    model = _model()
    opts = model.configure_optimizers(1e-3)
    assert set(opts) == {"main", "disc"}
    flat = lambda ps: torch.cat([p.detach().flatten().clone() for p in ps])  # noqa: E731
    g0, d0 = flat(model.main_parameters()), flat(model.discriminator_parameters())
    out = model.train_step(_real(), 0, opts, autocast=autocast)
    assert torch.isfinite(out.loss) and out.loss.dtype == torch.float32
    assert {"d_loss", "g_loss", "info_loss", "mi", "mi_cat", "q_acc", "q_mse", "d_real", "d_fake", "loss"} <= set(out.terms)
    assert not torch.equal(g0, flat(model.main_parameters())) and not torch.equal(d0, flat(model.discriminator_parameters()))
    assert all(p.requires_grad for p in model.parameters())  # the G step's freeze is undone


def test_loss_without_update_reports_every_term():
    model = _model().eval()
    with torch.no_grad():
        out = model.loss(_real(), step=0)
    assert out.kl_per_latent is None and {"d_loss", "g_loss", "info_loss", "mi", "recon", "loss"} <= set(out.terms)
    assert out.terms["mi"].item() == pytest.approx(model.code_entropy() - out.terms["info_loss"].item(), abs=1e-4)


def test_mi_term_falls_and_q_recovers_the_code_on_a_tiny_run():
    # 8×8 MLP players; λ = 10 puts the weight on the MI term, which is what this test is about.
    shape = (1, 8, 8)
    model = _model(shape, arch="mlp", hidden=64, infogan_noise_dim=2, infogan_lambda=10.0, disc_lr=1e-3)
    opts = model.configure_optimizers(1e-3)
    info, mi = [], []
    for step in range(400):
        terms = model.train_step(_real(32, shape, seed=step), step, opts).terms
        info.append(terms["info_loss"].item())
        mi.append(terms["mi"].item())
    assert np.mean(info[-30:]) < 0.75 * np.mean(info[:30])
    assert np.mean(mi[-30:]) > np.mean(mi[:30]) + 1.0  # the bound on I(c; G(noise, c)) rises (nats)
    model.eval()
    with torch.no_grad():
        code, classes = model.sample_code(512, "cpu")
        got = model.encode(torch.sigmoid(model.generate(code, torch.randn(512, 2))))[0]
    assert (got[:, :3].argmax(1) == classes).float().mean() > 0.9  # the class of the fakes, read back by Q
    assert ((got[:, 3:] - code[:, 3:]) ** 2).mean() < 0.2  # chance: 1/3 (the variance of U(-1, 1))


@pytest.mark.parametrize("kw, key", [
    (dict(infogan_categories=1), "model.infogan_categories"),
    (dict(infogan_categories=-2), "model.infogan_categories"),
    (dict(infogan_noise_dim=-1), "model.infogan_noise_dim"),
    (dict(infogan_lambda=-0.5), "model.infogan_lambda"),
    (dict(latent_dim=2, infogan_categories=3), "model.latent_dim"),
])
def test_config_errors_name_the_key(kw, key):
    with pytest.raises(ValueError, match=key) as e:
        ModelConfig(family="infogan", **kw)
    assert "\n" not in str(e.value)


def test_save_load_round_trip_and_frozen_in_the_wrappers(tmp_path):
    model = _model()
    model.train_step(_real(), 0, model.configure_optimizers(1e-3))
    save_checkpoint(tmp_path / "checkpoint.pt", model, 1)
    loaded = vision.load(tmp_path, device="cpu")
    assert isinstance(loaded, InfoGAN) and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    state = model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())
    x = _real(4)
    with torch.no_grad():
        assert torch.equal(loaded.encode(x)[0], model.eval().encode(x)[0])  # eval: no power iteration, deterministic
    encoder = FrozenEncoder(tmp_path, device="cpu")
    frames = (x.permute(0, 2, 3, 1) * 255).to(torch.uint8).numpy()
    latents = encoder(frames)
    assert latents.shape == (4, 5) and latents.dtype == np.float32
    torch.testing.assert_close(torch.from_numpy(latents), loaded.encode(x)[0])  # identity statistics until fitted
    with pytest.raises(ValueError, match="mean\\+logvar"):
        FrozenEncoder(tmp_path, latent="mean+logvar", device="cpu")


def test_vision_extractor_reads_q_code():
    import gymnasium as gym

    from agents.extractors import VisionExtractor

    cfg = ModelConfig(family="infogan", latent_dim=5)
    ex = VisionExtractor(gym.spaces.Box(0, 1, SHAPE, np.float32), cfg, SHAPE)
    assert ex(_real(2)).shape == (2, 5)
    assert any(k.startswith("q.") for k in ex.encoder_state())  # DARLA_FT fine-tunes (and loads) Q with the trunk


def test_cli_runs_scores_and_resumes(tmp_path):
    run = tmp_path / "run"
    args = ["--no-progress", "--config", "configs/dsprites/infogan.yaml", f"run.dir={run}", *TINY]
    assert main([*args, "train.steps=20", "eval.metrics=[mig]", "eval.num_points=300"]) == 0
    first = json.loads((run / "stage1.json").read_text())
    assert first["family"] == "infogan" and first["step"] == 20 and "kl_per_latent" not in first
    assert {"d_loss", "g_loss", "info_loss", "mi", "q_acc"} <= set(first["terms"])
    assert "mig" in json.loads((run / "metrics.json").read_text())
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert (run / "reconstructions.png").exists() and (run / "traversals.png").exists()
    assert main([*args, "train.steps=24"]) == 0
    second = json.loads((run / "stage1.json").read_text())
    assert second["resumed_from"] == 20 and second["step"] == 24
    assert vision.load(run, device="cpu").latent_std.ne(1).any()  # latent statistics fitted at the end


def test_cli_bad_config_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    rc = main(["--no-progress", "--config", "configs/dsprites/infogan.yaml", f"run.dir={run}", *TINY,
               "model.infogan_categories=1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "model.infogan_categories" in err and len(err.splitlines()) == 1
    assert not run.exists()


@pytest.mark.slow
def test_dsprites_categorical_code_is_taken_up():
    """500 steps of the dSprites config's model (batch 64, ~1 min on one core): Q reads G's class back, the game
    stays balanced, and the fakes are sprite-like (mostly background)."""
    from vision.data.dsprites import DSprites
    from vision.images import to_tensor

    ds = DSprites()
    frames = ds.render(ds.sample_factors(4096, np.random.default_rng(0)))
    model = _model(latent_dim=8, disc_lr=2e-4).to(memory_format=torch.channels_last)
    opts = model.configure_optimizers(2e-4)
    g = torch.Generator().manual_seed(0)
    terms = []
    for step in range(500):
        x = to_tensor(frames[torch.randint(len(frames), (64,), generator=g).numpy()], memory_format=torch.channels_last)
        terms.append({k: v.item() for k, v in model.train_step(x, step, opts, autocast=True).terms.items()})
    last = {k: np.mean([t[k] for t in terms[-50:]]) for k in terms[-1]}
    assert last["q_acc"] > 0.9 and last["mi_cat"] > 0.9  # log 3 = 1.10 at most
    assert last["q_mse"] < 0.3 and 0.05 < last["d_fake"] < 0.8 and last["d_real"] < 0.99  # D has not won outright
    model.eval()
    with torch.no_grad():
        fake = torch.sigmoid(model.generate(model.sample_code(64, "cpu")[0], torch.randn(64, 5)))
    assert 0.005 < fake.mean().item() < 0.2
