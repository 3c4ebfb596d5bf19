"""Stage 1 — learn to see: ``python -m darla.stage1 --config configs/dsprites/beta_vae.yaml [key=value ...]``.

Builds the frame store (procedural dSprites, frames collected from an environment, or a saved ``.npz``), trains
the configured model family, and (optionally) scores it with the metric suite. Rerunning the same command on an
existing run directory resumes it; a finished run returns at once.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from darla.config import ConfigError, DataConfig, Stage1Config, to_dict
from darla.runs import STAGES, import_env_modules, prepare_run_dir, stage_cli, undo_failed_start
from vision.checkpoint import CHECKPOINT_NAME
from vision.data.dsprites import DSprites
from vision.data.frames import FrameStore, load_image_folder
from vision.models import MODEL_FAMILIES, build_model
from vision.runtime import atomic_write_json, seed_everything
from vision.train import RESTARTS_NAME, TrainingDiverged, TrainResult, select_restart, train

FRAMES_NAME = "frames.npz"
DOMAIN_INVARIANCE = "domain_invariance"  # scored on the env (darla.metrics.env_domain_invariance), not the suite


FRAME_SIZE = (64, 64)  # (H, W) every env or image-folder frame is resized to: the conv64 networks' input


def collect_store(data: DataConfig, progress: bool = True) -> FrameStore:
    """Collect ``data.num_images`` frames from ``data.env_id`` (any Gymnasium id), resized to :data:`FRAME_SIZE`."""
    from envs.collect import collect_frames
    from vision.images import resize_frames

    import_env_modules(data.imports, "data.imports")
    got = collect_frames(data.env_id, data.num_images, coverage=data.coverage, policy=data.policy,
                         seed=data.seed, env_kwargs=dict(data.env_kwargs), progress=progress,
                         transform=lambda f: resize_frames(f, FRAME_SIZE))
    return FrameStore(got.frames, got.factors if got.factor_names else None, tuple(got.factor_names),
                      tuple(got.factor_sizes))


def build_frames(data: DataConfig, run_dir: Path, progress: bool = True) -> FrameStore:
    """The training frames for ``data``. Collected env frames are stored in the run directory and reused."""
    if data.source == "dsprites":
        # Re-rendered from the seed each time (a few seconds) rather than stored: 100k images are 400 MB.
        ds = DSprites()
        factors = ds.sample_factors(data.num_images, np.random.default_rng(data.seed))
        return FrameStore(ds.render(factors), factors, ds.factor_names, ds.factor_sizes)
    if data.source == "frames":
        return load_image_folder(data.path, FRAME_SIZE) if Path(data.path).is_dir() else FrameStore.load(data.path)
    cached = run_dir / FRAMES_NAME
    if cached.exists():
        return FrameStore.load(cached)
    store = collect_store(data, progress)
    store.save(cached)
    return store


def ground_truth_for(data: DataConfig) -> Any:
    """The GroundTruthData the metric suite scores against: dSprites, or the env's own scene renderer."""
    if data.source == "dsprites":
        return DSprites()
    if data.env_id:  # env frames (collected here or saved earlier): the env renders its own factors
        from envs import scene_data

        return scene_data(data.env_id, domain="all", **dict(data.env_kwargs))
    raise ConfigError("eval.metrics: metrics need ground-truth factors; set data.env_id to the env the frames came from")


def training_ground_truth(cfg: Stage1Config) -> Any:
    """The ground truth a model that renders its own batches (DC-IGN) trains on: dSprites, or the env's scene over
    the domain ``data.coverage`` collects from, so such a model sees no factor value the stored frames could not."""
    family = cfg.model.family
    if cfg.data.source == "dsprites":
        return DSprites()
    if not cfg.data.env_id:
        raise ConfigError(f"model.family: {family!r} renders its batches from ground-truth factors and these frames "
                          "have none; use data.source=dsprites or data.env_id of an env that reports factors")
    from envs import scene_data
    from envs.collect import coverage_domain

    try:
        return scene_data(cfg.data.env_id, domain=coverage_domain(cfg.data.coverage), **dict(cfg.data.env_kwargs))
    except ValueError as e:
        raise ConfigError(f"model.family: {family!r} renders its batches from ground-truth factors; {e}") from None


