"""Model selection: ``python -m darla.select --sweep SWEEP_DIR`` (vision, UDR) or ``--agents SWEEP_DIR`` (agents).

Ranks the stage-1 models of a sweep by UDR (Unsupervised Disentanglement Ranking, Duan et al. 2020), which
needs no labels: models trained with the same hyper-parameters and different seeds should agree, up to
permutation and sign, on their latents when those latents are disentangled, and disagree when they are not.

1. Group the sweep's trials into settings: trials whose swept values differ only in seed keys (``*.seed``).
2. Encode one shared set of inputs, drawn from the sweep's training distribution, with every model
   (posterior means; per-latent KL on the same inputs marks latents with KL < 0.01 inactive).
3. For every model, score it against P other models of its setting (all of them by default) with the pairwise
   UDR of :mod:`vision.metrics.udr`.
4. A model's UDR is the median of its P pairwise scores; the sweep's UDR-best model is the one with the highest.

Where the trials have supervised scores (``metrics.json``: set ``eval.metrics`` in the sweep), the selection
also reports how the UDR ranking agrees with each of them (Spearman ρ with a bootstrap 95% CI over models).
The result is written to ``SWEEP_DIR/selection.json`` and ``selection.md``; :func:`best_vision_run` is the entry
point for pipelines ("the UDR-best vision module of sweep X").

``--agents`` selects agent settings from a finished stage-2 sweep with named variants (one bundle per agent
variant, e.g. ``configs/sweeps/sprites_tuning.yaml``): for each bundle, the setting whose mean final return on the
**source** domain, over its seeds, is highest (:func:`select_agents`). Target-domain returns are never read, so a
study tuned this way stays zero-shot. Written to ``SWEEP_DIR/agent_selection.json`` and ``agent_selection.md``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from darla.config import ConfigError, Stage1Config, load_config
from darla.sweep import SUMMARY_JSON, SWEEP_PLAN, value_label
from vision.checkpoint import CHECKPOINT_NAME, file_sha256, load
from vision.runtime import atomic_write_json, atomic_write_text, progress_bar, resolve_device

SELECTION_JSON = "selection.json"
SELECTION_MD = "selection.md"
AGENT_SELECTION_JSON = "agent_selection.json"
AGENT_SELECTION_MD = "agent_selection.md"
SELECTION_DOMAIN = "source"  # the only domain agent selection reads
CORRELATIONS = ("lasso", "spearman")
KL_THRESHOLD = 0.01  # Duan et al.: latents whose KL to the prior is below this are inactive


@dataclass
class Candidate:
    """A finished stage-1 trial of the sweep."""

    trial: str
    run_dir: Path
    setting: str  # swept values other than seeds, e.g. "model.beta=4"
    checkpoint_sha256: str


def _is_seed_key(key: str, seed_keys: Sequence[str] | None) -> bool:
    return key in seed_keys if seed_keys is not None else key.rsplit(".", 1)[-1] == "seed"


def candidates(sweep_dir: str | Path, seed_keys: Sequence[str] | None = None) -> list[Candidate]:
    """The sweep's finished stage-1 trials with their settings (swept values except seed keys)."""
    root = Path(sweep_dir)
    plan_path = root / SWEEP_PLAN
    if not plan_path.exists():
        raise FileNotFoundError(f"--sweep: {root} holds no {SWEEP_PLAN}; run python -m darla.sweep on it first")
    plan = json.loads(plan_path.read_text())
    if plan["stage"] != "stage1":
        raise ConfigError(f"--sweep: {root} is a {plan['stage']} sweep; UDR selects stage-1 vision modules")
    out = []
    for t in plan["trials"]:
        run_dir = Path(t["run_dir"])
        if not (run_dir / "stage1.json").exists() or not (run_dir / CHECKPOINT_NAME).exists():
            continue
        kept = [f"{k}={value_label(v)}" for k, v in t["params"].items() if not _is_seed_key(k, seed_keys)]
        out.append(Candidate(t["name"], run_dir, ",".join(kept) or "all", file_sha256(run_dir / CHECKPOINT_NAME)))
    if not out:
        raise FileNotFoundError(f"--sweep: {root} has no finished stage-1 trial yet")
    return out


