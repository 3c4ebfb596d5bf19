"""SCAN on a frozen stage-1 vision: ``python -m darla.scan --vision RUN_DIR [--config YAML] [key=value ...]``.

Grounds symbols in the vision's latents (Higgins et al. 2018; :mod:`vision.scan`): concepts over ground-truth factors
(dSprites, or an env's scene via ``render_from_factors``), a few images per training concept, encoded once with the
frozen vision; then the symbol VAE and the recombination operators train on that cache, and the run is measured:

* image → symbols: accuracy per symbol group on fresh images;
* symbols → images: samples read back by a pixel classifier trained on the ground truth — do they match the
  concept (training concepts, and concepts never paired with an image), and how diverse are they over the groups
  the concept leaves unspecified;
* recombination: AND, IN COMMON and IGNORE of training concepts whose results were held out.

Writes ``RUN_DIR/scan.json``, tensorboard, figures and the checkpoint ``scan.pt``; rerunning resumes, and a finished
run with the same evaluation settings returns its stored summary.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from darla.config import ConfigError, RunConfig, load_config, to_dict
from darla.runs import prepare_run_dir, undo_failed_start
from vision.checkpoint import CheckpointError, file_sha256, resolve_checkpoint
from vision.images import to_uint8_hwc
from vision.runtime import atomic_torch_save, atomic_write_json, seed_everything, set_num_threads
from vision.scan import (
    OPERATORS, STATE_NAME, GroupClassifier, Recombination, ScanCache, ScanModelConfig, ScanTrainConfig, SymbolGroup,
    normalised_entropy,
    SymbolSpace, SymbolVAE, concept_scores, img2sym, read_scan_state, recombination_triples, split_concepts, sym2img,
    train_scan,
    train_classifier,
)

SOURCES = ("dsprites", "env")
SUMMARY_NAME = "scan.json"
CLASSIFIER_NAME = "classifier.pt"


def dsprites_groups() -> list[SymbolGroup]:
    """dSprites' symbols: shape (3), scale in 2 bins, x and y position in 3 bins each (191 concepts)."""
    return [
        SymbolGroup("shape", "shape", labels=["square", "ellipse", "heart"]),
        SymbolGroup("scale", "scale", bins=2, labels=["small", "large"]),
        SymbolGroup("x", "posX", bins=3, labels=["left", "centre", "right"]),
        SymbolGroup("y", "posY", bins=3, labels=["top", "middle", "bottom"]),
    ]


@dataclass
class VisionConfig:
    """The frozen stage-1 vision SCAN grounds its symbols in."""

    run: str = ""  # a stage-1 run directory or checkpoint file (--vision)
    device: str = "auto"  # where the vision encodes and renders


@dataclass
class SymbolsConfig:
    """Concepts: the symbol groups, where their images come from, and how many labelled images each gets."""

    source: str = "dsprites"  # dsprites | env
    env_id: str = ""  # env: a darla env id whose scene renders from factors (darla/Sprites-v0, ...)
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    domain: str = "source"  # env: the domain images are drawn from
    groups: list[SymbolGroup] = field(default_factory=dsprites_groups)
    examples_per_concept: int = 5  # labelled (symbol, image) pairs per training concept
    heldout_fraction: float = 0.3  # of the concepts naming >= 2 groups: never paired with an image
    max_triples: int = 20_000  # operator training triples per operator (a seeded subset when there are more)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"symbols.source: unknown {self.source!r}; choose from {SOURCES}")
        if self.source == "env" and not self.env_id:
            raise ValueError("symbols.env_id: required when symbols.source is 'env'")
        if self.examples_per_concept < 1:
            raise ValueError(f"symbols.examples_per_concept: must be >= 1, got {self.examples_per_concept}")
        if not 0 <= self.heldout_fraction < 1:
            raise ValueError(f"symbols.heldout_fraction: must be in [0, 1), got {self.heldout_fraction}")
        if self.max_triples < 0:
            raise ValueError(f"symbols.max_triples: must be >= 0, got {self.max_triples}")


@dataclass
class ScanEvalConfig:
    """What the run is measured on (all drawn fresh from ``seed``, apart from the training pairs)."""

    num_images: int = 2000  # image -> symbol test images
    concepts: int = 48  # symbol -> image: concepts per split (training / held out), a seeded subset
    samples: int = 16  # images drawn per concept or recombined posterior
    triples: int = 32  # recombination test triples per operator
    classifier: str = ""  # a classifier.pt from another SCAN run on the same symbols ("": train one here)
    classifier_images: int = 20_000
    classifier_steps: int = 2000
    figure_concepts: int = 6  # rows of each sample figure
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_images", "concepts", "samples", "triples", "classifier_images", "classifier_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"eval.{name}: must be >= 1, got {getattr(self, name)}")
        if self.figure_concepts < 0:
            raise ValueError(f"eval.figure_concepts: must be >= 0, got {self.figure_concepts}")


