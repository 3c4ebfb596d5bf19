"""Reports: the transfer table and plot, ``python -m darla.report correlation`` — disentanglement vs transfer — and
``python -m darla.report acquisition`` — the order in which a stage-1 model's latents take up the factors.

``correlation`` relates each vision module's stage-1 metric scores to the zero-shot target-domain returns of the
agents trained on it (Spearman ρ with a bootstrap 95% CI over vision modules, and a scatter plot): the paper's
central claim, measured.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from vision.runtime import atomic_write_bytes, atomic_write_json, atomic_write_text  # noqa: E402


def _fmt(x: float) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.2f}"


def _ci(v: dict[str, Any], key: str = "iqm") -> str:
    lo, hi = v[f"{key}_ci"] if f"{key}_ci" in v else v["ci"]
    val = v[key] if key in v else v["value"]
    return f"{_fmt(val)} [{_fmt(lo)}, {_fmt(hi)}]"


def transfer_markdown(result: dict[str, Any]) -> str:
    """Markdown tables of a ``darla.transfer`` result: per variant IQM [95% CI] per domain, ratio, gap."""
    variants = result["variants"]
    if not variants:
        return "No runs.\n"
    domains: list[str] = []
    for row in variants.values():
        domains += [d for d in row["domains"] if d not in domains]
    head = ["variant", "algo", "seeds", *[f"{d} IQM [95% CI]" for d in domains], "all targets IQM", "transfer ratio", "gap"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in variants.items():
        cells = [name, row["algo"], str(len(row["seeds"]))]
        cells += [_ci(row["domains"][d]) if d in row["domains"] else "–" for d in domains]
        cells.append(_ci(row["target"]) if "target" in row else "–")
        cells.append(_ci(row["transfer_ratio"], "value") if "transfer_ratio" in row else "–")
        cells.append(_ci(row["generalisation_gap"], "value") if "generalisation_gap" in row else "–")
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    text += (f"\nIQM of per-seed mean episode return, {result.get('episodes', '?')} episodes per domain and seed, "
             "stratified-bootstrap 95% CIs (rliable). Transfer ratio = IQM(targets) / IQM(source); "
             "gap = IQM(source) − IQM(targets).\n")
    poi = result.get("probability_of_improvement", {})
    if poi:
        # One column per target where there are several: a held-out target and an extrapolation target (values
        # never seen in stage 1) are different claims, so neither hides inside the pooled column.
        by_target = result.get("probability_of_improvement_by_target", {})
        head = ["P(X > Y)", "all targets [95% CI]", *[f"{d} [95% CI]" for d in by_target]]
        text += "\n| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n"
        for k, v in poi.items():
            cells = [k, _ci(v, "value"), *[_ci(t[k], "value") if k in t else "–" for t in by_target.values()]]
            text += "| " + " | ".join(cells) + " |\n"
    inv = result.get("policy_invariance", {})
    if inv:
        text += ("\n| variant | target | policy invariance | action agreement | invariance of the latents it reads |\n"
                 "|---|---|---|---|---|\n")
        for variant, targets in inv.items():
            for target, scores in targets.items():
                cells = [f"{scores[k]['mean']:.3f} ± {scores[k]['sd']:.3f}" if k in scores else "–"
                         for k in ("policy_invariance", "action_agreement", "latent_invariance")]
                text += f"| {variant} | {target} | " + " | ".join(cells) + " |\n"
        text += ("\nMean ± sd over seeds, the same scenes rendered in the source and each target: policy invariance "
                 "= 1 − (action change on the same scene) / (action change between two source scenes); the latents' "
                 "domain invariance is weighted by the policy's sensitivity to each.\n")
        for target, rho in result.get("policy_invariance_correlation", {}).items():
            text += (f"\nSpearman ρ between each run's policy invariance and its mean return on {target}: "
                     f"{rho['rho']:.2f} [{rho['ci_low']:.2f}, {rho['ci_high']:.2f}] (n = {rho['n']} runs).\n")
    return text


def _save_fig(fig: Any, path: str | Path) -> Path:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def transfer_plot(result: dict[str, Any], path: str | Path) -> Path:
    """Grouped bars: IQM return per variant on each domain, with 95% CI error bars (zero-width for one seed)."""
    variants = list(result["variants"])
    domains: list[str] = []
    for row in result["variants"].values():
        domains += [d for d in row["domains"] if d not in domains]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(variants) * max(1, len(domains)) / 2 + 2), 3.6))
    width = 0.8 / max(1, len(domains))
    x = np.arange(len(variants))
    for j, d in enumerate(domains):
        vals, lo, hi = [], [], []
        for v in variants:
            s = result["variants"][v]["domains"].get(d)
            vals.append(s["iqm"] if s else np.nan)
            lo.append(s["iqm"] - s["iqm_ci"][0] if s else 0)
            hi.append(s["iqm_ci"][1] - s["iqm"] if s else 0)
        ax.bar(x + (j - (len(domains) - 1) / 2) * width, vals, width, yerr=[lo, hi], capsize=3, label=d)
    ax.set_xticks(x, variants, rotation=20)
    ax.set_ylabel("IQM episode return")
    ax.axhline(0, color="k", lw=0.5)
    ax.legend(title="domain", fontsize=8)
    # a CI over one seed has zero width: the title claims one only when every variant has several seeds
    several = all(len(row.get("seeds", [])) > 1 for row in result["variants"].values())
    ax.set_title("Zero-shot transfer (IQM, 95% bootstrap CI over seeds)" if several else
                 "Zero-shot transfer (IQM; one seed for some variants: no CI)")
    return _save_fig(fig, path)


def invariance_correlation(result: dict[str, Any], reps: int = 2000) -> dict[str, Any]:
    """Per target domain of a ``darla.transfer`` result with policy invariance: Spearman ρ (95% CI) over the runs
    between each run's policy invariance and its mean return on that target (runs whose policy acts alike on
    every scene, invariance NaN, left out)."""
    out: dict[str, Any] = {}
    targets = sorted({t for r in result["runs"] if "policy_invariance" in r for t in r["policy_invariance"]["targets"]})
    for target in targets:
        pairs = [(r["policy_invariance"]["targets"][target]["policy_invariance"], float(np.mean(r["returns"][target])))
                 for r in result["runs"] if target in r.get("policy_invariance", {}).get("targets", {})
                 and target in r["returns"]]
        pairs = [(x, y) for x, y in pairs if np.isfinite(x)]
        if len(pairs) >= 3:
            xs, ys = zip(*pairs)
            out[target] = spearman_with_ci(xs, ys, reps=reps)
    return out


def invariance_plot(result: dict[str, Any], path: str | Path) -> Path:
    """Each run's mean target return against its policy invariance, one panel per target, coloured by variant."""
    runs = [r for r in result["runs"] if "policy_invariance" in r]
    targets = sorted({t for r in runs for t in r["policy_invariance"]["targets"]})
    fig, axes = plt.subplots(1, max(1, len(targets)), figsize=(4.2 * max(1, len(targets)), 3.6), squeeze=False)
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    colours = plt.get_cmap("tab10")
    for ax, target in zip(axes[0], targets):
        for i, v in enumerate(variants):
            pts = [(r["policy_invariance"]["targets"][target]["policy_invariance"], np.mean(r["returns"][target]))
                   for r in runs if r["variant"] == v and target in r["returns"]]
            if pts:
                ax.scatter(*zip(*pts), color=colours(i % 10), label=v, s=22)
        rho = result.get("policy_invariance_correlation", {}).get(target)
        ax.set_title(f"{target}" + (f": Spearman ρ {rho['rho']:.2f} [{rho['ci_low']:.2f}, {rho['ci_high']:.2f}]"
                                    if rho else ""), fontsize=9)
        ax.set_xlabel("policy invariance (same scene, source vs target)")
        ax.set_ylabel("mean return on the target")
    axes[0][-1].legend(fontsize=7)
    return _save_fig(fig, path)


