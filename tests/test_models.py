"""The VAE family: every family's loss terms and training step, and each family's own mechanics."""
import math

import pytest
import torch

import vision
from vision.checkpoint import save_checkpoint
from vision.models import (
    DAE,
    MODEL_FAMILIES,
    AnnealedVAE,
    BetaTCVAE,
    BetaVAE,
    BetaVAE_DAE,
    DIPVAE,
    FactorVAE,
    ModelConfig,
    build_model,
)
from vision.models.dae import DAE_LAYERS, occlusion_masks
from vision.models.dip_vae import covariance
from vision.models.factor_vae import permute_dims

SHAPE = (1, 64, 64)
N_DATA = 1000
FAMILY_TERMS = {
    "ae": set(),
    "vae": {"beta"},
    "beta_vae": {"beta"},
    "annealed_vae": {"C"},
    "factor_vae": {"tc"},
    "beta_tcvae": {"mi", "tc", "dwkl"},
    "dip_vae": {"dip", "dip_offdiag", "dip_diag"},
    "dae": set(),
    "beta_vae_dae": {"beta"},
    "dc_ign": {"beta"},
}
GAN_FAMILIES = {"infogan"}  # no encoder KL or reconstruction loss: tests/test_infogan.py covers it
TRAIN_TERMS = {"factor_vae": {"disc_loss", "disc_acc"}}


def _cfg(family, **kw):
    kw.setdefault("latent_dim", 4)
    return ModelConfig(family=family, disc_hidden=32, disc_layers=2, **kw)


def _dae(**kw):
    torch.manual_seed(1)
    return DAE(_cfg("dae", latent_dim=6, **kw), SHAPE)


def _model(family, **kw):
    torch.manual_seed(0)
    if family == "beta_vae_dae":
        return BetaVAE_DAE(_cfg(family, **kw), SHAPE, N_DATA, dae=_dae())
    return build_model(_cfg(family, **kw), SHAPE, N_DATA)


def _batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, *SHAPE, generator=g) > 0.7).float()


def _flat(params):
    return torch.cat([p.detach().flatten().clone() for p in params])


def test_every_family_is_registered():
    assert set(MODEL_FAMILIES) == set(FAMILY_TERMS) | GAN_FAMILIES
    for name, cls in MODEL_FAMILIES.items():
        assert cls.family == name


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("family", sorted(FAMILY_TERMS))
def test_loss_runs_backward_and_reports_terms(family, likelihood):
    model = _model(family, likelihood=likelihood)
    out = model.loss(_batch(), step=3)
    assert {"recon", "kl", "loss"} | FAMILY_TERMS[family] <= set(out.terms)
    assert out.kl_per_latent is not None and out.kl_per_latent.shape == (4,)
    assert out.terms["kl"].item() == pytest.approx(out.kl_per_latent.sum().item(), rel=1e-5, abs=1e-7)
    assert all(torch.isfinite(v).all() for v in out.terms.values())
    out.loss.backward()
    grads = [p.grad for p in model.main_parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("family", sorted(FAMILY_TERMS))
def test_train_step_changes_parameters(family):
    model = _model(family)
    opts = model.configure_optimizers(1e-3)
    before = _flat(model.main_parameters())
    for step in range(2):
        out = model.train_step(_batch(seed=step), step, opts)
        assert torch.isfinite(out.loss)
    assert not torch.equal(before, _flat(model.main_parameters()))
    assert {"recon", "kl", "loss"} | FAMILY_TERMS[family] | TRAIN_TERMS.get(family, set()) <= set(out.terms)


@pytest.mark.parametrize("family", sorted(FAMILY_TERMS))
def test_train_step_under_autocast(family):
    # CPU autocast (bfloat16) walks the same mixed-precision paths as CUDA AMP; the loss stays float32.
    model = _model(family)
    out = model.train_step(_batch(), 0, model.configure_optimizers(1e-3), autocast=True)
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)


def test_deterministic_families_have_no_kl():
    for family in ("ae", "dae"):
        model = _model(family).train()
        mu, logvar = model.encode(_batch())
        assert torch.equal(logvar, torch.zeros_like(logvar))
        assert torch.equal(model.sample(mu, logvar), mu)
        assert model.loss(_batch()).terms["kl"].item() == 0.0


