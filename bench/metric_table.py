"""The seeds' 2D-shapes table, rebuilt: BetaVAE, FactorVAE, MIG and DCI of baselines and of trained models.

    OMP_NUM_THREADS=1 python bench/metric_table.py --runs RUN [RUN ...] [--num-points 10000] [--jobs 2] \\
        [--out docs/metrics_dsprites.md]
    OMP_NUM_THREADS=1 python bench/metric_table.py --quick --out /tmp/metrics_quick.md    # a short proof run
    # add or replace some runs, keep every other row of an earlier table as it was scored
    OMP_NUM_THREADS=1 python bench/metric_table.py --carry docs/metrics_dsprites.json --runs NEW_RUN [...]

Rows: the ground-truth factors themselves, raw pixels, PCA (10), ICA (10), an untrained conv64 VAE, then one row per
stage-1 run directory (``python -m darla.stage1``), labelled by its ``model.family`` and ``train.seed``; a second
table gives each family's mean ± sd over its seeds and the training minutes (``stage1.json``'s ``train_seconds``).
Every row is scored by the same code on the same procedural-dSprites points (``vision.metrics.evaluate`` with one
shared pool of factors), beside the BetaVAE-metric numbers of Higgins et al. (2017) quoted in the seeds.

``--carry JSON`` keeps the rows of an earlier table (its JSON) that this call does not score: a baseline row is
carried as it was, a trained row is carried unless a ``--runs`` directory of the same family and seed replaces it.
Carried rows keep the git SHA they were scored at (``scored_git``), so a mixed table says which code scored what.

``--quick`` replaces the runs with tiny conv64 models trained here for ``--quick-steps`` Adam steps and uses 1,000
points and smaller metric samples: it proves the pipeline, not the numbers. The full table takes tens of CPU
minutes, most of it DCI and the BetaVAE classifier on 4,096 raw-pixel dimensions.
"""
from __future__ import annotations

import argparse
import functools
import multiprocessing as mp
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vision.data.dsprites import DSprites
from vision.metrics import baselines, evaluate
from vision.metrics.representation import EncodeFn, RepresentationCache, encoder_from_model, pool_factors
from vision.runtime import atomic_write_json, atomic_write_text, git_sha

METRICS = ["beta_vae", "factor_vae", "mig", "dci"]
# Higgins et al. (2017), BetaVAE metric on 2D shapes (dSprites), as quoted in the seeds (percent).
SEED_BETA_VAE = {"ground truth": 100.0, "raw pixels": 45.75, "PCA (10)": 84.9, "ICA (10)": 42.03,
                 "VAE untrained": 44.14, "vae": 61.58, "beta_vae": 99.23, "dc_ign": 99.3, "infogan": 73.5}
SCORES = {"BetaVAE (%)": ("beta_vae", "eval_accuracy", 100.0), "FactorVAE (%)": ("factor_vae", "eval_accuracy", 100.0),
          "MIG": ("mig", "mig", 1.0), "DCI disentanglement": ("dci", "disentanglement", 1.0)}


def tiny_trained_model(data: DSprites, beta: float, steps: int, seed: int) -> torch.nn.Module:
    """A conv64 β-VAE trained for a few Adam steps here (the --quick stand-in for a stage-1 run)."""
    from vision.images import to_tensor
    from vision.models import ModelConfig, build_model

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_model(ModelConfig(family="beta_vae", beta=beta, latent_dim=10), (1, 64, 64))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(steps):
        x = to_tensor(data.render(data.sample_factors(32, rng)))
        loss = model.loss(x, step).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def run_info(path: str) -> dict[str, Any]:
    """Provenance of a stage-1 run without loading its model: family, seed, KL weight, steps and training minutes."""
    import json

    from omegaconf import OmegaConf

    from vision.checkpoint import read_checkpoint, resolve_checkpoint

    ckpt = resolve_checkpoint(path)
    payload = read_checkpoint(ckpt)
    cfg = payload["model_config"]
    summary = ckpt.parent / "stage1.json"
    seconds = json.loads(summary.read_text()).get("train_seconds") if summary.exists() else None
    config = ckpt.parent / "config.yaml"  # the resolved config every stage-1 run directory holds
    seed = OmegaConf.load(config).train.seed if config.exists() else None
    # the KL weight actually applied: the plain VAE's is 1; families without a KL weight show none
    beta = {"vae": 1.0, "beta_vae": cfg["beta"], "beta_vae_dae": cfg["beta"]}.get(cfg["family"])
    beta_label = "β_norm" if cfg.get("beta_norm") and cfg["family"] != "vae" else "β"
    return {"family": cfg["family"], "seed": None if seed is None else int(seed),
            "train_minutes": None if seconds is None else seconds / 60,
            "detail": f"{ckpt.parent} ({cfg['family']}{'' if beta is None else f', {beta_label}={beta}'}, {cfg['latent_dim']} latents, "
                      f"{payload['step']} steps)"}