# ----- disentanglement vs transfer ---------------------------------------------------------------------------
def flatten_scores(metrics_json: dict[str, Any]) -> dict[str, float]:
    """The scores of a stage-1 ``metrics.json`` as ``{"<result key>.<score>": value}``.

    Only each result's ``scores`` count (``details`` and ``params`` describe how they were computed).
    """
    out: dict[str, float] = {}
    for key, result in metrics_json.items():
        scores = result.get("scores", {}) if isinstance(result, dict) else {}
        for name, v in scores.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v):
                out[f"{key}.{name}"] = float(v)
    return out


def spearman_with_ci(x: Sequence[float], y: Sequence[float], reps: int = 2000, seed: int = 0) -> dict[str, float]:
    """Spearman ρ between paired samples, with a paired percentile-bootstrap 95% CI (scipy.stats.bootstrap)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    rho = float(stats.spearmanr(x, y).statistic)
    lo = hi = float("nan")
    if len(x) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
        with warnings.catch_warnings():  # resamples that repeat one module are constant: ρ is NaN there, skipped
            warnings.simplefilter("ignore")
            res = stats.bootstrap((x, y), lambda a, b: stats.spearmanr(a, b).statistic, paired=True, vectorized=False,
                                  n_resamples=reps, method="percentile", rng=np.random.default_rng(seed))
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return {"rho": rho, "ci_low": lo, "ci_high": hi, "n": int(len(x))}


def correlation(run_dirs: Sequence[str | Path], out_dir: str | Path, metric_keys: Sequence[str] = (),
                episodes: int = 20, udr: str | Path | Sequence[str | Path] | None = None) -> dict[str, Any]:
    """Relate the vision modules' metric scores to their agents' mean target-domain return.

    ``udr``: the ``selection.json`` of ``python -m darla.select --sweep`` over the same modules, or one per sweep
    when the modules come from several (UDR compares a model with the other seeds of its own setting, so
    selections of different sweeps join without changing a value); each module's UDR joins its metric scores as
    ``udr`` (the unsupervised score a user without labels would select by).
    """
    from darla.transfer import EVAL_SEED, evaluate_run

    per_vision: dict[str, list[float]] = defaultdict(list)
    for r in run_dirs:
        ev = evaluate_run(r, episodes, EVAL_SEED)
        targets = [d for d in ev.returns if d != ev.source]
        if not targets:
            raise ValueError(f"runs: {r} was evaluated on its source domain only; correlation needs target domains")
        vision = _vision_run_of(Path(r))
        per_vision[vision].append(float(np.mean([np.mean(ev.returns[d]) for d in targets])))
    modules = sorted(per_vision)
    scores = {}
    for m in modules:
        mpath = Path(m) / "metrics.json"
        if not mpath.exists():
            raise FileNotFoundError(f"runs: vision run {m} has no metrics.json (run python -m darla.metrics --run {m})")
        scores[m] = flatten_scores(json.loads(mpath.read_text()))
    if udr is not None:
        selections = [udr] if isinstance(udr, (str, Path)) else list(udr)
        by_run = {str(Path(x["run_dir"]).resolve()): x["udr"]
                  for sel in selections for x in json.loads(Path(sel).read_text())["models"]}
        for m in modules:
            value = by_run.get(str(Path(m).resolve()))
            if value is None:
                named = ", ".join(str(sel) for sel in selections)
                raise ValueError(f"--udr: {named} has no UDR for vision run {m} (select over the sweep that trained it)")
            if np.isfinite(value):
                scores[m]["udr"] = float(value)
    keys = list(metric_keys) or sorted(set.intersection(*(set(s) for s in scores.values())))
    returns = [float(np.mean(per_vision[m])) for m in modules]
    result = {"vision_runs": modules, "target_return": returns, "episodes": episodes, "correlations": {}}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for k in keys:
        missing = [m for m in modules if k not in scores[m]]
        if missing:
            raise ValueError(f"--metric: {k!r} is missing from {missing[0]}/metrics.json")
        xs = [scores[m][k] for m in modules]
        result["correlations"][k] = {**spearman_with_ci(xs, returns), "scores": xs}
    atomic_write_json(out / "correlation.json", result)
    lines = ["| metric | Spearman ρ | 95% CI | n |", "|---|---|---|---|"]
    for k, c in result["correlations"].items():
        lines.append(f"| {k} | {_fmt(c['rho'])} | [{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}] | {c['n']} |")
    atomic_write_text(out / "correlation.md", "\n".join(lines) + "\n")
    shown = keys[:6]
    if shown:
        fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.0), squeeze=False)
        for ax, k in zip(axes[0], shown):
            c = result["correlations"][k]
            ax.scatter(c["scores"], returns)
            ax.set_xlabel(k, fontsize=8)
            ax.set_title(f"ρ = {_fmt(c['rho'])}", fontsize=9)
        axes[0][0].set_ylabel("target-domain return")
        _save_fig(fig, out / "correlation.png")
    return result


# ----- order of factor acquisition -----------------------------------------------------------------------------
def tensorboard_scalars(run_dir: str | Path) -> dict[str, dict[int, float]]:
    """Every scalar of a run's tensorboard log (``RUN_DIR/tb``), unsampled: {tag: {step: value}}. Where a resumed
    run logged a step twice, the last write wins."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(Path(run_dir) / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: {e.step: e.value for e in acc.Scalars(t)} for t in acc.Tags()["scalars"]}