def suite_metrics(cfg: Stage1Config) -> list[str]:
    """``cfg.eval.metrics`` without the env metric (domain invariance is scored on the env, at the end only)."""
    return [m for m in cfg.eval.metrics if m != DOMAIN_INVARIANCE]


def headline_scores(cfg: Stage1Config) -> Callable[[Any], dict[str, float]]:
    """model -> the headline score of each of ``cfg.eval.metrics`` (scored during training, quietly)."""
    from vision.metrics import encoder_from_model, evaluate
    from vision.metrics.registry import parse_name

    data = ground_truth_for(cfg.data)
    suite = suite_metrics(cfg)

    def score(model: Any) -> dict[str, float]:
        if not suite:
            return {}
        got = evaluate(data, encoder_from_model(model), names=suite, num_points=cfg.eval.num_points,
                       seed=cfg.eval.seed, progress=False)
        return {key: float(r["scores"][parse_name(key)[0].primary]) for key, r in got.items()}

    return score


def check_config(cfg: Stage1Config) -> None:
    """Check what a run would otherwise find out only after creating its run directory (and, for env data,
    after minutes of collecting frames): the model family, the env id, the eval metrics' needs."""
    if cfg.model.family not in MODEL_FAMILIES:
        raise ConfigError(f"model.family: unknown family {cfg.model.family!r}; choose from {sorted(MODEL_FAMILIES)}")
    if cfg.data.env_id:
        import gymnasium as gym

        import envs  # registers darla's ids

        import_env_modules(cfg.data.imports, "data.imports")
        try:
            gym.spec(cfg.data.env_id)
        except gym.error.Error:
            raise ConfigError(f"data.env_id: {cfg.data.env_id!r} is not a registered Gymnasium id (a third-party id "
                              f"needs its module in data.imports); darla's ids are {', '.join(envs.ENV_IDS)}") from None
        if cfg.data.env_id not in envs.ENV_IDS:
            if cfg.data.coverage != "source":
                raise ConfigError(f"data.coverage: {cfg.data.env_id!r} has no named domains; use 'source'")
            if cfg.data.policy != "random":
                raise ConfigError(f"data.policy: {cfg.data.env_id!r} has no scripted policy; use 'random'")
            if cfg.eval.metrics:
                raise ConfigError(f"eval.metrics: {cfg.data.env_id!r} reports no ground-truth factors to score "
                                  "against; set eval.metrics=[]")
    elif cfg.data.source == "frames" and cfg.eval.metrics:
        raise ConfigError("eval.metrics: frames from data.path carry no ground-truth factors to score against; "
                          "set eval.metrics=[]")
    if DOMAIN_INVARIANCE in cfg.eval.metrics and not cfg.data.env_id:
        raise ConfigError("eval.metrics: domain_invariance renders scenes in each domain; it needs data.env_id")
    if hasattr(MODEL_FAMILIES[cfg.model.family], "batch_sampler"):  # renders its batches: the data must have factors
        training_ground_truth(cfg)


def _chosen_seconds(restarts: dict[str, Any]) -> float:
    return float(restarts["candidates"][restarts["chosen"]]["train_seconds"])


