"""The VAE base class every vision model derives from, and its typed configuration.

A model variant is a small subclass that overrides one hook:

* :meth:`VAEBase.reconstruction` — per-sample reconstruction loss (β-VAE_DAE measures it in DAE feature space);
* :meth:`VAEBase.regularizer`    — the term added to it (β·KL, γ·|KL−C|, TC penalties, DIP moments, …);
* :meth:`VAEBase.corrupt`        — input corruption before encoding (the DAE's occlusion masks);
* :meth:`VAEBase.train_step`     — only for models with a second player (FactorVAE's discriminator).

Inputs are float tensors (N, C, H, W) in [0, 1] (see :mod:`vision.images`).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Sequence

import torch
from torch import nn

from vision.images import foreground_mask
from vision.losses import LIKELIHOODS, gaussian_kl, reconstruction_loss
from vision.nets import DECODERS, make_decoder, make_encoder


@dataclass
class ModelConfig:
    """Hyper-parameters of every model family; each family reads the fields it needs."""

    family: str = "beta_vae"
    arch: str = "conv64"  # conv64 | mlp
    decoder: str = "deconv"  # conv64 decoder body: deconv (Burgess) | broadcast (spatial broadcast, Watters et al.)
    decoder_channels: int = 32  # width of the broadcast decoder's convolutions
    decoder_grid: int = 16  # side of the broadcast decoder's map: 16 | 32 | 64 (Watters' full resolution)
    latent_dim: int = 10
    hidden: int = 256
    likelihood: str = "bernoulli"  # bernoulli | gaussian
    # β-VAE (Higgins): KL weight. With beta_norm=True, `beta` is the seeds' β_norm = β·M/N (M latents, N input dims).
    beta: float = 4.0
    beta_norm: bool = False
    # Optional β schedule: β moves linearly from beta_start to beta over the first beta_steps steps (0: constant β).
    beta_start: float = 0.0
    beta_steps: int = 0
    # AnnealedVAE (Burgess): capacity_weight·|KL − C|, C rising linearly c_min → c_max over c_steps.
    capacity_weight: float = 1000.0
    c_min: float = 0.0
    c_max: float = 25.0
    c_steps: int = 100_000
    # FactorVAE (Kim & Mnih): VAE + factor_gamma·TC (density-ratio trick), MLP discriminator.
    factor_gamma: float = 35.0
    disc_hidden: int = 1000
    disc_layers: int = 6
    disc_lr: float = 1e-4
    # β-TCVAE (Chen et al.): alpha·MI + beta·TC + gamma_kl·dimension-wise KL; estimator mws | mss.
    tc_estimator: str = "mss"
    alpha: float = 1.0
    gamma_kl: float = 1.0
    # DIP-VAE (Kumar et al.): type i | ii; off-diagonal and diagonal weights.
    dip_type: str = "ii"
    lambda_od: float = 10.0
    lambda_d: float = 10.0
    # DAE: random rectangular zero-masks; each covers a fraction of the side drawn from [mask_min, mask_max].
    num_masks: int = 1
    mask_min: float = 0.2
    mask_max: float = 0.5
    # β-VAE_DAE (DARLA): path to a trained DAE run directory or checkpoint, and the feature layer J.
    dae_checkpoint: str = ""
    dae_layer: str = "bottleneck"  # bottleneck | conv1..conv4 | fc | recon
    # Foreground target: with foreground_weight > 0 the decoder also predicts each frame's foreground mask
    # (vision.images.foreground_mask at foreground_threshold) in an extra channel, a Bernoulli term of that weight
    # added to the reconstruction, so that a sprite costs its area whatever its colour contrast.
    foreground_weight: float = 0.0
    foreground_threshold: float = 0.1
    # DC-IGN (Kulkarni et al.): each factor with more than one value (or each one named in dcign_factors, in that
    # order) owns dcign_latents_per_factor consecutive latents; the remaining latents are the rest group, which
    # explains the factors not named (drawn in rest batches, dcign_rest_weight times as often as each factor's).
    # Clamped units get the gradient dcign_clamp_weight·(z − batch mean).
    dcign_latents_per_factor: int = 1
    dcign_factors: list[str] = field(default_factory=list)
    dcign_rest_weight: float = 1.0
    dcign_clamp_weight: float = 1.0
    # InfoGAN (Chen et al.): the code is infogan_categories class probabilities + (latent_dim − infogan_categories)
    # continuous codes; G also takes infogan_noise_dim noise inputs; infogan_lambda weighs the MI term. D/Q use disc_lr.
    infogan_categories: int = 3
    infogan_noise_dim: int = 5
    infogan_lambda: float = 1.0

    def __post_init__(self) -> None:
        if self.latent_dim < 1:
            raise ValueError(f"model.latent_dim: must be >= 1, got {self.latent_dim}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"model.likelihood: unknown {self.likelihood!r}; choose from {LIKELIHOODS}")
        if self.arch not in ("conv64", "mlp"):
            raise ValueError(f"model.arch: unknown {self.arch!r}; choose 'conv64' or 'mlp'")
        if self.decoder not in DECODERS:
            raise ValueError(f"model.decoder: unknown {self.decoder!r}; choose from {DECODERS}")
        if self.decoder_channels < 1:
            raise ValueError(f"model.decoder_channels: must be >= 1, got {self.decoder_channels}")
        if self.decoder_grid not in (16, 32, 64):
            raise ValueError(f"model.decoder_grid: must be 16, 32 or 64, got {self.decoder_grid}")
        if self.decoder != "deconv" and self.arch != "conv64":
            raise ValueError(f"model.decoder: {self.decoder!r} needs model.arch=conv64, got {self.arch!r}")
        if self.beta < 0:
            raise ValueError(f"model.beta: must be >= 0, got {self.beta}")
        if self.beta_steps < 0 or self.beta_start < 0:
            raise ValueError(f"model.beta_steps/beta_start: must be >= 0, got {self.beta_steps}, {self.beta_start}")
        if self.tc_estimator not in ("mws", "mss"):
            raise ValueError(f"model.tc_estimator: unknown {self.tc_estimator!r}; choose 'mws' or 'mss'")
        if self.dip_type not in ("i", "ii"):
            raise ValueError(f"model.dip_type: unknown {self.dip_type!r}; choose 'i' or 'ii'")
        if not 0 < self.mask_min <= self.mask_max <= 1:
            raise ValueError(f"model.mask_min/mask_max: need 0 < mask_min <= mask_max <= 1, got {self.mask_min}, {self.mask_max}")
        if self.foreground_weight < 0:
            raise ValueError(f"model.foreground_weight: must be >= 0, got {self.foreground_weight}")
        if self.foreground_threshold <= 0:
            raise ValueError(f"model.foreground_threshold: must be > 0, got {self.foreground_threshold}")
        if self.foreground_weight > 0 and self.family in ("dc_ign", "infogan"):
            raise ValueError(f"model.foreground_weight: {self.family} has its own objective; the foreground target "
                             "applies to the autoencoder families only")
        if self.c_steps < 1:
            raise ValueError(f"model.c_steps: must be >= 1, got {self.c_steps}")
        if self.dcign_latents_per_factor < 1:
            raise ValueError(f"model.dcign_latents_per_factor: must be >= 1, got {self.dcign_latents_per_factor}")
        if len(set(self.dcign_factors)) != len(self.dcign_factors):
            raise ValueError(f"model.dcign_factors: names a factor twice: {list(self.dcign_factors)}")
        for name in ("dcign_rest_weight", "dcign_clamp_weight", "infogan_lambda"):
            if getattr(self, name) < 0:
                raise ValueError(f"model.{name}: must be >= 0, got {getattr(self, name)}")
        if self.infogan_categories < 0 or self.infogan_categories == 1:
            raise ValueError(f"model.infogan_categories: must be 0 (no categorical code) or >= 2, got {self.infogan_categories}")
        if self.infogan_noise_dim < 0:
            raise ValueError(f"model.infogan_noise_dim: must be >= 0, got {self.infogan_noise_dim}")
        if self.family == "infogan" and self.latent_dim < self.infogan_categories:
            raise ValueError(f"model.latent_dim: infogan's code holds the infogan_categories={self.infogan_categories} "
                             f"class probabilities, so it needs latent_dim >= {self.infogan_categories}, got {self.latent_dim}")


def adam(params: list[nn.Parameter], lr: float, **kwargs: Any) -> torch.optim.Adam:
    """Adam with the fused kernel (one kernel for all parameters: measurably faster on CPU and CUDA)."""
    return torch.optim.Adam(params, lr=lr, fused=True, **kwargs)


def backward_step(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler: "torch.amp.GradScaler | None" = None,
                  update_scaler: bool = True) -> None:
    """Zero ``opt``'s gradients, back-propagate ``loss`` (scaled when a CUDA fp16 ``scaler`` is given) and step.

    Models with two players step twice per batch and update the scaler only after the last step."""
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        opt.step()
        return
    scaler.scale(loss).backward()
    scaler.step(opt)
    if update_scaler:
        scaler.update()


@contextmanager
def weights_frozen(params: list[nn.Parameter]) -> Iterator[None]:
    """Within the block, ``params`` get no gradient: a player's step back-propagates through the other player's
    network into its input without computing (or accumulating) gradients for that network's own weights."""
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)