def kl_curves(run_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(steps, KL per latent of shape (T, D)) from a stage-1 run's tensorboard ``kl_per_latent/z*`` scalars."""
    scalars = tensorboard_scalars(run_dir)
    tags = sorted((t for t in scalars if t.startswith("kl_per_latent/z")), key=lambda t: int(t[15:]))
    if not tags:
        raise ValueError(f"--run: {run_dir} has no kl_per_latent/z* scalars in its tensorboard log")
    by_step = [scalars[t] for t in tags]
    steps = np.array(sorted(set().union(*by_step)))
    return steps, np.array([[c.get(int(s), np.nan) for c in by_step] for s in steps])


def run_ground_truth(checkpoint: str | Path) -> Any:
    """The ground truth a stage-1 checkpoint was trained on: dSprites, or its env's scenes over every domain
    (with the env kwargs, e.g. the board size, of the run)."""
    from darla.config import DataConfig
    from darla.stage1 import ground_truth_for
    from vision.checkpoint import read_checkpoint

    data = read_checkpoint(checkpoint).get("extra", {}).get("config", {}).get("data")
    if not data:
        raise ValueError(f"--data: {checkpoint} records no training data; name the ground truth with --data")
    known = {f.name for f in dataclasses.fields(DataConfig)}
    return ground_truth_for(DataConfig(**{k: v for k, v in data.items() if k in known}))


def latent_factors(run_dir: str | Path, data: str = "auto", num_points: int = 5_000,
                   seed: int = 0) -> dict[str, Any]:
    """A stage-1 model with, per latent, its mean KL and its normalised MI with each varying factor.

    MI is the 20-bin histogram estimate used by MIG, divided by the factor's entropy, on ``num_points`` images
    of the ground-truth ``data`` ("auto": :func:`run_ground_truth`). Returns ``model``, ``checkpoint``, ``mu`` (N, D),
    ``kl`` (D,), ``nmi`` (D, K) and ``factor_names`` (K varying factors).
    """
    import vision
    from darla.metrics import ground_truth
    from vision.checkpoint import resolve_checkpoint
    from vision.metrics import encoder_from_model
    from vision.metrics.mig import histogram_mi
    from vision.metrics.representation import encode_images, mean_kl, pool_factors
    from vision.metrics.utils import entropy

    ckpt = resolve_checkpoint(run_dir)
    model = vision.load(ckpt, "cpu")
    source = ground_truth(data) if data != "auto" else run_ground_truth(ckpt)
    factors = pool_factors(source, num_points, 0, seed=seed)
    mu, logvar = encode_images(source, encoder_from_model(model), factors, progress=False)
    h = entropy(factors)
    varying = h > 0
    return {"model": model, "checkpoint": ckpt, "source": source, "mu": mu,
            "kl": mean_kl(mu, logvar) if logvar is not None else np.zeros(mu.shape[1]),
            "nmi": histogram_mi(mu, factors[:, varying]) / h[varying],
            "factor_names": [n for n, v in zip(source.factor_names, varying) if v]}


def acquisition(run_dir: str | Path, out: str | Path, data: str = "auto", onset_nats: float = 0.5,
                num_points: int = 5_000, seed: int = 0) -> dict[str, Any]:
    """KL per latent over training, each latent labelled by the factor it carries most information about.

    A latent's onset is the first logged step its KL exceeds ``onset_nats``; the factor of a latent is the one
    with the largest normalised mutual information with its mean code at the end of training
    (:func:`latent_factors`). Writes ``out`` (PNG) and ``out`` with suffix ``.json``; returns the JSON content.
    """
    lf = latent_factors(run_dir, data, num_points, seed)
    ckpt, nmi, names = lf["checkpoint"], lf["nmi"], lf["factor_names"]
    steps, kl = kl_curves(ckpt.parent)
    latents = []
    for j in range(kl.shape[1]):
        above = np.flatnonzero(kl[:, j] > onset_nats)
        k = int(np.argmax(nmi[j]))
        latents.append({"latent": j, "final_kl": float(kl[-1, j]),
                        "onset_step": int(steps[above[0]]) if len(above) else None,
                        "factor": names[k], "normalised_mi": float(nmi[j, k])})
    active = sorted((d for d in latents if d["onset_step"] is not None and d["final_kl"] >= 0.1),
                    key=lambda d: d["onset_step"])
    fig, ax = plt.subplots(figsize=(7, 4))
    for d in latents:
        j = d["latent"]
        if d["onset_step"] is None or d["final_kl"] < 0.1:  # never opened, or opened and collapsed again
            ax.plot(steps, kl[:, j], color="0.75", lw=0.8, label=None if d["onset_step"] is None else f"z{j}: collapsed")
            continue
        ax.plot(steps, kl[:, j], lw=1.6, label=f"z{j}: {d['factor']} (MI {d['normalised_mi']:.2f})")
    ax.set_xscale("log")  # the code forms in the first thousand steps
    ax.set_xlabel("training step (log scale)")
    ax.set_ylabel("KL per latent (nats)")
    ax.set_title(f"{Path(ckpt.parent).name}: order of acquisition")
    ax.legend(fontsize=7, loc="upper left")
    _save_fig(fig, out)
    result = {"run": str(ckpt.parent), "onset_nats": onset_nats, "num_points": num_points, "latents": latents,
              "order": [f"z{d['latent']}:{d['factor']}@{d['onset_step']}" for d in active]}
    atomic_write_json(Path(out).with_suffix(".json"), result)
    return result


def labelled_traversals(run_dir: str | Path, out: str | Path, data: str = "auto", min_kl: float = 0.1,
                        num_points: int = 5_000, seed: int = 0) -> dict[str, Any]:
    """Latent traversals of one image, one row per active latent (by decreasing KL), each row labelled with its KL
    and the factor it carries most information about (:func:`latent_factors`). Writes ``out`` (PNG) and its JSON.

    Models without a posterior (AE, DAE, InfoGAN) have no KL: their latents are ranked by the spread (sd) of their
    codes over the points, and each row sweeps its latent over the codes' own 2nd–98th percentile rather than ±2.5."""
    from vision.metrics.unsupervised import ACTIVE_SD
    from vision.train import kl_order
    from vision.viz import traversal_grid

    lf = latent_factors(run_dir, data, num_points, seed)
    kl, nmi, names, source, mu = lf["kl"], lf["nmi"], lf["factor_names"], lf["source"], lf["mu"]
    stochastic = bool(lf["model"].stochastic)
    rank, floor, unit = (kl, min_kl, "KL") if stochastic else (mu.std(axis=0), ACTIVE_SD, "sd")
    ranked = kl_order(rank)  # decreasing KL, or decreasing spread
    order = [int(j) for j in ranked if rank[j] >= floor] or [int(ranked[0])]
    ranges = None if stochastic else np.percentile(mu[:, order], [2, 98], axis=0).T
    # the image: every factor at the middle of its range (a centred, mid-sized sprite)
    frame = source.render(np.array([[s // 2 for s in source.factor_sizes]]))[0]
    img = traversal_grid(lf["model"], frame, np.array(order), ranges=ranges)
    fig, ax = plt.subplots(figsize=(6.5, 0.62 * len(order) + 0.6))
    ax.imshow(img, cmap="gray" if img.ndim == 2 or img.shape[-1] == 1 else None)
    row_h = img.shape[0] / len(order)
    labels = []
    for r, j in enumerate(order):
        k = int(np.argmax(nmi[j]))
        second = float(np.sort(nmi[j])[-2]) if nmi.shape[1] > 1 else 0.0
        labels.append({"latent": j, "kl": float(kl[j]), "factor": names[k], "normalised_mi": float(nmi[j, k]),
                       "next_best_mi": second, **({} if stochastic else {"sd": float(rank[j])})})
        ax.text(-4, (r + 0.5) * row_h, f"z{j}  {unit} {rank[j]:.2f}\n{names[k]} (MI {nmi[j, k]:.2f})", ha="right",
                va="center", fontsize=7)
    ax.set_axis_off()
    sweep = "μ ± 2.5" if stochastic else "each code's 2nd–98th percentile"
    ax.set_title(f"{Path(lf['checkpoint'].parent).name}: traversals of {sweep} per latent", fontsize=8)
    _save_fig(fig, out)
    result = {"run": str(lf["checkpoint"].parent), "num_points": num_points, "rows": labels}
    atomic_write_json(Path(out).with_suffix(".json"), result)
    return result


def prior_samples(run_dir: str | Path, out: str | Path, n: int = 32, seed: int = 0) -> Path:
    """Write ``n`` images the model of ``run_dir`` renders from codes drawn from its prior (4 rows) to ``out``."""
    import vision
    from vision.checkpoint import resolve_checkpoint
    from vision.viz import sample_grid, save_png

    if n < 4 or n % 4:
        raise ValueError(f"--n: the samples fill 4 rows; give a positive multiple of 4, got {n}")
    model = vision.load(resolve_checkpoint(run_dir), "cpu")
    return save_png(out, sample_grid(model, n, rows=4, seed=seed))


def metric_curves(run_dirs: Sequence[str | Path], out: str | Path, extra_minutes: Sequence[float] = (),
                  targets: dict[str, float] | None = None) -> dict[str, Any]:
    """Plot each metric's headline score against training minutes for stage-1 runs that scored themselves while
    training (``eval.every``: ``RUN_DIR/metrics_curve.json``), one panel per metric and one line per run; write
    the PNG to ``out`` and the curves as JSON beside it.

    ``extra_minutes`` (one per run, or one for all) shifts a run's curve right by training it did before its
    curve starts, e.g. the losing restart candidates of a best-of-K run; ``targets`` draws a dashed line per
    metric.
    """
    from vision.train import CURVE_NAME

    if not run_dirs:
        raise ValueError("--runs: give at least one stage-1 run directory")
    if len(extra_minutes) not in (0, 1, len(run_dirs)):
        raise ValueError(f"--extra-minutes: give one value or one per run ({len(run_dirs)}), got {len(extra_minutes)}")
    shifts = list(extra_minutes) * len(run_dirs) if len(extra_minutes) == 1 else list(extra_minutes) or [0.0] * len(run_dirs)
    curves: dict[str, list[dict[str, float]]] = {}
    for run in run_dirs:
        path = Path(run) / CURVE_NAME
        if not path.exists():
            raise FileNotFoundError(f"--runs: {path} not found (train with eval.every=N and eval.metrics=[...])")
        curves[str(run)] = json.loads(path.read_text())
    metrics = list(dict.fromkeys(k for rows in curves.values() for r in rows for k in r
                                 if k not in ("step", "train_seconds")))
    if not metrics:
        raise ValueError("--runs: the curves hold no metric scores")
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.0), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for (run, rows), shift in zip(curves.items(), shifts):
            pts = [(r["train_seconds"] / 60 + shift, r[metric]) for r in rows if metric in r]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, label=Path(run).name)
        if targets and metric in targets:
            ax.axhline(targets[metric], ls="--", c="k", lw=0.8, label="target")
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("training minutes", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=6)
    _save_fig(fig, out)
    result = {"runs": list(curves), "extra_minutes": shifts, "targets": targets or {}, "curves": curves}
    atomic_write_json(Path(out).with_suffix(".json"), result)
    return result


def _vision_run_of(stage2_run: Path) -> str:
    """The stage-1 run directory a stage-2 run used (from its resolved config)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(stage2_run / "config.yaml")
    path = str(OmegaConf.select(cfg, "vision.run") or "")
    if not path:
        raise ValueError(f"runs: {stage2_run} used no vision module (pixel variant); correlation needs vision runs")
    p = Path(path)
    return str(p.parent if p.is_file() else p)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m darla.report", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("correlation", help="metric scores of vision modules vs their agents' target returns")
    c.add_argument("--runs", nargs="+", required=True, help="stage-2 run directories (agents on different vision modules)")
    c.add_argument("--metric", nargs="*", default=[], help="metric keys (default: every score all modules share)")
    c.add_argument("--episodes", type=int, default=20)
    c.add_argument("--out", default="runs/report")
    c.add_argument("--udr", nargs="+", default=None,
                   help="selection.json of darla.select over the modules (one per sweep that trained them): adds their UDR")
    q = sub.add_parser("acquisition", help="KL per latent over a stage-1 run, labelled by factor (PNG + JSON)")
    q.add_argument("--run", required=True, help="stage-1 run directory")
    q.add_argument("--out", required=True, help="output PNG (the JSON is written beside it)")
    q.add_argument("--data", default="auto", help="ground truth to label latents with (auto: what the run trained on)")
    q.add_argument("--onset-nats", type=float, default=0.5)
    t = sub.add_parser("traversals", help="traversals of a stage-1 model, rows labelled by KL and factor (PNG + JSON)")
    t.add_argument("--run", required=True, help="stage-1 run directory")
    t.add_argument("--out", required=True, help="output PNG (the JSON is written beside it)")
    t.add_argument("--data", default="auto", help="ground truth to label latents with (auto: what the run trained on)")
    m = sub.add_parser("samples", help="images a stage-1 model renders from codes drawn from its prior (PNG)")
    m.add_argument("--run", required=True, help="stage-1 run directory")
    m.add_argument("--out", required=True, help="output PNG")
    m.add_argument("--n", type=int, default=32, help="number of samples (a multiple of 4)")
    m.add_argument("--seed", type=int, default=0)
    k = sub.add_parser("curve", help="metric scores against training minutes of stage-1 runs (eval.every) (PNG + JSON)")
    k.add_argument("--runs", nargs="+", required=True, help="stage-1 run directories with metrics_curve.json")
    k.add_argument("--out", required=True, help="output PNG (the JSON is written beside it)")
    k.add_argument("--extra-minutes", nargs="*", type=float, default=[],
                   help="minutes each run trained before its curve starts (one value, or one per run)")
    k.add_argument("--target", nargs="*", default=[], metavar="METRIC=VALUE", help="dashed target lines")
    a = p.parse_args(argv)
    try:
        if a.cmd == "curve":
            targets = {}
            for t in a.target:
                name, _, value = t.partition("=")
                try:
                    targets[name] = float(value)
                except ValueError:
                    raise ValueError(f"--target: {t!r} is not METRIC=NUMBER") from None
            res = metric_curves(a.runs, a.out, a.extra_minutes, targets)
            for run, rows in res["curves"].items():
                last = rows[-1] if rows else {}
                print(f"{run}: {len(rows)} points; last at step {last.get('step')}: "
                      + ", ".join(f"{m} {v:.3f}" for m, v in last.items() if m not in ("step", "train_seconds")))
            return 0
        if a.cmd == "traversals":
            trav = labelled_traversals(a.run, a.out, a.data)
            print("\n".join(f"z{r['latent']}: " + (f"sd {r['sd']:.2f}" if "sd" in r else f"KL {r['kl']:.2f}")
                            + f", {r['factor']} (MI {r['normalised_mi']:.2f}, next "
                            f"{r['next_best_mi']:.2f})" for r in trav["rows"]))
            return 0
        if a.cmd == "samples":
            print(f"{a.n} samples written to {prior_samples(a.run, a.out, a.n, a.seed)}")
            return 0
        if a.cmd == "acquisition":
            acq = acquisition(a.run, a.out, a.data, a.onset_nats)
            print("order of acquisition: " + ", ".join(acq["order"]))
            return 0
        res = correlation(a.runs, a.out, a.metric, a.episodes, udr=a.udr)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print((Path(a.out) / "correlation.md").read_text())
    print(f"{len(res['vision_runs'])} vision modules; written to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