# ----- β-VAE ----------------------------------------------------------------------------------------------
def test_beta_norm_converts_to_kl_weight():
    # β_norm = β·M/N  ⇔  β = β_norm·N/M (M latents, N input dimensions)
    model = BetaVAE(ModelConfig(family="beta_vae", latent_dim=10, beta=0.5, beta_norm=True), SHAPE)
    assert model.kl_weight == pytest.approx(0.5 * 64 * 64 / 10)
    assert BetaVAE(ModelConfig(family="beta_vae", latent_dim=10, beta=0.5), SHAPE).kl_weight == 0.5
    assert build_model(ModelConfig(family="vae", beta=8.0, beta_norm=True), SHAPE).kl_weight == 1.0
    out = model.loss(_batch())
    assert out.terms["loss"].item() == pytest.approx(
        out.terms["recon"].item() + model.kl_weight * out.terms["kl"].item(), rel=1e-5
    )


def test_beta_schedule_moves_linearly_then_holds():
    model = BetaVAE(ModelConfig(family="beta_vae", beta=4.0, beta_start=16.0, beta_steps=100), SHAPE)
    assert [model.kl_weight_at(s) for s in (0, 50, 100, 1000)] == pytest.approx([16.0, 10.0, 4.0, 4.0])
    x = _batch()
    torch.manual_seed(0)
    early = model.loss(x, step=0)
    assert early.terms["beta"].item() == pytest.approx(16.0)
    assert early.terms["loss"].item() == pytest.approx(
        early.terms["recon"].item() + 16.0 * early.terms["kl"].item(), rel=1e-5)
    # no schedule: the configured β at every step; the plain VAE ignores the schedule
    assert BetaVAE(ModelConfig(family="beta_vae", beta=4.0), SHAPE).kl_weight_at(0) == 4.0
    assert build_model(ModelConfig(family="vae", beta_start=16.0, beta_steps=100), SHAPE).kl_weight_at(0) == 1.0
    with pytest.raises(ValueError, match="model.beta_steps"):
        ModelConfig(beta_steps=-1)


# ----- AnnealedVAE ----------------------------------------------------------------------------------------
def test_annealed_capacity_schedule():
    model = AnnealedVAE(ModelConfig(family="annealed_vae", c_min=0.5, c_max=25.0, c_steps=1000), SHAPE)
    assert model.capacity(0) == 0.5
    assert model.capacity(500) == pytest.approx(0.5 + 24.5 / 2)
    assert model.capacity(1000) == 25.0
    assert model.capacity(10_000) == 25.0