def run(cfg: Stage1Config, progress: bool = True) -> dict[str, Any]:
    """Execute a stage-1 run end to end; returns the summary also written to ``RUN_DIR/stage1.json``."""
    check_config(cfg)
    # A start that fails before training leaves no run directory behind, so the corrected command is not refused
    # as "a different config".
    with undo_failed_start(cfg.run.dir):
        run_dir, resuming = prepare_run_dir(cfg.run.dir, cfg, "stage1", cfg.run.resume,
                                            ignore=STAGES["stage1"].resumable)
        store = build_frames(cfg.data, run_dir, progress)
        h, w, c = store.observation_shape
        seed_everything(cfg.train.seed)  # the initial weights are part of what the seed fixes
        model = build_model(cfg.model, (c, h, w), len(store))
        ground_truth = None
        if hasattr(model, "batch_sampler"):  # it draws its own batches: check it can on this data before training
            ground_truth = training_ground_truth(cfg)
            model.batch_sampler(store, ground_truth)
    summary_path = run_dir / "stage1.json"
    restarts = None
    if cfg.train.restarts > 1:
        restarts_path = run_dir / RESTARTS_NAME
        if (run_dir / CHECKPOINT_NAME).exists() and restarts_path.exists():  # chosen earlier: resume the winner
            restarts = json.loads(restarts_path.read_text())
        else:
            restarts = select_restart(lambda: build_model(cfg.model, (c, h, w), len(store)), store, cfg.train, run_dir,
                                      progress=progress, extra={"config": to_dict(cfg)}, ground_truth=ground_truth)
    result: TrainResult = train(model, store, cfg.train, run_dir, progress=progress, extra={"config": to_dict(cfg)},
                                evaluate=headline_scores(cfg) if cfg.eval.every else None, eval_every=cfg.eval.every,
                                ground_truth=ground_truth)
    if result.resumed_from >= cfg.train.steps and summary_path.exists():
        summary: dict[str, Any] = json.loads(summary_path.read_text())  # already finished: its summary stands
    else:
        summary = {
            "family": cfg.model.family,
            "step": result.step,
            "resumed_from": result.resumed_from,
            "terms": result.terms,
            **({"kl_per_latent": result.kl_per_latent, "active_latents": int(sum(k > 0.01 for k in result.kl_per_latent))}
               if model.stochastic else {}),
            # the whole run's training time, summed over resumes, with the restart candidates that lost
            "train_seconds": round(result.train_seconds + (restarts["seconds"] - _chosen_seconds(restarts) if restarts else 0.0), 2),
            **({"restarts": {k: restarts[k] for k in ("metric", "steps", "chosen")}} if restarts else {}),
            "images_per_second": result.images_per_second,
            "num_frames": len(store),
            "checkpoint": result.checkpoint,
        }
    if cfg.eval.metrics:
        from vision.metrics import encoder_from_model, evaluate

        model.eval()
        suite = suite_metrics(cfg)
        scores = evaluate(ground_truth_for(cfg.data), encoder_from_model(model), names=suite,
                          num_points=cfg.eval.num_points, seed=cfg.eval.seed, progress=progress) if suite else {}
        if DOMAIN_INVARIANCE in cfg.eval.metrics:
            from darla.metrics import env_domain_invariance

            scores[DOMAIN_INVARIANCE] = env_domain_invariance(model, cfg.data.env_id, seed=cfg.eval.seed,
                                                              env_kwargs=dict(cfg.data.env_kwargs))
        atomic_write_json(run_dir / "metrics.json", scores)
        from darla.metrics import log_tensorboard

        log_tensorboard(run_dir / "tb", scores, int(summary["step"]))
        summary["metrics"] = str(run_dir / "metrics.json")
    atomic_write_json(summary_path, summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    try:
        got = stage_cli("python -m darla.stage1", __doc__.splitlines()[0], Stage1Config, run, argv,
                        "model.beta=8 train.steps=2000")
    except TrainingDiverged as e:  # not a usage error (status 2): the config was valid, the optimisation failed
        print(f"error: training diverged: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    if got is None:
        return 2
    cfg, summary = got
    kl = ""
    if "kl_per_latent" in summary:
        kl = "; KL per latent (sorted) [" + ", ".join(f"{k:.2f}" for k in sorted(summary["kl_per_latent"], reverse=True)) + "]"
    print(f"stage1 done: {summary['family']} step {summary['step']} loss {summary['terms'].get('loss', float('nan')):.2f} "
          f"recon {summary['terms'].get('recon', float('nan')):.2f}{kl}; run dir {cfg.run.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
