"""InfoGAN (Chen et al. 2016): a GAN whose generator G(noise, c) must keep the code c recoverable from its images.

Players: the generator G (``decoder``), the discriminator D and the recognition head Q. D and Q share one trunk,
as in the paper: ``encoder`` = trunk + Q head (so everything :meth:`InfoGAN.encode` needs lives under
``encoder.*``, as for the VAE family), ``d_head`` reads the same trunk features.

The mutual-information term is the variational lower bound L_I = E[log Q(c|G(noise, c))] + H(c) ≤ I(c; G(noise, c)).
G and Q both minimise ``infogan_lambda``·(cross-entropy of the categorical code + Gaussian NLL of the continuous
codes) on generated images; D uses the non-saturating logistic GAN loss. Q(c_cont|x) is a factored Gaussian with
unit variance (the paper's reference setting), so the continuous NLL is ½(c − μ)² + const: a loose bound, but its
gradient into G stays on the scale of the categorical one. With learned variances the continuous term (∝ 1/σ²)
drowned the categorical code, which G then ignored on dSprites.

Stabilisation on dSprites (binary frames, ~97% background): every layer of D (trunk and D head) carries spectral
normalisation (Miyato et al. 2018), bounding D's Lipschitz constant; D's trunk uses LeakyReLU(0.2) so it keeps
passing G a gradient; G has batch normalisation after each hidden layer; both optimisers are Adam with β1 = 0.5.
Q's own head is not normalised. With the plain conv64 bodies instead (ReLU trunk, no normalisation in G), G fell to
blank frames within a few hundred steps and its saturated output never came back.
"""
from __future__ import annotations

import math
from typing import ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from vision.models.base import LossOutput, ModelConfig, VAEBase, adam, backward_step, weights_frozen
from vision.nets import CONV_CHANNELS, make_decoder, make_encoder

GAN_BETAS = (0.5, 0.999)


def spectral_normalised(module: nn.Module) -> nn.Module:
    """``module`` with spectral normalisation on every Conv2d and Linear weight inside it (in place)."""
    for m in list(module.modules()):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            spectral_norm(m)
    return module


class Conv64Generator(nn.Module):
    """(N, in_dim) -> (N, C, 64, 64) logits: the conv64 decoder's layers with batch normalisation after each hidden
    layer (DCGAN practice), which keeps G's pre-activations from saturating while D is ahead."""

    def __init__(self, in_dim: int, out_channels: int, hidden: int = 256) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, 64 * 4 * 4), nn.BatchNorm1d(64 * 4 * 4), nn.ReLU(inplace=True),
        )
        chans = list(reversed(CONV_CHANNELS)) + [out_channels]  # 64, 64, 32, 32, C
        layers: list[nn.Module] = []
        for i in range(4):
            layers.append(nn.ConvTranspose2d(chans[i], chans[i + 1], 4, 2, 1))
            if i < 3:
                layers += [nn.BatchNorm2d(chans[i + 1]), nn.ReLU(inplace=True)]
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconvs(self.fc(z).view(-1, 64, 4, 4))