def test_annealed_loss_is_weighted_distance_to_capacity():
    model = AnnealedVAE(_cfg("annealed_vae", capacity_weight=100.0, c_max=10.0, c_steps=10), SHAPE)
    out = model.loss(_batch(), step=5)
    assert out.terms["C"].item() == pytest.approx(5.0)
    expected = out.terms["recon"] + 100.0 * (out.terms["kl"] - 5.0).abs()
    assert out.terms["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


# ----- β-TCVAE --------------------------------------------------------------------------------------------
def test_beta_tcvae_needs_dataset_size():
    model = BetaTCVAE(_cfg("beta_tcvae"), SHAPE, dataset_size=0)
    with pytest.raises(ValueError, match="dataset_size"):
        model.loss(_batch())


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_beta_tcvae_weights_its_terms(estimator):
    model = _model("beta_tcvae", alpha=2.0, beta=6.0, gamma_kl=0.5, tc_estimator=estimator)
    t = model.loss(_batch()).terms
    expected = t["recon"] + 2.0 * t["mi"] + 6.0 * t["tc"] + 0.5 * t["dwkl"]
    assert t["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


# ----- DIP-VAE --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dip_type", ["i", "ii"])
def test_dip_penalty_matches_definition(dip_type):
    model = _model("dip_vae", dip_type=dip_type, lambda_od=3.0, lambda_d=7.0)
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(64, 4, generator=g) @ torch.randn(4, 4, generator=g)  # correlated means
    logvar = torch.randn(64, 4, generator=g)
    cov = torch.cov(mu.T, correction=0)
    if dip_type == "ii":
        cov = cov + torch.diag(logvar.exp().mean(0))
    off = (cov - torch.diag(cov.diagonal())).pow(2).sum()
    on = (cov.diagonal() - 1).pow(2).sum()
    kl = torch.rand(64, 4)
    reg, t = model.regularizer(mu, logvar, mu, kl, 0)
    assert t["dip_offdiag"].item() == pytest.approx(off.item(), rel=1e-4)
    assert t["dip_diag"].item() == pytest.approx(on.item(), rel=1e-4)
    assert reg.item() == pytest.approx((kl.sum(1).mean() + 3.0 * off + 7.0 * on).item(), rel=1e-4)
    out = model.loss(_batch())
    assert out.terms["loss"].item() == pytest.approx((out.terms["recon"] + out.terms["kl"] + out.terms["dip"]).item(), rel=1e-5)


def test_covariance_is_population_covariance():
    x = torch.randn(50, 3)
    assert torch.allclose(covariance(x), torch.cov(x.T, correction=0), atol=1e-6)


# ----- FactorVAE ------------------------------------------------------------------------------------------
def test_permute_dims_shuffles_each_dimension_independently():
    torch.manual_seed(0)
    z = torch.arange(200.0).view(100, 2) * torch.tensor([1.0, -1.0])
    p = permute_dims(z)
    for j in range(2):
        assert torch.equal(p[:, j].sort().values, z[:, j].sort().values)
    assert not torch.equal(p, z)
    # the two dimensions use different permutations: original row pairs are broken up
    assert not torch.equal(p[:, 0].abs(), p[:, 1].abs())


class _Recording(torch.optim.Adam):
    """Adam that snapshots the encoder's gradients whenever it steps."""

    def __init__(self, params, encoder, log, name, **kw):
        super().__init__(params, **kw)
        self._encoder, self._log, self._name = encoder, log, name

    def step(self, closure=None):
        self._log[self._name] = [None if p.grad is None else p.grad.clone() for p in self._encoder.parameters()]
        return super().step(closure)


def test_factor_vae_discriminator_never_reaches_the_encoder():
    model = _model("factor_vae")
    disc_ids = {id(p) for p in model.discriminator.parameters()}
    opts = model.configure_optimizers(1e-3)
    assert not any(id(p) in disc_ids for g in opts["main"].param_groups for p in g["params"])
    assert opts["disc"].defaults["betas"] == (0.5, 0.9)

    # Autograd: the discriminator loss has no path to encoder parameters.
    out = model.loss(_batch())
    d_loss, _ = model.discriminator_loss(out.z)
    grads = torch.autograd.grad(d_loss, list(model.encoder.parameters()), allow_unused=True)
    assert all(g is None for g in grads)

    # In a full step, the encoder's .grad seen by the discriminator step is exactly the VAE step's.
    log: dict = {}
    rec = {
        "main": _Recording(model.main_parameters(), model.encoder, log, "main", lr=1e-3),
        "disc": _Recording(model.discriminator.parameters(), model.encoder, log, "disc", lr=1e-4, betas=(0.5, 0.9)),
    }
    disc_before = _flat(model.discriminator.parameters())
    for step in range(4):  # several steps: no in-place autograd error
        out = model.train_step(_batch(seed=step), step, rec)
        assert all(torch.equal(a, b) for a, b in zip(log["main"], log["disc"]))
        assert 0.0 <= out.terms["disc_acc"].item() <= 1.0 and math.isfinite(out.terms["disc_loss"].item())
    assert not torch.equal(disc_before, _flat(model.discriminator.parameters()))


def test_factor_vae_tc_is_logit_difference():
    model = _model("factor_vae", factor_gamma=10.0).eval()
    x = _batch()
    out = model.loss(x)
    logits = model.discriminator(model.encode(x)[0])
    assert out.terms["tc"].item() == pytest.approx((logits[:, 0] - logits[:, 1]).mean().item(), rel=1e-5, abs=1e-6)
    assert out.terms["loss"].item() == pytest.approx((out.terms["recon"] + out.terms["kl"] + 10.0 * out.terms["tc"]).item(), rel=1e-5)


def test_factor_vae_rejects_single_sample_batches():
    model = _model("factor_vae")
    with pytest.raises(ValueError, match="batch_size"):
        model.train_step(_batch(1), 0, model.configure_optimizers(1e-3))


# ----- DAE ------------------------------------------------------------------------------------------------
def _is_rectangle(zero: torch.Tensor) -> tuple[int, int] | None:
    rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
    h, w = len(rows), len(cols)
    contiguous = rows[-1] - rows[0] + 1 == h and cols[-1] - cols[0] + 1 == w
    return (h, w) if contiguous and int(zero.sum()) == h * w else None


def test_dae_masks_one_rectangle_in_training_mode_only():
    model = _dae(num_masks=1, mask_min=0.25, mask_max=0.5)
    x = torch.ones(16, *SHAPE)
    model.train()
    corrupted = model.corrupt(x)
    for img in corrupted[:, 0]:
        hw = _is_rectangle(img == 0)
        assert hw is not None and all(16 <= s <= 32 for s in hw)
    assert set(corrupted.unique().tolist()) == {0.0, 1.0}
    model.eval()
    assert torch.equal(model.corrupt(x), x)


def test_occlusion_masks_cover_all_channels_and_union_of_masks():
    torch.manual_seed(0)
    m = occlusion_masks((32, 64, 64), num_masks=3, mask_min=0.1, mask_max=0.2)
    assert m.shape == (32, 1, 64, 64) and m.dtype == torch.bool
    frac = m.float().mean().item()
    assert 0.01 < frac < 3 * 0.2**2
    dae = DAE(_cfg("dae", num_masks=2), (3, 64, 64)).train()
    out = dae.corrupt(torch.ones(4, 3, 64, 64))
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])


