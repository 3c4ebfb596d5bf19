"""DC-IGN (Kulkarni et al. 2015): a VAE trained on batches in which one ground-truth factor varies.

Each factor owns a group of latents. In a batch where only factor k varies, every latent outside k's group is
*clamped*: the decoder sees its batch mean instead of the per-image value, so k's group alone must explain the
batch's variation; and in the backward pass the clamped units do not receive the reconstruction gradient but their
difference from the batch mean, which pushes the encoder to make them invariant to k. Over batches of every factor,
each group ends up responding to its own factor only.

Factors left out of ``model.dcign_factors`` play the paper's "intrinsic properties": a rest batch fixes every grouped
factor and varies all of them together; the rest group (the latents after the factor groups) is free in rest batches
and clamped in all others. When every factor has a group (the default), there are no rest batches and the rest group
stays clamped, i.e. unused.

The batches are rendered from the ground truth (:class:`vision.data.ground_truth.GroundTruthData`: dSprites or an
environment's scene), not drawn from the stored frames: a random sample of frames almost never holds 64 images that
agree on every factor but one. The stage-1 trainer asks the model for its batches through :meth:`DCIGN.batch_sampler`.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator, Sequence

import numpy as np
import torch

from vision.data.frames import FrameStore
from vision.data.ground_truth import GroundTruthData
from vision.images import resize_frames
from vision.models.base import LossOutput, ModelConfig
from vision.models.beta_vae import BetaVAE

REST = "rest"  # name of the group that explains the factors without a group of their own


class _ClampToBatchMean(torch.autograd.Function):
    """Forward: masked units replaced by their batch mean. Backward: their gradient is ``weight·(z − mean)``."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, mask: torch.Tensor, weight: float) -> torch.Tensor:  # type: ignore[override]
        mean = z.mean(0, keepdim=True)
        ctx.save_for_backward(z - mean, mask)
        ctx.weight = weight
        return torch.where(mask, mean.expand_as(z), z)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        deviation, mask = ctx.saved_tensors
        # The gradient the decoder sends to a clamped unit concerns the batch mean, not this image: it is dropped.
        return torch.where(mask, ctx.weight * deviation.to(grad.dtype), grad), None, None