@dataclass
class ScanConfig:
    run: RunConfig = field(default_factory=lambda: RunConfig(dir="runs/scan"))
    vision: VisionConfig = field(default_factory=VisionConfig)
    symbols: SymbolsConfig = field(default_factory=SymbolsConfig)
    model: ScanModelConfig = field(default_factory=ScanModelConfig)
    train: ScanTrainConfig = field(default_factory=ScanTrainConfig)
    eval: ScanEvalConfig = field(default_factory=ScanEvalConfig)


# ----- setup ------------------------------------------------------------------------------------------------
def ground_truth(symbols: SymbolsConfig) -> Any:
    """The renderer of the concepts' images: procedural dSprites, or the env's scene over ``symbols.domain``."""
    if symbols.source == "dsprites":
        from vision.data.dsprites import DSprites

        return DSprites()
    import envs

    if symbols.env_id not in envs.ENV_IDS:
        raise ConfigError(f"symbols.env_id: {symbols.env_id!r} is not a darla env with factors; choose from "
                          f"{', '.join(envs.ENV_IDS)}")
    try:
        return envs.scene_data(symbols.env_id, domain=symbols.domain, **dict(symbols.env_kwargs))
    except (TypeError, ValueError) as e:
        key = "symbols.domain" if "domain" in str(e) else "symbols.env_kwargs"
        raise ConfigError(f"{key}: {str(e).splitlines()[0]}") from None


def load_vision(vision: VisionConfig) -> tuple[Any, Path]:
    """The frozen vision model of ``vision.run`` and its checkpoint file."""
    import vision as vision_pkg

    if not vision.run:
        raise ConfigError("vision.run: required (--vision RUN_DIR: a stage-1 run directory or checkpoint)")
    try:
        path = resolve_checkpoint(vision.run)
        model = vision_pkg.load(path, vision.device)
    except CheckpointError as e:
        raise ConfigError(f"vision.run: {e}") from None
    if not model.stochastic:
        raise ConfigError(f"vision.run: {path} is a {model.family!r} model without a posterior; SCAN's KL needs "
                          "q(z_x|x) (a VAE-family run)")
    return model, path