def udr_inputs(run_dir: Path, num_points: int, seed: int) -> np.ndarray:
    """``num_points`` uint8 images from the training distribution of the stage-1 run in ``run_dir``."""
    from darla.stage1 import build_frames
    from vision.data.dsprites import DSprites

    cfg = load_config(Stage1Config, run_dir / "config.yaml")
    rng = np.random.default_rng(seed)
    if cfg.data.source == "dsprites":  # render just what is needed: the data are i.i.d. factor draws
        ds = DSprites()
        return ds.render(ds.sample_factors(num_points, rng))
    store = build_frames(cfg.data, run_dir, progress=False)
    index = np.sort(rng.choice(len(store), size=min(num_points, len(store)), replace=False))
    return store.frames[index]


def encode_candidate(run_dir: Path, images: np.ndarray, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means (N, D) and mean per-latent KL on ``images`` (D,) of the model in ``run_dir``."""
    from vision.metrics.representation import encoder_from_model, mean_kl

    model = load(run_dir, device)
    if not model.stochastic:
        raise ConfigError(f"--sweep: {run_dir} holds a deterministic {model.family!r} model; UDR needs posterior KLs")
    mu, logvar = encoder_from_model(model)(images)
    assert logvar is not None  # stochastic models always return log-variances
    return mu, mean_kl(mu, logvar)


def udr_by_setting(codes: Sequence[np.ndarray], kls: Sequence[np.ndarray], settings: Sequence[str], *,
                   correlation: str = "lasso", pairs: int = 0, seed: int = 0) -> tuple[list[float], list[dict[int, float]]]:
    """Each model's UDR against the other models of its setting, and its pairwise scores {partner index: score}.

    ``codes[i]`` (n, D_i) are model i's posterior means on inputs shared by all models, ``kls[i]`` (D_i,) its mean
    KL per latent, ``settings[i]`` its hyper-parameter setting. A model is compared with ``pairs`` partners of its
    setting (0: all of them) and scores the median of those comparisons; alone in its setting, it scores NaN.
    """
    from vision.metrics.udr import compute_udr

    udr = [math.nan] * len(codes)
    pairwise: list[dict[int, float]] = [{} for _ in codes]
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(settings):
        groups.setdefault(s, []).append(i)
    for idx in groups.values():
        if len(idx) < 2:
            continue
        res = compute_udr([codes[i] for i in idx], [kls[i] for i in idx], correlation=correlation,
                          kl_threshold=KL_THRESHOLD, num_pairs=None if pairs <= 0 else min(pairs, len(idx) - 1),
                          seed=seed)
        matrix = np.asarray(res["details"]["pairwise"], dtype=float)  # [partner, model]; NaN: not compared
        for k, i in enumerate(idx):
            udr[i] = float(res["scores"][f"model_{k}"])
            pairwise[i] = {idx[j]: float(matrix[j, k]) for j in range(len(idx)) if math.isfinite(matrix[j, k])}
    return udr, pairwise


def select(
    sweep_dir: str | Path,
    *,
    correlation: str = "lasso",
    num_points: int = 1_000,
    pairs: int = 0,
    seed: int = 0,
    seed_keys: Sequence[str] | None = None,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """UDR-rank the finished stage-1 trials of a sweep; writes and returns ``SWEEP_DIR/selection.json``."""
    if correlation not in CORRELATIONS:
        raise ConfigError(f"--correlation: unknown {correlation!r}; choose from {CORRELATIONS}")
    if num_points < 10:
        raise ConfigError(f"--num-points: need at least 10 inputs, got {num_points}")
    root = Path(sweep_dir)
    cands = candidates(root, seed_keys)
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(cands):
        groups.setdefault(c.setting, []).append(i)
    if all(len(m) < 2 for m in groups.values()):
        raise ConfigError(f"--sweep: UDR compares models of one setting trained with different seeds; no setting of "
                          f"{root} has two finished trials (settings: {', '.join(groups)})")

    dev = resolve_device(device)
    images = udr_inputs(cands[0].run_dir, num_points, seed)
    codes, kls = [], []
    for c in progress_bar(cands, desc="encode", disable=not progress, dynamic_ncols=True):
        mu, kl = encode_candidate(c.run_dir, images, dev)
        codes.append(mu)
        kls.append(kl)

    udr, pairwise = udr_by_setting(codes, kls, [c.setting for c in cands], correlation=correlation, pairs=pairs,
                                   seed=seed)
    models = [{
        "trial": c.trial, "run_dir": str(c.run_dir), "setting": c.setting, "udr": udr[i],
        "pairwise": {cands[j].trial: v for j, v in pairwise[i].items()}, "active_latents": int((kls[i] > KL_THRESHOLD).sum()),
        "kl_per_latent": [float(x) for x in kls[i]], "metrics": _supervised_scores(c.run_dir),
    } for i, c in enumerate(cands)]
    ranked = sorted((m for m in models if math.isfinite(m["udr"])), key=lambda m: -m["udr"])
    for rank, m in enumerate(ranked, 1):
        m["rank"] = rank
    by_setting = {s: [m["udr"] for m in models if m["setting"] == s] for s in groups}
    settings = [{"setting": s, "models": len(u), "median_udr": _nanmedian(u)} for s, u in by_setting.items()]
    result: dict[str, Any] = {
        "sweep": str(root.resolve()),
        "udr": {"correlation": correlation, "num_points": len(images), "pairs": pairs or "all", "seed": seed,
                "kl_threshold": KL_THRESHOLD, "representation": "posterior mean",
                "aggregation": "median over the pairwise scores with other seeds of the same setting",
                "inputs": f"{len(images)} images from the training distribution of {cands[0].trial}"},
        "seed_keys": list(seed_keys) if seed_keys is not None else "*.seed",
        "best": {k: ranked[0][k] for k in ("trial", "run_dir", "setting", "udr")},
        "models": ranked + [m for m in models if not math.isfinite(m["udr"])],
        "settings": sorted(settings, key=lambda s: -s["median_udr"] if math.isfinite(s["median_udr"]) else math.inf),
        "correlation_with_supervised": _correlations(ranked),
        "checkpoints": {c.trial: c.checkpoint_sha256 for c in cands},
    }
    atomic_write_json(root / SELECTION_JSON, result)
    atomic_write_text(root / SELECTION_MD, selection_markdown(result))
    return result


def _nanmedian(xs: Sequence[float]) -> float:
    finite = [x for x in xs if math.isfinite(x)]
    return float(np.median(finite)) if finite else math.nan


def _supervised_scores(run_dir: Path) -> dict[str, float]:
    from darla.report import flatten_scores

    path = run_dir / "metrics.json"
    return flatten_scores(json.loads(path.read_text())) if path.exists() else {}


def _correlations(models: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Spearman ρ (bootstrap 95% CI) between UDR and every supervised score all ranked models share."""
    from darla.report import spearman_with_ci

    if len(models) < 3:
        return {}
    keys = sorted(set.intersection(*(set(m["metrics"]) for m in models)))
    udr = [m["udr"] for m in models]
    out = {}
    for k in keys:
        xs = [m["metrics"][k] for m in models]
        if np.ptp(xs) == 0 or np.ptp(udr) == 0:
            continue  # ρ is undefined for a constant score
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[k] = spearman_with_ci(udr, xs)
    return out


def _f(x: Any) -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.3f}" if isinstance(x, float) else str(x)