def test_dae_encodes_corrupted_input_and_reconstructs_clean_image():
    model = _dae().train()
    seen: dict = {}
    model.encoder.register_forward_pre_hook(lambda mod, args: seen.__setitem__("input", args[0].clone()))
    recon = model.reconstruction
    model.reconstruction = lambda x, logits: (seen.__setitem__("target", x.clone()), recon(x, logits))[1]
    x = torch.ones(4, *SHAPE)
    model.loss(x)
    assert (seen["input"] == 0).any() and torch.equal(seen["target"], x)


def test_dae_features_at_every_layer():
    model = _dae().eval()
    x = _batch(3)
    shapes = {"bottleneck": (3, 6), "conv1": (3, 32, 32, 32), "conv2": (3, 32, 16, 16), "conv3": (3, 64, 8, 8),
              "conv4": (3, 64, 4, 4), "fc": (3, 256), "recon": (3, *SHAPE)}
    assert set(shapes) == set(DAE_LAYERS)
    for layer, shape in shapes.items():
        assert model.features(x, layer).shape == shape
    assert torch.allclose(model.features(x, "recon"), model.reconstruct(x))
    with pytest.raises(ValueError, match="model.dae_layer"):
        model.features(x, "conv9")
    mlp = DAE(_cfg("dae", arch="mlp", hidden=16), SHAPE)
    assert mlp.features(x, "bottleneck").shape == (3, 4)
    with pytest.raises(ValueError, match="conv64"):
        mlp.features(x, "conv2")


# ----- β-VAE_DAE ------------------------------------------------------------------------------------------
@pytest.fixture
def dae_checkpoint(tmp_path):
    dae = _dae()
    path = save_checkpoint(tmp_path / "dae" / "checkpoint.pt", dae, step=7)
    return dae, path


def test_beta_vae_dae_loads_a_frozen_dae(dae_checkpoint):
    dae, path = dae_checkpoint
    model = build_model(_cfg("beta_vae_dae", dae_checkpoint=str(path.parent), dae_layer="conv2"), SHAPE, N_DATA)
    assert isinstance(model, BetaVAE_DAE) and model.dae_source["step"] == 7
    assert all(torch.equal(a, b) for a, b in zip(model.dae.state_dict().values(), dae.state_dict().values()))
    assert any(k.startswith("dae.") for k in model.state_dict())
    model.train()
    assert model.training and not model.dae.training
    assert not any(p.requires_grad for p in model.dae.parameters())
    opts = model.configure_optimizers(1e-3)
    dae_ids = {id(p) for p in model.dae.parameters()}
    assert not any(id(p) in dae_ids for g in opts["main"].param_groups for p in g["params"])
    before = _flat(model.dae.parameters())
    for step in range(3):
        model.train_step(_batch(seed=step), step, opts)
    assert torch.equal(before, _flat(model.dae.parameters())) and not model.dae.training