def score(data: DSprites, encode: EncodeFn | None, num_points: int, seed: int, params: dict[str, Any]) -> dict[str, Any]:
    """The four metrics of one representation (``encode=None``: the ground-truth factors) on the shared pools."""
    if encode is None:
        f = pool_factors(data, num_points, num_points // 2, seed)
        cache = RepresentationCache.from_arrays(f[:num_points].astype(np.float64), f[:num_points],
                                                f[num_points:].astype(np.float64), f[num_points:], data.factor_sizes,
                                                data.factor_names)
        return evaluate(data, None, METRICS, seed=seed, progress=False, cache=cache, params=params)
    return evaluate(data, encode, METRICS, num_points=num_points, seed=seed, progress=False, params=params)


def score_spec(spec: dict[str, Any], num_points: int, seed: int, params: dict[str, Any]) -> dict[str, Any]:
    """Score one row (a baseline, a stage-1 run or a --quick model) in this process; returns the table row."""
    torch.set_num_threads(1)
    data = DSprites()
    kind = spec["kind"]
    cpu, wall = time.process_time(), time.perf_counter()
    if kind == "truth":
        encode = None
    elif kind == "raw":
        encode = baselines.raw_pixels()
    elif kind == "pca":
        encode = baselines.pca(data, 10, seed=seed)
    elif kind == "ica":
        encode = baselines.ica(data, 10, seed=seed)
    elif kind == "untrained":
        encode = baselines.untrained_encoder(data, 10, "vae", seed=seed)
    elif kind == "tiny":
        encode = encoder_from_model(tiny_trained_model(data, spec["beta"], spec["steps"], seed))
    else:
        import vision

        encode = encoder_from_model(vision.load(spec["path"], "auto"))
    results = score(data, encode, num_points, seed, params)
    row = {k: v for k, v in spec.items() if k not in ("kind", "path", "beta", "steps")}
    return {**row, "results": results, "cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall}


def cached_score_spec(spec: dict[str, Any], num_points: int, seed: int, params: dict[str, Any],
                      cache_dir: str | None = None) -> dict[str, Any]:
    """:func:`score_spec`, reusing a row scored before with the same inputs when ``cache_dir`` is given.

    The key covers the row's spec, the metric settings and, for a run, its checkpoint's SHA-256: a retrained or
    resumed run is scored again.
    """
    if cache_dir is None:
        return score_spec(spec, num_points, seed, params)
    import hashlib
    import json

    from vision.checkpoint import file_sha256, resolve_checkpoint

    ident = {k: v for k, v in spec.items() if k not in ("detail", "train_minutes")}
    if spec["kind"] == "run":
        ident["checkpoint_sha256"] = file_sha256(resolve_checkpoint(spec["path"]))
    key = hashlib.sha256(json.dumps([ident, num_points, seed, params], sort_keys=True).encode()).hexdigest()[:20]
    path = Path(cache_dir) / f"{key}.json"
    if path.exists():
        row = json.loads(path.read_text())
        return {**row, "detail": spec["detail"], "train_minutes": spec.get("train_minutes")}
    row = score_spec(spec, num_points, seed, params)
    atomic_write_json(path, row)
    return row


def carried_rows(path: str | Path, specs: list[dict[str, Any]],
                 num_points: int | None = None) -> dict[tuple[str, Any], dict[str, Any]]:
    """Rows of an earlier table's JSON keyed by (name, seed), minus the trained rows that ``specs`` re-score.

    A baseline spec (no family) whose name is in the earlier table is answered from it; a trained row of the
    earlier table is dropped when a run of the same family and seed is among ``specs``. With ``num_points``, a
    table scored on another number of points is refused (its rows would not compare).
    """
    import json

    previous = json.loads(Path(path).read_text())
    rows = previous.get("rows")
    if not isinstance(rows, list):
        raise ValueError(f"{path}: no 'rows' list (not a table JSON written by bench/metric_table.py)")
    if num_points is not None and previous.get("num_points") != num_points:
        raise ValueError(f"{path} was scored on {previous.get('num_points')} points, this call on {num_points:,}")
    rescored = {(s["family"], s.get("seed")) for s in specs if s["kind"] == "run"}
    out: dict[tuple[str, Any], dict[str, Any]] = {}
    for row in rows:
        if row.get("family") and (row["family"], row.get("seed")) in rescored:
            continue
        out[(row["name"], row.get("seed"))] = {**row, "scored_git": row.get("scored_git", previous.get("git"))}
    return out


def merge_rows(specs: list[dict[str, Any]], scored: list[dict[str, Any]],
               carried: dict[tuple[str, Any], dict[str, Any]]) -> list[dict[str, Any]]:
    """The table's rows: baselines first, then trained rows grouped by family (the earlier table's order, then
    first-seen), seeds sorted.

    ``scored`` are the rows scored now (in ``specs`` order, skipping carried baselines); ``carried`` the earlier
    table's rows that were not re-scored.
    """
    fresh = iter(scored)
    rows = [carried[(s["name"], s.get("seed"))] if s["kind"] != "run" and (s["name"], s.get("seed")) in carried
            else next(fresh) for s in specs]
    seen = {(r["name"], r.get("seed")) for r in rows}
    rows += [r for k, r in carried.items() if k not in seen]
    baselines = [r for r in rows if not r.get("family")]
    trained = [r for r in rows if r.get("family")]
    # families keep the earlier table's order; new ones follow
    order = list(dict.fromkeys([r["family"] for r in carried.values() if r.get("family")]
                               + [r["family"] for r in trained]))
    trained.sort(key=lambda r: (order.index(r["family"]), -1 if r.get("seed") is None else r["seed"]))
    return baselines + trained


def _score(results: dict[str, Any], key: str) -> float:
    metric, name, scale = SCORES[key]
    return scale * results[metric]["scores"][name]


def family_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sd (ddof 1) of every score over the seeds of each trained family, in first-seen order."""
    out: list[dict[str, Any]] = []
    for family in dict.fromkeys(r["family"] for r in rows if r.get("family")):
        mine = [r for r in rows if r.get("family") == family]
        entry: dict[str, Any] = {"family": family, "seeds": [r["seed"] for r in mine]}
        for key in SCORES:
            v = np.array([_score(r["results"], key) for r in mine])
            entry[key] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
        minutes = [r["train_minutes"] for r in mine if r.get("train_minutes") is not None]
        entry["train_minutes"] = float(np.mean(minutes)) if minutes else None
        out.append(entry)
    return out


def markdown(rows: list[dict[str, Any]], summary: list[dict[str, Any]], command: str, num_points: int, seed: int,
             quick: bool) -> str:
    fmt = {"BetaVAE (%)": ".1f", "FactorVAE (%)": ".1f", "MIG": ".3f", "DCI disentanglement": ".3f"}
    lines = [
        "# Disentanglement metrics on procedural dSprites",
        "",
        f"Made by `{command}` (git {git_sha()}, {datetime.now(timezone.utc):%Y-%m-%d}); "
        f"{num_points:,} train + {num_points // 2:,} test points, metric seed {seed}."
        + (" **Quick run: tiny models, small samples — not the reference numbers.**" if quick else ""),
        "",
        "## Per family (mean ± sd over seeds)",
        "",
        "| family | seeds | " + " | ".join(SCORES) + " | seed BetaVAE (%) | train min |",
        "|---|---|" + "---:|" * (len(SCORES) + 2),
    ]
    for e in summary:
        cells = [f"{e[k]['mean']:{fmt[k]}} ± {e[k]['sd']:{fmt[k]}}" for k in SCORES]
        ref = SEED_BETA_VAE.get(e["family"])
        minutes = "" if e["train_minutes"] is None else f"{e['train_minutes']:.1f}"
        lines.append(f"| {e['family']} | {len(e['seeds'])} | " + " | ".join(cells)
                     + f" | {'' if ref is None else f'{ref:.2f}'} | {minutes} |")
    lines += ["", "## Every representation", "",
              "| representation | seed | " + " | ".join(SCORES) + " | seed BetaVAE (%) | train min | scoring CPU s |",
              "|---|---:|" + "---:|" * (len(SCORES) + 3)]
    for r in rows:
        ref = SEED_BETA_VAE.get(r.get("family") or r["name"])
        minutes = "" if r.get("train_minutes") is None else f"{r['train_minutes']:.1f}"
        lines.append(f"| {r['name']} | {'' if r.get('seed') is None else r['seed']} | "
                     + " | ".join(f"{_score(r['results'], k):{fmt[k]}}" for k in SCORES)
                     + f" | {'' if ref is None else f'{ref:.2f}'} | {minutes} | {r['cpu_s']:.0f} |")
    first = rows[0]["results"]
    lines += [
        "",
        "Representations: " + "; ".join(f"{r['name']}" + (f" seed {r['seed']}" if r.get("seed") is not None else "")
                                        + f": {r['detail']}" for r in rows) + ".",
        "",
        "Metric variants (each result's full parameters are in the JSON written beside this file): "
        f"BetaVAE `{first['beta_vae']['variant']}` (batch 64, logistic regression, eval accuracy), "
        f"FactorVAE `{first['factor_vae']['variant']}` (batch 64, prune std < 0.05, eval accuracy), "
        f"MIG `{first['mig']['variant']}` (20-bin histogram, normalised by H(v_k)), "
        f"DCI `{first['dci']['variant']}` (sklearn's GradientBoostingClassifier algorithm on LightGBM's tree learner). "
        f"Scored factors: {', '.join(first['mig']['params']['factors'])} "
        f"(constant: {', '.join(first['mig']['params']['dropped_factors']) or 'none'}).",
        "",
        "The seed column is Higgins et al. (2017), Table 1 (BetaVAE metric on the original dSprites file); ours are on",
        "the procedural re-rendering (`vision.data.dsprites`), with fixed-factor batches drawn from the encoded pools",
        "(`vision.metrics.representation`), so agreement is expected in ordering and rough size, not to the digit.",
        "",
    ]
    return "\n".join(lines)


PROSE_MARKER = "<!-- Written by hand from here on: bench/metric_table.py keeps it when it rewrites the tables. -->"


def kept_prose(path: Path) -> str:
    """The hand-written part of an earlier table document (from :data:`PROSE_MARKER` on), or ""."""
    text = path.read_text() if path.exists() else ""
    at = text.find(PROSE_MARKER)
    return "\n" + text[at:] if at >= 0 else ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="*", default=[], help="stage-1 run directories (any families and seeds)")
    parser.add_argument("--quick", action="store_true", help="tiny in-process models and small samples")
    parser.add_argument("--quick-steps", type=int, default=50)
    parser.add_argument("--num-points", type=int, default=None, help="default 10,000 (1,000 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/metrics_dsprites.md")
    parser.add_argument("--jobs", type=int, default=1, help="rows scored in parallel, one process (and thread) each")
    parser.add_argument("--cache", default="", help="directory of scored rows to reuse (keyed by inputs and checkpoint)")
    parser.add_argument("--carry", default="", help="an earlier table's JSON: keep its rows that this call does not score")
    args = parser.parse_args(argv)
    if not args.quick and not args.runs:
        parser.error("--runs is required (or --quick)")
    torch.set_num_threads(1)
    num_points = args.num_points or (1_000 if args.quick else 10_000)
    params = {"beta_vae": {"num_train": 1_000, "num_eval": 500}, "factor_vae": {"num_train": 1_000, "num_eval": 500}} \
        if args.quick else {}

    specs: list[dict[str, Any]] = [
        {"name": "ground truth", "kind": "truth", "detail": "the factor indices"},
        {"name": "raw pixels", "kind": "raw", "detail": "4,096 pixels in [0, 1]"},
        {"name": "PCA (10)", "kind": "pca", "detail": "sklearn PCA on 5,000 images"},
        {"name": "ICA (10)", "kind": "ica", "detail": "sklearn FastICA after PCA whitening, on 5,000 images"},
        {"name": "VAE untrained", "kind": "untrained", "detail": "conv64, random init"},
    ]
    if args.quick:
        for family, beta in (("vae", 1.0), ("beta_vae", 4.0)):
            specs.append({"name": family, "kind": "tiny", "beta": beta, "steps": args.quick_steps, "family": family,
                          "seed": args.seed, "train_minutes": None,
                          "detail": f"{args.quick_steps} Adam steps here, β={beta}"})
    else:
        for run in args.runs:
            try:
                info = run_info(run)
            except (FileNotFoundError, ValueError) as e:
                parser.exit(2, f"error: --runs: {run}: {e}\n")
            specs.append({"name": info["family"], "kind": "run", "path": run,
                          **{k: info[k] for k in ("family", "seed", "train_minutes", "detail")}})
    carried: dict[tuple[str, Any], dict[str, Any]] = {}
    if args.carry:
        try:
            carried = carried_rows(args.carry, specs, num_points)
        except (OSError, ValueError) as e:
            parser.exit(2, f"error: --carry: {e}\n")
    todo = [s for s in specs if s["kind"] == "run" or (s["name"], s.get("seed")) not in carried]
    # Rows are independent: score them in worker processes (one thread each), in the order given.
    job = functools.partial(cached_score_spec, num_points=num_points, seed=args.seed, params=params,
                            cache_dir=args.cache or None)
    scored: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=mp.get_context("spawn")) as pool:
        for row in pool.map(job, todo):
            scored.append({**row, "scored_git": git_sha()})
            print(f"{row['name']:14s} {row.get('seed', '') if row.get('seed') is not None else '':>2} "
                  + "  ".join(f"{k} {_score(row['results'], k):.3f}" for k in SCORES)
                  + f"  ({row['cpu_s']:.0f} CPU s)", flush=True)
    rows = merge_rows(specs, scored, carried)

    summary = family_summary(rows)
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    out = Path(args.out)
    atomic_write_text(out, markdown(rows, summary, command, num_points, args.seed, args.quick) + kept_prose(out))
    atomic_write_json(out.with_suffix(".json"), {"command": command, "num_points": num_points, "seed": args.seed,
                                                 "git": git_sha(), "summary": summary, "rows": rows})
    print(f"wrote {out} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