def selection_markdown(result: dict[str, Any]) -> str:
    """The selection as Markdown: ranking, per-setting medians, correlation with supervised scores."""
    u = result["udr"]
    metric_keys = list(result["correlation_with_supervised"])
    lines = [f"# UDR selection: {Path(result['sweep']).name}", "",
             f"UDR ({u['correlation']}, {u['num_points']} inputs, pairs: {u['pairs']}, KL < {u['kl_threshold']} "
             f"inactive); {u['aggregation']}.", "",
             f"**Best:** `{result['best']['trial']}` (UDR {_f(result['best']['udr'])}) → {result['best']['run_dir']}", "",
             "| " + " | ".join(["rank", "trial", "setting", "UDR", "active latents", *metric_keys]) + " |",
             "|---|---|---|---|---|" + "---|" * len(metric_keys)]
    for m in result["models"]:
        cells = [m.get("rank", "–"), m["trial"], m["setting"], _f(m["udr"]), m["active_latents"],
                 *(_f(m["metrics"].get(k)) for k in metric_keys)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", "| setting | models | median UDR |", "|---|---|---|"]
    lines += [f"| {s['setting']} | {s['models']} | {_f(s['median_udr'])} |" for s in result["settings"]]
    if metric_keys:
        lines += ["", "UDR vs supervised scores (Spearman over models):", "", "| score | ρ | 95% CI | n |", "|---|---|---|---|"]
        for k, c in result["correlation_with_supervised"].items():
            lines.append(f"| {k} | {_f(c['rho'])} | [{_f(c['ci_low'])}, {_f(c['ci_high'])}] | {c['n']} |")
    return "\n".join(lines) + "\n"


def best_vision_run(sweep_dir: str | Path, **kwargs: Any) -> Path:
    """The run directory of the UDR-best stage-1 model of a sweep.

    Reuses ``SWEEP_DIR/selection.json`` when it was computed on exactly the sweep's current finished models
    (same trials, same checkpoint bytes) and, where given, with the same ``correlation`` and ``seed``; otherwise
    runs :func:`select` with ``kwargs`` (which rewrites it).
    """
    root = Path(sweep_dir)
    path = root / SELECTION_JSON
    if path.exists():
        saved = json.loads(path.read_text())
        current = {c.trial: c.checkpoint_sha256 for c in candidates(root, kwargs.get("seed_keys"))}
        same_args = all(saved["udr"].get(k) == v for k, v in kwargs.items() if k in ("correlation", "seed"))
        if saved.get("checkpoints") == current and same_args:
            return Path(saved["best"]["run_dir"])
    kwargs.setdefault("progress", False)
    return Path(select(root, **kwargs)["best"]["run_dir"])


def select_agents(sweep_dirs: str | Path | Sequence[str | Path], seed_keys: Sequence[str] | None = None,
                  out: str | Path | None = None) -> dict[str, Any]:
    """Per named variant of finished stage-2 sweeps, the setting with the highest mean final source return.

    Trials are grouped by their variant bundle, then by their swept values other than seed keys (``*.seed``
    unless ``seed_keys`` names them); a setting's score is the mean over its seeds of ``reward/source`` (the last
    training-time evaluation on the source domain). Given several sweeps, a variant's settings from all of them
    compete, each labelled with its sweep's name (e.g. the same grid over two vision modules). Ties go to the
    setting listed first. Writes ``agent_selection.json`` / ``.md`` into ``out`` (default: the one sweep
    directory; required for several); a trial without a result is a one-line error.
    """
    roots = [Path(sweep_dirs)] if isinstance(sweep_dirs, (str, Path)) else [Path(d) for d in sweep_dirs]
    if not roots:
        raise ValueError("--agents: name at least one sweep directory")
    if out is None and len(roots) > 1:
        raise ValueError("--out: required with several sweep directories (where the selection is written)")
    key = f"reward/{SELECTION_DOMAIN}"
    groups: dict[str, dict[str, list[float]]] = {}
    settings: dict[str, dict[str, dict[str, Any]]] = {}
    for root in roots:
        summary_path = root / SUMMARY_JSON
        if not summary_path.exists():
            raise FileNotFoundError(f"--agents: {summary_path} not found; run the stage-2 sweep first (python -m darla.sweep)")
        summary = json.loads(summary_path.read_text())
        if summary.get("stage") != "stage2":
            raise ValueError(f"--agents: {root} is a {summary.get('stage')} sweep; agent selection needs a stage-2 sweep")
        for row in summary["trials"]:
            if key not in row.get("result", {}):
                raise ValueError(f"--agents: trial {row['trial']} of {root} has no {key} ({row['status']}); finish the sweep first")
            params = dict(row["params"])
            variant = params.pop("variant", "")
            swept = {k: v for k, v in params.items() if not _is_seed_key(k, seed_keys)}
            label = ",".join(f"{k}={value_label(v)}" for k, v in swept.items()) or "-"
            if len(roots) > 1:
                label, swept = f"{root.name}: {label}", {"sweep": str(root), **swept}
            groups.setdefault(variant, {}).setdefault(label, []).append(float(row["result"][key]))
            settings.setdefault(variant, {})[label] = swept
    chosen: dict[str, Any] = {}
    for variant, by_setting in groups.items():
        means = {label: float(np.mean(v)) for label, v in by_setting.items()}
        best = max(means, key=lambda label: means[label])  # max keeps the first of equal scores
        chosen[variant or "-"] = {"best": best, "settings": settings[variant][best], "domain": SELECTION_DOMAIN,
                                  "mean_return": means, "returns": by_setting}
    result = {"sweep": str(roots[0].resolve()) if len(roots) == 1 else [str(r.resolve()) for r in roots],
              "domain": SELECTION_DOMAIN, "variants": chosen}
    dest = Path(out) if out is not None else roots[0]
    atomic_write_json(dest / AGENT_SELECTION_JSON, result)
    atomic_write_text(dest / AGENT_SELECTION_MD, agent_selection_markdown(result))
    return result


def agent_selection_markdown(result: dict[str, Any]) -> str:
    """The agent selection as a Markdown table: every variant's settings, their mean source return, the choice."""
    lines = [f"Mean final return on the {result['domain']} domain over seeds (the only domain read); * = chosen.", "",
             "| variant | setting | seeds | mean return |", "|---|---|---:|---:|"]
    for variant, v in result["variants"].items():
        for label, mean in v["mean_return"].items():
            mark = " *" if label == v["best"] else ""
            lines.append(f"| {variant} | {label}{mark} | {len(v['returns'][label])} | {mean:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m darla.select", description=__doc__.splitlines()[0])
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--sweep", help="a stage-1 sweep directory (python -m darla.sweep output): UDR ranking")
    what.add_argument("--agents", nargs="+", metavar="SWEEP",
                      help="stage-2 sweep directories with named variants: best setting per variant by mean final "
                           "source return, over all of them")
    p.add_argument("--out", help="where --agents writes its selection (default: the one sweep directory)")
    p.add_argument("--correlation", default="lasso", choices=CORRELATIONS, help="UDR similarity (default: lasso)")
    p.add_argument("--num-points", type=int, default=1_000, help="shared inputs encoded by every model")
    p.add_argument("--pairs", type=int, default=0, help="partners per model (P); 0: every other seed of its setting")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seed-keys", nargs="+", default=None,
                   help="swept keys that are seeds, not hyper-parameters (default: every key ending in .seed)")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    if a.agents:
        try:
            chosen = select_agents(a.agents, seed_keys=a.seed_keys, out=a.out)
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(agent_selection_markdown(chosen))
        print(f"written: {Path(a.out or a.agents[0]) / AGENT_SELECTION_JSON}")
        return 0
    try:
        result = select(a.sweep, correlation=a.correlation, num_points=a.num_points, pairs=a.pairs, seed=a.seed,
                        seed_keys=a.seed_keys, device=a.device, progress=not a.no_progress)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(selection_markdown(result))
    print(f"written: {Path(a.sweep) / SELECTION_JSON}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