def test_beta_vae_dae_reconstruction_is_feature_distance(dae_checkpoint):
    _, path = dae_checkpoint
    model = build_model(_cfg("beta_vae_dae", dae_checkpoint=str(path), dae_layer="fc"), SHAPE, N_DATA).eval()
    x = _batch()
    logits = model.decode(model.encode(x)[0])
    expected = (model.dae.features(torch.sigmoid(logits), "fc") - model.dae.features(x, "fc")).pow(2).sum(1)
    assert torch.allclose(model.reconstruction(x, logits), expected, rtol=1e-5)


def test_beta_vae_dae_pictures_pass_through_the_dae(dae_checkpoint):
    _, path = dae_checkpoint
    model = build_model(_cfg("beta_vae_dae", dae_checkpoint=str(path)), SHAPE, N_DATA).eval()
    x = _batch()
    with torch.no_grad():
        raw = torch.sigmoid(model.decode(model.encode(x)[0]))
        assert torch.allclose(model.reconstruct(x), model.dae.reconstruct(raw))
    # a plain β-VAE shows its decoder's mean
    plain = build_model(_cfg("beta_vae"), SHAPE, N_DATA).eval()
    with torch.no_grad():
        assert torch.equal(plain.reconstruct(x), torch.sigmoid(plain.decode(plain.encode(x)[0])))


def test_beta_vae_dae_checkpoint_is_self_contained(dae_checkpoint, tmp_path):
    _, path = dae_checkpoint
    model = build_model(_cfg("beta_vae_dae", dae_checkpoint=str(path)), SHAPE, N_DATA)
    opts = model.configure_optimizers(1e-3)
    model.train_step(_batch(), 0, opts)
    saved = save_checkpoint(tmp_path / "bvd.pt", model, step=1, optimizers=opts)
    path.unlink()  # the DAE's own file is gone: its weights and config come from the β-VAE_DAE checkpoint
    loaded = vision.load(saved, device="cpu")
    assert isinstance(loaded, BetaVAE_DAE) and not loaded.dae.training
    model.eval()
    x = _batch(seed=3)
    assert torch.equal(model.encode(x)[0], loaded.encode(x)[0])
    assert torch.equal(model.dae.features(x, "bottleneck"), loaded.dae.features(x, "bottleneck"))
    assert loaded.dae_source["path"] == str(path)


def test_beta_vae_dae_errors_name_the_key(dae_checkpoint, tmp_path):
    _, path = dae_checkpoint
    with pytest.raises(ValueError, match="model.dae_checkpoint"):
        build_model(_cfg("beta_vae_dae"), SHAPE, N_DATA)
    with pytest.raises(ValueError, match="model.dae_checkpoint"):
        build_model(_cfg("beta_vae_dae", dae_checkpoint=str(tmp_path / "missing")), SHAPE, N_DATA)
    with pytest.raises(ValueError, match="model.dae_checkpoint.*64, 64"):
        build_model(_cfg("beta_vae_dae", dae_checkpoint=str(path)), (3, 64, 64), N_DATA)
    other = save_checkpoint(tmp_path / "bvae.pt", _model("beta_vae"), step=0)
    with pytest.raises(ValueError, match="model.dae_checkpoint.*not a 'dae'"):
        build_model(_cfg("beta_vae_dae", dae_checkpoint=str(other)), SHAPE, N_DATA)
    with pytest.raises(ValueError, match="model.dae_layer"):
        build_model(_cfg("beta_vae_dae", dae_checkpoint=str(path), dae_layer="pixels"), SHAPE, N_DATA)
    empty = build_model(_cfg("beta_vae_dae"), SHAPE, N_DATA, pretrained=False)
    with pytest.raises(RuntimeError, match="no DAE loaded"):
        empty.loss(_batch())


def test_broadcast_decoder_sees_position_through_coordinates():
    """The spatial-broadcast body: 64×64 output, coordinate channels fixed (not trained), and a shifted code is
    the only way its output can differ between two images (same code → same image, everywhere)."""
    from vision.nets import BroadcastDecoder

    dec = BroadcastDecoder(latent_dim=4, out_channels=3)
    z = torch.randn(5, 4)
    out = dec(z)
    assert out.shape == (5, 3, 64, 64)
    assert "coords" not in dict(dec.named_parameters()) and "coords" not in dec.state_dict()
    assert torch.equal(dec.coords[0, 0, 0], torch.linspace(-1, 1, 16))  # x varies along a row
    assert torch.equal(dec.coords[0, 1, :, 0], torch.linspace(-1, 1, 16))  # y down a column
    assert torch.allclose(dec(z[:1].expand(2, 4))[0], dec(z[:1].expand(2, 4))[1])
    model = build_model(_cfg("beta_vae", decoder="broadcast"), SHAPE)
    assert model.loss(torch.rand(4, *SHAPE)).loss.isfinite()


