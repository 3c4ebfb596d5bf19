"""β-VAE_DAE (Higgins, Pal et al. 2017, DARLA): β-VAE whose reconstruction is measured in a frozen DAE's features."""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping, Sequence

import torch

from vision.models.base import ModelConfig, VAEBase
from vision.models.beta_vae import BetaVAE
from vision.models.dae import DAE, DAE_LAYERS


class BetaVAE_DAE(BetaVAE):  # noqa: N801 - the paper's name
    """‖J(x̂) − J(x)‖² + β·KL, with x̂ = sigmoid(decoder logits) and J a pre-trained DAE at ``cfg.dae_layer``.

    The DAE is a registered submodule, so its weights travel in this model's state dict (a checkpoint is
    self-contained), but it stays frozen: its parameters never require gradients, :meth:`train` keeps it in eval
    mode, and the main optimizer excludes it. The likelihood setting does not apply: the reconstruction term is
    the squared feature distance, summed per sample.

    Build it with :meth:`build` (``vision.models.build_model`` does): ``pretrained=True`` loads the DAE from
    ``cfg.dae_checkpoint``; ``pretrained=False`` leaves the DAE slot empty until :meth:`load_state_dict` fills it
    from a checkpoint's state dict, which records the DAE's configuration.
    """

    family: ClassVar[str] = "beta_vae_dae"

    def __init__(
        self,
        cfg: ModelConfig,
        input_shape: Sequence[int],
        dataset_size: int = 0,
        dae: DAE | None = None,
        dae_source: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(cfg, input_shape, dataset_size)
        if cfg.dae_layer not in DAE_LAYERS:
            raise ValueError(f"model.dae_layer: unknown layer {cfg.dae_layer!r}; choose from {DAE_LAYERS}")
        self.register_module("dae", None)
        self.dae_source: dict[str, Any] = {}
        if dae is not None:
            self.attach_dae(dae, dae_source)

    @classmethod
    def build(
        cls, cfg: ModelConfig, input_shape: Sequence[int], dataset_size: int = 0, *, pretrained: bool = True
    ) -> "BetaVAE_DAE":
        """The model for ``cfg``; with ``pretrained`` the frozen DAE comes from ``cfg.dae_checkpoint``."""
        if not pretrained:
            return cls(cfg, input_shape, dataset_size)
        if not cfg.dae_checkpoint:
            raise ValueError("model.dae_checkpoint: beta_vae_dae needs a trained DAE (its run directory or checkpoint.pt)")
        # Imported here: vision.checkpoint imports the model registry, which imports this module.
        from vision.checkpoint import CheckpointError, file_sha256, model_from_payload, read_checkpoint, resolve_checkpoint

        try:
            path = resolve_checkpoint(cfg.dae_checkpoint)
            payload = read_checkpoint(path)
        except CheckpointError as e:
            raise ValueError(f"model.dae_checkpoint: {e}") from None
        if payload["family"] != DAE.family:
            raise ValueError(f"model.dae_checkpoint: {path} holds a {payload['family']!r} model, not a 'dae'")
        if tuple(payload["input_shape"]) != tuple(int(s) for s in input_shape):
            raise ValueError(
                f"model.dae_checkpoint: the DAE at {path} takes inputs {tuple(payload['input_shape'])}, "
                f"this model {tuple(input_shape)}"
            )
        dae = model_from_payload(payload)
        source = {"path": str(path), "sha256": file_sha256(path), "step": int(payload["step"])}
        return cls(cfg, input_shape, dataset_size, dae=dae, dae_source=source)

    # ----- the frozen DAE --------------------------------------------------------------------------------
    def attach_dae(self, dae: DAE, source: Mapping[str, Any] | None = None) -> None:
        """Install ``dae`` as the frozen feature network J (eval mode, no gradients)."""
        if not isinstance(dae, DAE):
            raise ValueError(f"model.dae_checkpoint: expected a 'dae' model, got {type(dae).__name__}")
        if dae.input_shape != self.input_shape:
            raise ValueError(f"model.dae_checkpoint: the DAE takes inputs {dae.input_shape}, this model {self.input_shape}")
        dae.eval()
        for p in dae.parameters():
            p.requires_grad_(False)
        self.dae = dae
        self.dae_source = dict(source or {})

    def _require_dae(self) -> DAE:
        if self.dae is None:
            raise RuntimeError(
                "beta_vae_dae: no DAE loaded; build with pretrained=True (model.dae_checkpoint) or load a checkpoint"
            )
        return self.dae

    def train(self, mode: bool = True) -> "BetaVAE_DAE":
        super().train(mode)
        if self.dae is not None:
            self.dae.eval()  # frozen: never back to train mode (no occlusion masks, fixed statistics)
        return self

    def aux_prefixes(self) -> tuple[str, ...]:
        return ("dae.",)

    # The DAE's configuration rides in the state dict ("_extra_state"), so a checkpoint rebuilds J on its own.
    def get_extra_state(self) -> dict[str, Any]:
        cfg = dataclasses.asdict(self.dae.cfg) if self.dae is not None else None
        return {"dae_config": cfg, "dae_source": dict(self.dae_source)}

    def set_extra_state(self, state: Any) -> None:
        self.dae_source = dict(state.get("dae_source") or {})

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):  # type: ignore[override]
        """Load weights; an empty or differently configured DAE slot is first rebuilt from the recorded config."""
        extra = state_dict.get("_extra_state")
        dae_cfg = extra.get("dae_config") if isinstance(extra, dict) else None
        if dae_cfg is not None and (self.dae is None or dataclasses.asdict(self.dae.cfg) != dae_cfg):
            fields = {f.name for f in dataclasses.fields(ModelConfig)}
            skeleton = DAE(ModelConfig(**{k: v for k, v in dae_cfg.items() if k in fields}), self.input_shape)
            self.attach_dae(skeleton.to(next(self.decoder.parameters()).device))
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def extra_state(self) -> dict[str, Any]:
        return {"dae_source": dict(self.dae_source)}

    def render(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's image passed through the frozen DAE.

        The decoder is trained only through J, so pixel patterns J cannot see (a fine checkerboard under a
        bottleneck J) are free in its raw output; what the model asserts about the scene is what the DAE makes of
        that image, which is what DARLA's pictures show.
        """
        return self._require_dae().reconstruct(torch.sigmoid(self.decode(z)))

    # ----- loss --------------------------------------------------------------------------------------------
    def reconstruction(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Per-sample ‖J(sigmoid(logits)) − J(x)‖², J = the frozen DAE at ``cfg.dae_layer``."""
        dae, layer = self._require_dae(), self.cfg.dae_layer
        with torch.no_grad():
            target = dae.features(x, layer)
        pred = dae.features(torch.sigmoid(logits), layer)
        return (pred.float() - target.float()).pow(2).flatten(1).sum(1)