@dataclass
class LossOutput:
    """What one loss evaluation returns: the scalar to minimise and detached scalars to log."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    kl_per_latent: torch.Tensor | None = None  # (D,), batch mean
    z: torch.Tensor | None = None  # sampled codes, for models with a second player


class VAEBase(nn.Module):
    """Encoder → (μ, log σ²) → reparameterised z → decoder, with overridable loss hooks."""

    family: ClassVar[str] = "base"
    stochastic: ClassVar[bool] = True  # False for deterministic autoencoders (AE, DAE)

    def __init__(self, cfg: ModelConfig, input_shape: Sequence[int], dataset_size: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.input_shape = tuple(int(s) for s in input_shape)
        self.latent_dim = cfg.latent_dim
        self.dataset_size = int(dataset_size)  # N of the training set; TC estimators need it
        out = 2 * cfg.latent_dim if self.stochastic else cfg.latent_dim
        self.encoder = make_encoder(cfg.arch, self.input_shape, out, cfg.hidden)
        # the foreground target adds one output channel after the image's
        out_shape = (self.input_shape[0] + (cfg.foreground_weight > 0), *self.input_shape[1:])
        self.decoder = make_decoder(cfg.arch, cfg.latent_dim, out_shape, cfg.hidden, cfg.decoder,
                                    cfg.decoder_channels, cfg.decoder_grid)
        # Per-latent mean and sd of μ over the training frames, fitted once training ends (fit_latent_stats).
        # Policies read standardised μ: a β-VAE's informative but low-variance latents (sd ~0.02 beside an
        # sd-1 one) otherwise look constant to an MLP. Identity until fitted.
        self.register_buffer("latent_mean", torch.zeros(cfg.latent_dim))
        self.register_buffer("latent_std", torch.ones(cfg.latent_dim))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        # Checkpoints written before the latent statistics existed load with the identity standardisation.
        state_dict.setdefault(prefix + "latent_mean", torch.zeros(self.latent_dim))
        state_dict.setdefault(prefix + "latent_std", torch.ones(self.latent_dim))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ----- inference -------------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, C, H, W) in [0, 1] -> (μ, log σ²), each (N, D). Deterministic models return log σ² = 0."""
        h = self.encoder(x)
        if not self.stochastic:
            return h, torch.zeros_like(h)
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar

    def standardize(self, mu: torch.Tensor) -> torch.Tensor:
        """μ (or a sample z) in units of the training-set statistics: (μ − mean) / sd, per latent."""
        return (mu - self.latent_mean) / self.latent_std

    @torch.no_grad()
    def fit_latent_stats(self, images: torch.Tensor, batch_size: int = 256) -> None:
        """Set ``latent_mean``/``latent_std`` from μ over ``images`` (N, C, H, W) in [0, 1]; sd floored at 1e-6."""
        was_training = self.training
        self.eval()
        mu = torch.cat([self.encode(images[i:i + batch_size])[0] for i in range(0, len(images), batch_size)])
        self.latent_mean.copy_(mu.mean(0))
        self.latent_std.copy_(mu.std(0).clamp_min(1e-6) if len(mu) > 1 else torch.ones_like(self.latent_std))
        self.train(was_training)

    def sample(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Reparameterised sample in training mode; the mean otherwise (and always for deterministic models)."""
        if not (self.stochastic and self.training):
            return mu
        return mu + torch.randn_like(mu) * (0.5 * logvar).exp()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (N, D) -> image logits (N, C, H, W)."""
        return self.decoder(z)[:, :self.input_shape[0]]

    def render(self, z: torch.Tensor) -> torch.Tensor:
        """The image in [0, 1] a person should see for latents z: the decoder's mean. Models whose decoder is not
        trained to match pixels override it (β-VAE_DAE)."""
        return torch.sigmoid(self.decode(z))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Mean reconstruction in [0, 1] from the posterior mean, as :meth:`render` shows it."""
        mu, _ = self.encode(x)
        return self.render(mu)

    # ----- hooks -----------------------------------------------------------------------------------------
    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        """Input corruption before encoding; identity except for denoising models."""
        return x

    def reconstruction(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Per-sample reconstruction loss (N,) under the configured likelihood."""
        return reconstruction_loss(x, logits, self.cfg.likelihood)

    def regularizer(
        self, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor, kl: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Scalar added to the mean reconstruction loss, and the family's own logged terms.

        ``kl`` is the closed-form KL per sample and latent (N, D). The base adds nothing (a plain autoencoder).
        """
        return mu.new_zeros(()), {}

    # ----- training --------------------------------------------------------------------------------------
    def loss(self, x: torch.Tensor, step: int = 0) -> LossOutput:
        """Full objective on a batch: mean reconstruction + regularizer, with every term reported."""
        mu, logvar = self.encode(self.corrupt(x))
        z = self.sample(mu, logvar)
        out = self.decoder(z)
        c = self.input_shape[0]
        recon = self.reconstruction(x, out[:, :c]).mean()
        fg_terms = {}
        if self.cfg.foreground_weight > 0:
            fg = reconstruction_loss(foreground_mask(x, self.cfg.foreground_threshold), out[:, c:], "bernoulli").mean()
            fg_terms["foreground"] = fg.detach()
            recon = recon + self.cfg.foreground_weight * fg
        # float32 whatever the autocast dtype: the KL is a small difference of large terms
        kl = gaussian_kl(mu.float(), logvar.float()) if self.stochastic else torch.zeros_like(mu, dtype=torch.float32)
        reg, terms = self.regularizer(mu, logvar, z, kl, step)
        kl_per_latent = kl.mean(0)
        all_terms = {"recon": recon.detach(), "kl": kl_per_latent.sum().detach(), **fg_terms,
                     **{k: v.detach() for k, v in terms.items()}}
        loss = recon + reg
        all_terms["loss"] = loss.detach()
        return LossOutput(loss=loss, terms=all_terms, kl_per_latent=kl_per_latent.detach(), z=z)

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        """Optimizers by name; "main" updates the autoencoder. Models with a second player add theirs."""
        return {"main": adam(self.main_parameters(), lr)}

    def main_parameters(self) -> list[nn.Parameter]:
        """Parameters the main optimizer updates (the autoencoder's, excluding frozen or adversary modules)."""
        return [p for n, p in self.named_parameters() if p.requires_grad and not n.startswith(self.aux_prefixes())]

    def aux_prefixes(self) -> tuple[str, ...]:
        """Name prefixes of submodules that the main optimizer must not touch (discriminators, frozen nets)."""
        return ()

    def train_step(
        self,
        x: torch.Tensor,
        step: int,
        optimizers: dict[str, torch.optim.Optimizer],
        scaler: "torch.amp.GradScaler | None" = None,
        autocast: bool = False,
    ) -> LossOutput:
        """One optimisation step on batch ``x``; returns the evaluated loss. Override for adversarial models."""
        with torch.autocast(device_type=x.device.type, enabled=autocast):
            out = self.loss(x, step)
        backward_step(out.loss, optimizers["main"], scaler)
        return out

    def extra_state(self) -> dict[str, Any]:
        """Anything beyond parameters a checkpoint must keep (none by default)."""
        return {}