@pytest.mark.parametrize("grid", [16, 32, 64])
def test_broadcast_decoder_grids_reach_64_pixels(grid):
    """Every map size upsamples to the same 64×64 output; the default keeps the state-dict keys of earlier
    checkpoints (three map convolutions, then the two transposed convolutions at indices 6 and 8)."""
    from vision.nets import BroadcastDecoder

    dec = BroadcastDecoder(latent_dim=4, out_channels=3, grid=grid)
    assert dec(torch.randn(2, 4)).shape == (2, 3, 64, 64) and dec.coords.shape[-1] == grid
    keys = {k.split(".")[1] for k in dec.state_dict()}
    assert keys == {"16": {"0", "2", "4", "6", "8"}, "32": {"0", "2", "4", "6"}, "64": {"0", "2", "4", "6"}}[str(grid)]
    model = build_model(_cfg("beta_vae", decoder="broadcast", decoder_grid=grid), SHAPE)
    assert model.decoder.grid == grid and model.loss(torch.rand(2, *SHAPE)).loss.isfinite()


def test_decoder_option_errors_name_the_key():
    with pytest.raises(ValueError, match="model.decoder_grid: must be 16, 32 or 64, got 8"):
        ModelConfig(decoder="broadcast", decoder_grid=8)
    with pytest.raises(ValueError, match="model.decoder: unknown 'spatial'"):
        ModelConfig(decoder="spatial")
    with pytest.raises(ValueError, match="model.decoder: 'broadcast' needs model.arch=conv64"):
        ModelConfig(decoder="broadcast", arch="mlp")


def test_foreground_mask_marks_objects_by_area_not_contrast():
    from vision.images import foreground_mask

    x = torch.full((2, 3, 8, 8), 0.2)
    x[0, :, 1:3, 1:3] = 0.25  # faint square: half the threshold away from the background
    x[1, :, 4:7, 4:7] = 1.0  # bright square
    m = foreground_mask(x, threshold=0.1)
    assert m.shape == (2, 1, 8, 8)
    assert torch.allclose(m[0, 0, 1:3, 1:3], torch.full((2, 2), 0.5))
    assert torch.equal(m[1, 0, 4:7, 4:7], torch.ones(3, 3))  # clipped at 1, whatever the contrast
    assert m[0].sum().item() == pytest.approx(2.0) and m[1].sum().item() == 9.0  # the background (the median colour) is 0
    with pytest.raises(ValueError, match="foreground_threshold"):
        foreground_mask(x, threshold=0.0)


@pytest.mark.parametrize("family", ["dae", "beta_vae"])
def test_foreground_target_adds_a_mask_channel_and_term(family):
    x = torch.rand(4, 3, 64, 64)
    shape = (3, 64, 64)
    torch.manual_seed(0)
    plain = build_model(_cfg(family), shape, N_DATA)
    torch.manual_seed(0)
    fg = build_model(_cfg(family, foreground_weight=2.0), shape, N_DATA)
    z = torch.zeros(2, 4)
    assert fg.decoder(z).shape == (2, 4, 64, 64) and fg.decode(z).shape == (2, 3, 64, 64)  # images stay RGB
    assert fg.render(z).shape == (2, 3, 64, 64)
    plain.eval(), fg.eval()
    out = fg.loss(x)
    assert "foreground" in out.terms and "foreground" not in plain.loss(x).terms
    image_only = fg.reconstruction(x, fg.decode(fg.encode(x)[0])).mean()
    assert torch.allclose(out.terms["recon"], image_only + 2.0 * out.terms["foreground"], rtol=1e-5)


def test_foreground_target_errors_name_the_key():
    with pytest.raises(ValueError, match="model.foreground_weight"):
        ModelConfig(foreground_weight=-1.0)
    with pytest.raises(ValueError, match="model.foreground_weight"):
        ModelConfig(family="dc_ign", foreground_weight=1.0)