def clamp_to_batch_mean(z: torch.Tensor, mask: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """DC-IGN's clamp of codes ``z`` (B, D) on the latents where ``mask`` (D,) is True.

    Forward, each clamped column is replaced by its mean over the batch (identical rows); free columns pass through.
    Backward, the gradient of a clamped unit is *replaced* by ``weight·(z_i − z̄)`` (the gradient of
    ``weight·½Σ_i‖z_i − z̄‖²`` with z̄ held fixed), so a descent step moves it toward the batch mean; free units
    receive the incoming gradient unchanged.
    """
    if mask.dtype != torch.bool or mask.shape != z.shape[1:]:
        raise ValueError(f"mask: expected a bool tensor of shape {tuple(z.shape[1:])}, got {mask.dtype} {tuple(mask.shape)}")
    return _ClampToBatchMean.apply(z, mask.to(z.device), float(weight))


@dataclass(frozen=True)
class LatentGroups:
    """Which latents belong to which factor, and which factor columns each kind of batch varies.

    Group g < ``len(factors)`` is factor ``factors[g]`` (data column ``columns[g]``) and owns latents
    ``[g·m, (g+1)·m)``; the rest group owns the latents after them. A rest batch varies ``rest_columns`` together.
    """

    factors: tuple[str, ...]
    columns: tuple[int, ...]
    per_factor: int
    latent_dim: int
    rest_columns: tuple[int, ...]

    @classmethod
    def for_data(cls, cfg: ModelConfig, names: Sequence[str], sizes: Sequence[int]) -> "LatentGroups":
        """The layout ``cfg`` asks for on data with factors ``names`` of ``sizes`` (a one-line error if it cannot)."""
        names, sizes = tuple(names), tuple(int(s) for s in sizes)
        if cfg.dcign_factors:
            unknown = [f for f in cfg.dcign_factors if f not in names]
            if unknown:
                raise ValueError(f"model.dcign_factors: unknown factor(s) {unknown}; the data's factors are {list(names)}")
            constant = [f for f in cfg.dcign_factors if sizes[names.index(f)] < 2]
            if constant:
                raise ValueError(f"model.dcign_factors: {constant} take a single value in this data; nothing to vary")
            columns = tuple(names.index(f) for f in cfg.dcign_factors)
        else:
            columns = tuple(i for i, s in enumerate(sizes) if s > 1)
        if not columns:
            raise ValueError(f"model.family: dc_ign needs a factor with more than one value; the data's are {dict(zip(names, sizes))}")
        rest = tuple(i for i, s in enumerate(sizes) if s > 1 and i not in columns)
        need = len(columns) * cfg.dcign_latents_per_factor + (1 if rest else 0)
        if cfg.latent_dim < need:
            what = f"{len(columns)} factors × dcign_latents_per_factor={cfg.dcign_latents_per_factor}"
            if rest:
                what += f" + a rest group for {[names[i] for i in rest]}"
            raise ValueError(f"model.latent_dim: dc_ign needs >= {need} latents ({what}), got {cfg.latent_dim}")
        return cls(tuple(names[i] for i in columns), columns, cfg.dcign_latents_per_factor, cfg.latent_dim, rest)

    @property
    def num_groups(self) -> int:
        """Factor groups, plus the rest group when rest batches exist."""
        return len(self.factors) + (1 if self.rest_columns else 0)

    def latents(self, group: int) -> list[int]:
        """Latent indices of ``group`` (``len(factors)`` is the rest group)."""
        m, f = self.per_factor, len(self.factors)
        return list(range(group * m, (group + 1) * m)) if group < f else list(range(f * m, self.latent_dim))

    def varied_columns(self, group: int) -> tuple[int, ...]:
        """Data columns a batch of ``group`` varies."""
        return (self.columns[group],) if group < len(self.factors) else self.rest_columns

    def clamp_mask(self, group: int) -> torch.Tensor:
        """(D,) bool: True on every latent outside ``group`` (the units a batch of ``group`` clamps)."""
        mask = torch.ones(self.latent_dim, dtype=torch.bool)
        mask[self.latents(group)] = False
        return mask

    def as_dict(self) -> dict[str, list[int]]:
        """Group name -> latent indices, the rest group (if it has latents) last."""
        out = {name: self.latents(g) for g, name in enumerate(self.factors)}
        rest = self.latents(len(self.factors))
        if rest:
            out[REST] = rest
        return out


class SingleFactorBatches:
    """Batches rendered from ``data`` in which the factors of one group vary and every other factor is fixed.

    Call it as ``batches(n, generator) -> (frames uint8 (n, H, W, C), {"clamp": mask})``: the group is drawn with
    weight 1 per factor and ``rest_weight`` for the rest batch; the shared values come from one draw of
    ``data.sample_factors`` and the varied column(s) from ``n`` more, so both follow the data's distribution. Rows
    that fall outside the data's domain (held-out combinations, when ``data.domain.contains`` exists) become the
    anchor row itself. All randomness comes from ``generator``, so a resumed run draws the same batches.
    """

    def __init__(self, data: GroundTruthData, groups: LatentGroups, rest_weight: float,
                 frame_shape: tuple[int, int, int]) -> None:
        self.data = data
        self.groups = groups
        self.frame_shape = tuple(frame_shape)
        weights = np.ones(groups.num_groups)
        if groups.rest_columns:
            weights[-1] = rest_weight
        if weights.sum() <= 0:
            raise ValueError("model.dcign_rest_weight: with no factor groups the rest batches need a weight > 0")
        self.probs = weights / weights.sum()
        domain = getattr(data, "domain", None)
        self._contains: Callable[[np.ndarray], np.ndarray] | None = getattr(domain, "contains", None)

    def factors(self, n: int, rng: np.random.Generator, group: int | None = None) -> tuple[np.ndarray, int]:
        """(n, K) factor indices of one batch and its group (drawn when ``group`` is None)."""
        g = int(rng.choice(len(self.probs), p=self.probs)) if group is None else int(group)
        rows = self.data.sample_factors(n, rng)
        anchor = self.data.sample_factors(1, rng)[0]
        fixed = np.ones(rows.shape[1], dtype=bool)
        fixed[list(self.groups.varied_columns(g))] = False
        rows[:, fixed] = anchor[fixed]
        if self._contains is not None:
            rows[~self._contains(rows)] = anchor
        return rows, g

    def __call__(self, n: int, generator: torch.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
        rows, g = self.factors(n, rng)
        frames = self.data.render(rows)
        h, w, _ = self.frame_shape
        if frames.shape[1:3] != (h, w):
            frames = resize_frames(frames, (h, w))
        return frames, {"clamp": self.groups.clamp_mask(g)}


class DCIGN(BetaVAE):
    """recon + β·KL (the paper's objective has β = 1) on single-factor batches, with DC-IGN's clamping.

    :meth:`train_step` takes the batch's ``clamp`` mask (from :class:`SingleFactorBatches`); while it runs,
    :meth:`sample` passes the codes through :func:`clamp_to_batch_mean`. Outside a training step nothing is clamped:
    :meth:`loss` on ordinary frames is the plain VAE objective (held-out scores, restarts).

    The factor → latent assignment is fixed when the model is bound to data (:meth:`batch_sampler`) and kept in
    the checkpoint: ``model.latent_groups`` maps each factor name (and ``"rest"``) to its latent indices.
    """

    family: ClassVar[str] = "dc_ign"

    def __init__(self, cfg: ModelConfig, input_shape: Sequence[int], dataset_size: int = 0) -> None:
        super().__init__(cfg, input_shape, dataset_size)
        self.latent_groups: dict[str, list[int]] = {}
        self._clamp: torch.Tensor | None = None
        self._invariance: torch.Tensor | None = None

    # ----- data ------------------------------------------------------------------------------------------
    def batch_sampler(self, store: FrameStore, data: GroundTruthData | None) -> SingleFactorBatches:
        """Bind the model to ``data`` (fixing :attr:`latent_groups`) and return its batch source for the trainer."""
        if data is None:
            raise ValueError("model.family: dc_ign renders its batches from ground-truth factors and these frames "
                             "have none; use data.source=dsprites or data.env_id of an env that reports factors")
        h, w, c = store.observation_shape
        if data.observation_shape[2] != c:
            raise ValueError(f"data: the ground truth renders {data.observation_shape} frames, the store holds {(h, w, c)}")
        groups = LatentGroups.for_data(self.cfg, data.factor_names, data.factor_sizes)
        self.latent_groups = groups.as_dict()
        return SingleFactorBatches(data, groups, self.cfg.dcign_rest_weight, (h, w, c))

    # ----- clamping --------------------------------------------------------------------------------------
    @contextmanager
    def clamped(self, mask: torch.Tensor | None) -> Iterator[None]:
        """Within the block, training-mode :meth:`sample` clamps the latents where ``mask`` (D,) is True."""
        if mask is not None and (mask.dtype != torch.bool or mask.shape != (self.latent_dim,)):
            raise ValueError(f"clamp: expected a bool mask of shape ({self.latent_dim},), got {mask.dtype} {tuple(mask.shape)}")
        self._clamp = mask
        try:
            yield
        finally:
            self._clamp, self._invariance = None, None

    def sample(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        z = super().sample(mu, logvar)
        if self._clamp is None or not self.training:
            return z
        mask = self._clamp.to(z.device)
        # logged: how far the clamped units still are from invariance (what their gradient pushes down)
        self._invariance = (z.detach().float() - z.detach().float().mean(0)).pow(2)[:, mask].sum(1).mean()
        return clamp_to_batch_mean(z, mask, self.cfg.dcign_clamp_weight)

    def loss(self, x: torch.Tensor, step: int = 0) -> LossOutput:
        out = super().loss(x, step)
        if self._invariance is not None:
            out.terms["invariance"] = self._invariance
        return out

    def train_step(
        self,
        x: torch.Tensor,
        step: int,
        optimizers: dict[str, torch.optim.Optimizer],
        scaler: "torch.amp.GradScaler | None" = None,
        autocast: bool = False,
        clamp: torch.Tensor | None = None,
    ) -> LossOutput:
        """One step on a single-factor batch; ``clamp`` (D,) marks the latents outside the varied factor's group."""
        with self.clamped(clamp):
            return super().train_step(x, step, optimizers, scaler, autocast)

    # The factor -> latent assignment rides in the state dict ("_extra_state"), so a loaded model knows it.
    def get_extra_state(self) -> dict[str, Any]:
        return {"latent_groups": {k: list(v) for k, v in self.latent_groups.items()}}

    def set_extra_state(self, state: Any) -> None:
        self.latent_groups = {k: list(v) for k, v in (state or {}).get("latent_groups", {}).items()}