class Conv64Critic(nn.Module):
    """(N, C, 64, 64) -> (N, hidden) features: the conv64 encoder's layers with LeakyReLU(0.2), so D keeps passing
    a gradient to G where a ReLU would be silent, and spectral normalisation on every layer."""

    def __init__(self, in_channels: int, hidden: int = 256) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for oc in CONV_CHANNELS:
            layers += [nn.Conv2d(c, oc, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            c = oc
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(64 * 4 * 4, hidden))
        spectral_normalised(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(x))


def make_generator(cfg: ModelConfig, in_dim: int, output_shape: Sequence[int]) -> nn.Module:
    """G: :class:`Conv64Generator` for conv64 with the deconv body, else the configured decoder body."""
    if cfg.arch == "conv64" and cfg.decoder == "deconv":
        return Conv64Generator(in_dim, output_shape[0], cfg.hidden)
    return make_decoder(cfg.arch, in_dim, output_shape, cfg.hidden, cfg.decoder, cfg.decoder_channels, cfg.decoder_grid)


def make_critic_trunk(cfg: ModelConfig, input_shape: Sequence[int]) -> nn.Module:
    """The D/Q trunk: :class:`Conv64Critic` for conv64, else the MLP encoder body, spectrally normalised."""
    if cfg.arch == "conv64":
        return Conv64Critic(input_shape[0], cfg.hidden)
    return spectral_normalised(make_encoder(cfg.arch, input_shape, cfg.hidden, cfg.hidden))


class QEncoder(nn.Module):
    """Image -> Q's raw outputs (N, K + C): categorical logits, then continuous means.

    ``features`` is the trunk shared with the discriminator.
    """

    def __init__(self, trunk: nn.Module, hidden: int, q_out: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.q = nn.Sequential(nn.Linear(hidden, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, q_out))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Trunk features (N, hidden) that D and Q both read."""
        return F.leaky_relu(self.trunk(x), 0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.q(self.features(x))


class InfoGAN(VAEBase):
    """InfoGAN with one categorical code of ``infogan_categories`` classes and latent_dim − K continuous codes.

    Code distribution: c_cat ~ Cat(K, 1/K) (one-hot into G), c_cont ~ U(−1, 1); noise ~ N(0, I) of
    ``infogan_noise_dim``. The representation (:meth:`encode`) is Q's estimate of the code: the K class
    *probabilities* (softmax of Q's logits: the posterior itself, bounded, and free of the arbitrary per-image
    offset logits carry) followed by the C continuous *means*. It is deterministic (``stochastic = False``).
    :meth:`decode`/:meth:`render` read such a vector as G's code with zero noise, so reconstructions and traversals
    show what the code captures.

    Each :meth:`train_step` updates D and Q (optimiser "disc": trunk, D head, Q head; lr ``disc_lr``) on real
    frames and on detached fakes, then G (optimiser "main"; ``train.lr``) through a frozen D/Q on the same fakes.
    Logged terms: ``d_loss``, ``g_loss`` (adversarial part), ``info_loss``, ``mi`` (the bound L_I in nats), ``mi_cat``,
    ``q_acc`` (Q's categorical accuracy on fakes), ``q_mse`` (mean squared error of Q's continuous means; 1/3 is
    chance), ``d_real``/``d_fake`` (D's mean probability of "real"), and ``loss`` = G's whole objective.
    """

    family: ClassVar[str] = "infogan"
    stochastic: ClassVar[bool] = False

    def __init__(self, cfg: ModelConfig, input_shape: Sequence[int], dataset_size: int = 0) -> None:
        super().__init__(cfg, input_shape, dataset_size)
        if cfg.latent_dim < cfg.infogan_categories:
            raise ValueError(f"model.latent_dim: infogan needs latent_dim >= infogan_categories={cfg.infogan_categories}, "
                             f"got {cfg.latent_dim}")
        self.num_categories = cfg.infogan_categories
        self.num_continuous = cfg.latent_dim - cfg.infogan_categories
        self.noise_dim = cfg.infogan_noise_dim
        # The base built a VAE encoder/decoder; replace them by the players (same arch and decoder body choices).
        self.decoder = make_generator(cfg, self.noise_dim + cfg.latent_dim, self.input_shape)
        self.encoder = QEncoder(make_critic_trunk(cfg, self.input_shape), cfg.hidden, cfg.latent_dim)
        self.d_head = spectral_normalised(nn.Linear(cfg.hidden, 1))

    # ----- the code ----------------------------------------------------------------------------------------
    def code_entropy(self) -> float:
        """H(c) in nats: log K for the categorical code plus log 2 per U(−1, 1) code (differential entropy)."""
        return (math.log(self.num_categories) if self.num_categories else 0.0) + self.num_continuous * math.log(2.0)

    def sample_code(self, n: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` codes from the prior: G's code input (n, latent_dim) = [one-hot | continuous], and the class indices."""
        k = self.num_categories
        classes = torch.randint(0, max(k, 1), (n,), device=device)
        onehot = F.one_hot(classes, k).float() if k else torch.zeros(n, 0, device=device)
        cont = torch.rand(n, self.num_continuous, device=device) * 2 - 1
        return torch.cat([onehot, cont], dim=1), classes

    def generate(self, code: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """G's logits (N, C, H, W) for codes (N, latent_dim) and noise (N, noise_dim); zero noise if omitted."""
        if noise is None:
            noise = code.new_zeros(code.shape[0], self.noise_dim)
        return self.decoder(torch.cat([noise, code], dim=1))

    def q_split(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Q's raw outputs -> (categorical logits (N, K), continuous means (N, C)), float32."""
        logits, mean = raw.float().split([self.num_categories, self.num_continuous], dim=1)
        return logits, mean

    # ----- inference -------------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x -> (Q's code estimate (N, latent_dim) = [class probabilities | continuous means], zeros)."""
        logits, mean = self.q_split(self.encoder(x))
        code = torch.cat([logits.softmax(dim=1), mean], dim=1)
        return code, torch.zeros_like(code)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """A code vector (N, latent_dim), as :meth:`encode` returns it, -> G's logits at zero noise."""
        return self.generate(z)

    # ----- losses ----------------------------------------------------------------------------------------
    def discriminate(self, features: torch.Tensor) -> torch.Tensor:
        """D's logit of "real" (N,) from trunk features."""
        return self.d_head(features).squeeze(1).float()

    def info_terms(self, raw: torch.Tensor, code: torch.Tensor, classes: torch.Tensor) -> dict[str, torch.Tensor]:
        """Q's negative log-likelihood of the true code (batch mean) and the pieces of the MI bound."""
        logits, mean = self.q_split(raw)
        cont = code[:, self.num_categories:].float()
        ce = F.cross_entropy(logits, classes) if self.num_categories else logits.new_zeros(())
        sq = (cont - mean).pow(2)
        nll = (0.5 * sq).sum(1).mean() + 0.5 * math.log(2 * math.pi) * self.num_continuous  # N(c; μ, 1)
        nll_total = ce + nll
        terms = {"nll": nll_total, "mi": self.code_entropy() - nll_total.detach()}
        if self.num_continuous:
            terms["q_mse"] = sq.mean().detach()
        if self.num_categories:
            terms["mi_cat"] = math.log(self.num_categories) - ce.detach()
            terms["q_acc"] = (logits.argmax(1) == classes).float().mean().detach()
        return terms

    def _fake(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        code, classes = self.sample_code(n, device)
        noise = torch.randn(n, self.noise_dim, device=device)
        return torch.sigmoid(self.generate(code, noise)), code, classes

    def discriminator_loss(self, x: torch.Tensor, fake: torch.Tensor, code: torch.Tensor,
                           classes: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """D/Q objective on real ``x`` and (detached) ``fake``: logistic GAN loss + λ·Q's NLL on the fakes."""
        n = x.shape[0]
        h = self.encoder.features(torch.cat([x, fake.detach().to(x.dtype)]))
        d = self.discriminate(h)
        d_loss = F.softplus(-d[:n]).mean() + F.softplus(d[n:]).mean()
        info = self.info_terms(self.encoder.q(h[n:]), code, classes)
        terms = {"d_loss": d_loss.detach(), "d_real": torch.sigmoid(d[:n]).mean().detach(),
                 "d_fake": torch.sigmoid(d[n:]).mean().detach()}
        return d_loss + self.cfg.infogan_lambda * info["nll"], terms

    def generator_loss(self, fake: torch.Tensor, code: torch.Tensor,
                       classes: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """G's objective on ``fake``: non-saturating −log D(G) + λ·Q's NLL of the code it was made from."""
        h = self.encoder.features(fake)
        g_loss = F.softplus(-self.discriminate(h)).mean()
        info = self.info_terms(self.encoder.q(h), code, classes)
        info_loss = self.cfg.infogan_lambda * info["nll"]
        terms = {"g_loss": g_loss.detach(), "info_loss": info_loss.detach(),
                 **{k: v for k, v in info.items() if k != "nll"}}
        return g_loss + info_loss, terms

    def loss(self, x: torch.Tensor, step: int = 0) -> LossOutput:
        """Both objectives on real ``x`` and a fresh batch of fakes (no update); ``loss`` is G's objective.

        Also reports ``recon``: the likelihood's NLL of ``x`` under G(encode(x)) at zero noise, i.e. how much of a
        real frame its code carries (what ``train.restart_metric=recon`` compares between restart candidates).
        """
        fake, code, classes = self._fake(x.shape[0], x.device)
        d_total, d_terms = self.discriminator_loss(x, fake, code, classes)
        g_total, g_terms = self.generator_loss(fake, code, classes)
        recon = self.reconstruction(x, self.decode(self.encode(x)[0])).mean()
        terms = {**d_terms, **g_terms, "recon": recon.detach(), "loss": g_total.detach()}
        return LossOutput(loss=g_total, terms=terms)

    # ----- training --------------------------------------------------------------------------------------
    def aux_prefixes(self) -> tuple[str, ...]:
        return ("encoder.", "d_head.")

    def discriminator_parameters(self) -> list[nn.Parameter]:
        """Parameters of the D/Q optimiser: the shared trunk, the Q head and the D head."""
        return [p for n, p in self.named_parameters() if p.requires_grad and n.startswith(self.aux_prefixes())]

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {"main": adam(self.main_parameters(), lr, betas=GAN_BETAS),
                "disc": adam(self.discriminator_parameters(), self.cfg.disc_lr, betas=GAN_BETAS)}

    def train_step(
        self,
        x: torch.Tensor,
        step: int,
        optimizers: dict[str, torch.optim.Optimizer],
        scaler: "torch.amp.GradScaler | None" = None,
        autocast: bool = False,
    ) -> LossOutput:
        main, disc = optimizers["main"], optimizers["disc"]
        dq_params = self.discriminator_parameters()
        # 1. D and Q on real frames and detached fakes (G's weights get no gradient from this step).
        with torch.autocast(device_type=x.device.type, enabled=autocast):
            fake, code, classes = self._fake(x.shape[0], x.device)
            d_total, d_terms = self.discriminator_loss(x, fake, code, classes)
        backward_step(d_total, disc, scaler, update_scaler=False)
        # 2. G through the updated, frozen D and Q on the same fakes.
        # (D and Q get no weight gradients here: the G step only needs their gradient into the image)
        with weights_frozen(dq_params), torch.autocast(device_type=x.device.type, enabled=autocast):
            g_total, g_terms = self.generator_loss(fake, code, classes)
        backward_step(g_total, main, scaler)
        return LossOutput(loss=g_total.detach(), terms={**d_terms, **g_terms, "loss": g_total.detach()})