def encode(vision: Any, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Visual posteriors (μ, log σ²) of uint8 images, as float32 CPU tensors."""
    from vision.metrics.representation import encoder_from_model

    mu, logvar = encoder_from_model(vision, batch_size=256)(images)
    return torch.from_numpy(mu).float(), torch.from_numpy(logvar).float()


def training_pairs(space: SymbolSpace, concepts: np.ndarray, per_concept: int, data: Any,
                   seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(concept index per pair, factor rows, images) of ``per_concept`` images drawn for each training concept."""
    rng = np.random.default_rng(seed)
    idx = np.repeat(np.arange(len(concepts)), per_concept)
    factors = np.concatenate([space.sample_factors(c, per_concept, rng, data.sample_factors) for c in concepts])
    return idx, factors, data.render(factors)


# ----- evaluation -----------------------------------------------------------------------------------------
def _summarise(space: SymbolSpace, concepts: np.ndarray, reads: list[np.ndarray]) -> dict[str, Any]:
    """Mean match, per-group accuracy and diversity over concepts, each read back as one (S, G) array."""
    scores = [concept_scores(space, c, r) for c, r in zip(concepts, reads)]
    groups: dict[str, list[float]] = {}
    for s in scores:
        for g, v in s["group_acc"].items():
            groups.setdefault(g, []).append(v)
    div = [s["diversity"] for s in scores if s["diversity"] is not None]
    # The same two numbers without one group: a vision that cannot show a factor (the dSprites recipe has no shape
    # latent) fails every concept naming it, and its read-back fills the group's diversity with one value.
    without: dict[str, Any] = {}
    for k, g in enumerate(space.groups):
        keep = [i for i, c in enumerate(concepts) if c[k] < 0 and (c >= 0).any()]
        free = [normalised_entropy(reads[i][:, j], space.sizes[j]) for i in range(len(concepts))
                for j in np.flatnonzero(concepts[i] < 0) if j != k]
        without[g.name] = {"concepts": len(keep),
                           "match": float(np.mean([scores[i]["match"] for i in keep])) if keep else None,
                           "diversity": float(np.mean(free)) if free else None}
    diversity_by_group = {}
    for k, g in enumerate(space.groups):
        ent = [normalised_entropy(r[:, k], space.sizes[k]) for c, r in zip(concepts, reads) if c[k] < 0]
        diversity_by_group[g.name] = float(np.mean(ent)) if ent else None
    return {"concepts": len(scores), "match": float(np.mean([s["match"] for s in scores])) if scores else None,
            "group_acc": {g: float(np.mean(v)) for g, v in groups.items()},
            "diversity": float(np.mean(div)) if div else None,
            "diversity_by_group": diversity_by_group, "without_group": without}


def _posterior_reads(vision: Any, classifier: GroupClassifier, mu: torch.Tensor, logvar: torch.Tensor,
                     samples: int, gen: torch.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    images = sym2img(vision, mu, logvar, samples, gen)
    read = classifier.predict(images)
    return [read[i * samples:(i + 1) * samples] for i in range(len(mu))], images


def _pick(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n, size=min(n, k), replace=False)) if n else np.zeros(0, dtype=np.int64)


def get_classifier(cfg: ScanConfig, space: SymbolSpace, data: Any, run_dir: Path, progress: bool) -> tuple[GroupClassifier, dict[str, Any]]:
    """The group classifier: ``eval.classifier``, this run's ``classifier.pt``, or one trained now on fresh renders
    (its accuracy on held-out renders recorded with it)."""
    key = {"groups": [dataclasses.asdict(g) for g in space.groups], "source": cfg.symbols.source,
           "env_id": cfg.symbols.env_id, "env_kwargs": dict(cfg.symbols.env_kwargs), "domain": cfg.symbols.domain}
    path = Path(cfg.eval.classifier) if cfg.eval.classifier else run_dir / CLASSIFIER_NAME
    if path.exists() or cfg.eval.classifier:
        if not path.is_file():
            raise ConfigError(f"eval.classifier: no such file {path}")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:
            raise ConfigError(f"eval.classifier: {path} is not a torch file ({type(e).__name__})") from None
        if not isinstance(payload, dict) or payload.get("symbols") != key:
            raise ConfigError(f"eval.classifier: {path} was trained on other symbols or images than this run's")
        model = GroupClassifier(payload["input_shape"], payload["sizes"])
        model.load_state_dict(payload["state_dict"])
        model.eval()
        return model, payload["info"]
    rng = np.random.default_rng([cfg.eval.seed, 1])
    n = cfg.eval.classifier_images
    factors = data.sample_factors(n + 1000, rng)
    images, values = data.render(factors), space.values_of(factors)
    t0 = time.perf_counter()
    model = train_classifier(images[:n], values[:n], space.sizes, cfg.eval.classifier_steps, seed=cfg.eval.seed,
                             progress=progress)
    held = model.predict(images[n:])
    info = {"images": n, "steps": cfg.eval.classifier_steps, "seconds": round(time.perf_counter() - t0, 1),
            "heldout_acc": {g.name: float((held[:, k] == values[n:, k]).mean()) for k, g in enumerate(space.groups)}}
    atomic_torch_save(run_dir / CLASSIFIER_NAME, {"symbols": key, "input_shape": list(model.input_shape),
                                                  "sizes": list(model.sizes), "state_dict": model.state_dict(), "info": info})
    return model, info


def evaluate(cfg: ScanConfig, space: SymbolSpace, train_c: np.ndarray, held_c: np.ndarray, symbols: SymbolVAE,
             ops: Recombination, vision: Any, data: Any, run_dir: Path, progress: bool) -> dict[str, Any]:
    """Every SCAN measurement of the run (see the module docstring) and the figures; returns the results dict."""
    ev = cfg.eval
    classifier, cls_info = get_classifier(cfg, space, data, run_dir, progress)
    rng = np.random.default_rng([ev.seed, 2])
    gen = torch.Generator().manual_seed(ev.seed)
    out: dict[str, Any] = {"classifier": dict(cls_info)}

    # image -> symbols, and the classifier on the vision's reconstructions (the ceiling of symbol -> image)
    factors = data.sample_factors(ev.num_images, rng)
    images, values = data.render(factors), space.values_of(factors)
    mu_x, logvar_x = encode(vision, images)
    pred = img2sym(symbols, space, mu_x)
    out["img2sym"] = {g.name: float((pred[:, k] == values[:, k]).mean()) for k, g in enumerate(space.groups)}
    out["img2sym_chance"] = {g.name: float(np.bincount(values[:, k][values[:, k] >= 0]).max() / max((values[:, k] >= 0).sum(), 1))
                             for k, g in enumerate(space.groups)}
    dev = next(vision.parameters()).device
    with torch.no_grad():
        recon = np.concatenate([to_uint8_hwc(vision.render(mu_x[i:min(i + 256, 1000)].to(dev)))
                                for i in range(0, min(len(mu_x), 1000), 256)])
    read = classifier.predict(recon)
    out["classifier"]["reconstruction_acc"] = {g.name: float((read[:, k] == values[:len(read), k]).mean())
                                              for k, g in enumerate(space.groups)}

    # symbols -> images, on training concepts and on concepts never paired with an image
    sym2 = {}
    figure_rows: dict[str, list[tuple[str, np.ndarray]]] = {}
    for split, concepts in (("train", train_c), ("heldout", held_c)):
        chosen = concepts[_pick(len(concepts), ev.concepts, rng)]
        if not len(chosen):
            continue
        with torch.no_grad():
            mu, logvar = symbols.encode(torch.from_numpy(space.khot(chosen)))
        reads, imgs = _posterior_reads(vision, classifier, mu, logvar, ev.samples, gen)
        real = [classifier.predict(data.render(space.sample_factors(c, ev.samples, rng, data.sample_factors)))
                for c in chosen]
        sym2[split] = {"scan": _summarise(space, chosen, reads), "real_images": _summarise(space, chosen, real)}
        figure_rows[split] = [(space.name(c), imgs[i * ev.samples:(i + 1) * ev.samples][:8])
                              for i, c in enumerate(chosen[:ev.figure_concepts])]
    # chance: prior samples N(0, I) scored against the training concepts' symbols
    chosen = train_c[_pick(len(train_c), ev.concepts, rng)]
    d = symbols.latent_dim
    prior_reads, _ = _posterior_reads(vision, classifier, torch.zeros(len(chosen), d), torch.zeros(len(chosen), d),
                                      ev.samples, gen)
    sym2["prior"] = _summarise(space, chosen, prior_reads)
    out["sym2img"] = sym2

    # recombination: operators on training concepts whose results were held out
    recomb: dict[str, Any] = {}
    triples = recombination_triples(train_c, held_c, space.sizes, ev.triples, ev.seed)
    for k, op in enumerate(OPERATORS):
        rows = triples[op]
        if not len(rows):
            recomb[op] = {"concepts": 0}
            continue
        with torch.no_grad():
            mu_a, lv_a = symbols.encode(torch.from_numpy(space.khot(train_c[rows[:, 0]])))
            mu_b, lv_b = symbols.encode(torch.from_numpy(space.khot(train_c[rows[:, 1]])))
            mu_r, lv_r = ops(mu_a, lv_a, mu_b, lv_b, torch.full((len(rows),), k, dtype=torch.int64))
            mu_d, lv_d = symbols.encode(torch.from_numpy(space.khot(held_c[rows[:, 2]])))
        reads, imgs = _posterior_reads(vision, classifier, mu_r, lv_r, ev.samples, gen)
        direct, _ = _posterior_reads(vision, classifier, mu_d, lv_d, ev.samples, gen)
        recomb[op] = {"operator": _summarise(space, held_c[rows[:, 2]], reads),
                      "symbol_encoder": _summarise(space, held_c[rows[:, 2]], direct)}
        figure_rows[f"recombination_{op}"] = [
            (f"{space.name(train_c[i])}  {op.replace('_', ' ')}  {space.name(train_c[j])}", imgs[r * ev.samples:(r + 1) * ev.samples][:8])
            for r, (i, j, _) in enumerate(rows[:max(ev.figure_concepts // 2, 1)])]
    out["recombination"] = recomb

    # figures
    fig_dir = run_dir / "figures"
    for name, rows in figure_rows.items():
        if rows and ev.figure_concepts:
            sample_figure(rows, fig_dir / f"sym2img_{name}.png")
    show = [c for c in train_c if (c >= 0).sum() == 1][: 2 * ev.figure_concepts] if ev.figure_concepts else []
    if len(show):
        with torch.no_grad():
            _, lv = symbols.encode(torch.from_numpy(space.khot(np.stack(show))))
        posterior_figure([space.name(c) for c in show], (0.5 * lv).exp().numpy(),
                         logvar_x.exp().sqrt().mean(0).numpy(), mu_x.std(0).numpy(), fig_dir / "posteriors.png")
    out["figures"] = sorted(str(p) for p in fig_dir.glob("*.png"))
    return out


# ----- figures ----------------------------------------------------------------------------------------------
def _save_fig(fig: Any, path: Path) -> Path:
    import io

    import matplotlib.pyplot as plt

    from vision.runtime import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def sample_figure(rows: list[tuple[str, np.ndarray]], path: Path) -> Path:
    """One row of images (uint8 NHWC) per label: a concept or an operation and the images drawn from it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vision.viz import grid

    fig, axes = plt.subplots(len(rows), 1, figsize=(1.0 * max(len(r[1]) for r in rows), 1.15 * len(rows)), squeeze=False)
    for ax, (label, images) in zip(axes[:, 0], rows):
        ax.imshow(grid(images, rows=1))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    return _save_fig(fig, path)


def posterior_figure(names: list[str], sd_y: np.ndarray, sd_x: np.ndarray, spread_x: np.ndarray, path: Path) -> Path:
    """σ of q(z_y|y) per latent for one-group concepts, under two reference rows from the images: the mean σ of
    q(z_x|x) (what a concept that fixes a latent's factor should approach) and the spread of μ_x (what one that
    leaves it free must cover)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = np.vstack([sd_x[None], spread_x[None], sd_y])
    labels = ["images: mean σ_x", "images: sd of μ_x", *names]
    fig, ax = plt.subplots(figsize=(0.55 * table.shape[1] + 2.5, 0.32 * len(labels) + 0.8))
    im = ax.imshow(table, cmap="viridis", vmin=0, vmax=max(1.0, float(table.max())), aspect="auto")
    for (r, c), v in np.ndenumerate(table):
        ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=6, color="white" if v < 0.6 else "black")
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xticks(range(table.shape[1]), [f"z{j}" for j in range(table.shape[1])], fontsize=7)
    ax.axhline(1.5, color="white", lw=1.5)
    fig.colorbar(im, ax=ax, fraction=0.03)
    ax.set_title("σ of the symbol posterior q(z_y|y) per latent", fontsize=9)
    return _save_fig(fig, path)


# ----- the run ----------------------------------------------------------------------------------------------
def run(cfg: ScanConfig, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) and evaluate SCAN as ``cfg`` says; returns the summary written to ``RUN_DIR/scan.json``."""
    from torch.utils.tensorboard import SummaryWriter

    vision, vision_path = load_vision(cfg.vision)
    data = ground_truth(cfg.symbols)
    h, w, c = data.observation_shape
    if tuple(vision.input_shape) != (c, h, w):
        raise ConfigError(f"vision.run: {vision_path} takes images {tuple(vision.input_shape)} (C, H, W); "
                          f"symbols.source {cfg.symbols.source!r} renders {(c, h, w)}")
    try:
        space = SymbolSpace(cfg.symbols.groups, data.factor_names, data.factor_sizes)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if cfg.eval.classifier and not Path(cfg.eval.classifier).is_file():
        raise ConfigError(f"eval.classifier: no such file {cfg.eval.classifier}")
    set_num_threads(cfg.train.num_threads)
    train_c, held_c = split_concepts(space.all_concepts(), cfg.symbols.heldout_fraction, cfg.symbols.seed)
    vision_sha = file_sha256(vision_path)
    with undo_failed_start(cfg.run.dir):
        run_dir, resuming = prepare_run_dir(cfg.run.dir, cfg, "scan", cfg.run.resume, ignore=("eval.", "run."))
        meta_path = run_dir / "vision.json"
        if resuming and meta_path.exists() and json.loads(meta_path.read_text())["sha256"] != vision_sha:
            raise ConfigError(f"vision.run: {vision_path} changed since this run started; choose a new run.dir")
        atomic_write_json(meta_path, {"checkpoint": str(vision_path), "sha256": vision_sha, "family": vision.family,
                                      "latent_dim": vision.latent_dim})
    summary_path = run_dir / SUMMARY_NAME
    state_path = run_dir / STATE_NAME
    if summary_path.exists() and state_path.exists():
        old = json.loads(summary_path.read_text())
        if old.get("eval_config") == to_dict(cfg.eval) and read_scan_state(state_path)["state"]["phase"] == "done":
            return old  # finished, and measured with these settings

    t0 = time.perf_counter()
    pair_concept, _, images = training_pairs(space, train_c, cfg.symbols.examples_per_concept, data, cfg.symbols.seed)
    mu_x, logvar_x = encode(vision, images)
    khot_train = torch.from_numpy(space.khot(train_c))
    cache = ScanCache(khot=khot_train[pair_concept], mu_x=mu_x, logvar_x=logvar_x, concept_khot=khot_train,
                      triples=recombination_triples(train_c, train_c, space.sizes, cfg.symbols.max_triples,
                                                    cfg.symbols.seed))
    encode_seconds = time.perf_counter() - t0
    seed_everything(cfg.train.seed)  # the initial weights are part of what the seed fixes
    symbols = SymbolVAE(space.dim, vision.latent_dim, cfg.model)
    ops = Recombination(cfg.model)
    resumed = state_path.exists()
    writer = SummaryWriter(str(run_dir / "tb"))
    try:
        trained = train_scan(symbols, ops, cache, cfg.train, run_dir, progress=progress, writer=writer,
                             extra={"config": to_dict(cfg), "vision_sha256": vision_sha})
        t1 = time.perf_counter()
        results = evaluate(cfg, space, train_c, held_c, symbols, ops, vision, data, run_dir, progress)
        eval_seconds = time.perf_counter() - t1
        _log_results(writer, results)
    finally:
        writer.close()
    summary = {
        "vision": {"checkpoint": str(vision_path), "family": vision.family, "latent_dim": vision.latent_dim,
                   "sha256": vision_sha},
        "symbols": {"names": space.names, "groups": [g.name for g in space.groups],
                    "concepts": {"train": int(len(train_c)), "heldout": int(len(held_c))},
                    "examples_per_concept": cfg.symbols.examples_per_concept,
                    "labelled_pairs": int(len(pair_concept)),
                    "operator_triples": {op: int(len(v)) for op, v in cache.triples.items()}},
        "resumed": resumed,
        "terms": trained["terms"],
        "seconds": {"encode": round(encode_seconds, 2), "train": trained["train_seconds"], "eval": round(eval_seconds, 2)},
        **results,
        "eval_config": to_dict(cfg.eval),
    }
    atomic_write_json(summary_path, summary)
    return summary


def _log_results(writer: Any, results: dict[str, Any]) -> None:
    for g, v in results["img2sym"].items():
        writer.add_scalar(f"eval/img2sym/{g}", v, 0)
    for split, r in results["sym2img"].items():
        r = r.get("scan", r)
        if r.get("match") is not None:
            writer.add_scalar(f"eval/sym2img_{split}/match", r["match"], 0)
        if r.get("diversity") is not None:
            writer.add_scalar(f"eval/sym2img_{split}/diversity", r["diversity"], 0)
    for op, r in results["recombination"].items():
        if "operator" in r and r["operator"]["match"] is not None:
            writer.add_scalar(f"eval/recombination/{op}/match", r["operator"]["match"], 0)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.0f}%"


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The run's headline numbers as a few printable lines."""
    s2 = summary["sym2img"]
    lines = [
        "img→sym accuracy: " + ", ".join(f"{g} {_pct(v)}" for g, v in summary["img2sym"].items()),
        f"sym→img match / diversity: train {_pct(s2['train']['scan']['match'])} / {_pct(s2['train']['scan']['diversity'])}"
        + (f", held-out {_pct(s2['heldout']['scan']['match'])} / {_pct(s2['heldout']['scan']['diversity'])}" if "heldout" in s2 else "")
        + f" (real images {_pct(s2['train']['real_images']['match'])}, prior {_pct(s2['prior']['match'])})",
        "recombination to held-out concepts (match): " + ", ".join(
            f"{op} {_pct(r['operator']['match'])}" for op, r in summary["recombination"].items() if "operator" in r),
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m darla.scan", description=__doc__.splitlines()[0])
    parser.add_argument("--vision", default=None, help="stage-1 run directory or checkpoint (sets vision.run)")
    parser.add_argument("--config", default=None, help="YAML config (configs/scan/); default: the schema's dSprites symbols")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. symbols.examples_per_concept=10")
    args = parser.parse_intermixed_args(argv)  # options may follow the overrides
    overrides = list(args.overrides) + ([f"vision.run={args.vision}"] if args.vision is not None else [])
    try:
        cfg = load_config(ScanConfig, args.config, overrides)
        summary = run(cfg, progress=not args.no_progress)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    for line in summary_lines(summary):
        print(line)
    print(f"scan done: run dir {cfg.run.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
