"""Stage 3 — transfer: ``python -m darla.transfer --runs RUN_DIR... [--episodes N] [--out DIR]``.

Each trained stage-2 agent is evaluated, with no further training, on its source domain and on every target
domain: N episodes per domain, deterministic actions, the same fixed evaluation seed on every domain (so domains
differ only in what the agent sees) and distinct from any training seed. Runs are grouped by variant; training
seeds are aggregated with rliable (IQM and mean with stratified-bootstrap 95% CIs, probability of improvement
between variants). Writes ``transfer.json``, ``transfer.md``, ``transfer.png`` and tensorboard scalars to --out.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from rliable import library, metrics

from agents.callbacks import evaluate_domains
from darla.report import transfer_markdown, transfer_plot
from vision.runtime import atomic_write_json, atomic_write_text, git_sha, progress_bar, versions

EVAL_SEED = 1_000_003  # far from training seeds (0, 1, 2, …), so evaluation episodes were never trained on
EVAL_FILE = "transfer_eval.json"


@dataclass
class RunEvaluation:
    """Episode returns of one stage-2 run on each domain."""

    run_dir: str
    variant: str
    algo: str
    seed: int
    source: str
    returns: dict[str, list[float]]  # domain -> per-episode returns


def evaluate_run(run_dir: str | Path, episodes: int, seed: int = EVAL_SEED, domains: Sequence[str] | None = None,
                 n_envs: int = 4, device: str = "auto") -> RunEvaluation:
    """Evaluate one stage-2 run on its domains (cached in ``RUN_DIR/transfer_eval.json`` per episodes/seed)."""
    from darla.stage2 import load_agent

    run_dir = Path(run_dir)
    cache_path = run_dir / EVAL_FILE
    key = f"episodes={episodes},seed={seed}"
    cache: dict[str, Any] = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    agent = load_agent(run_dir, device=device)
    wanted = list(domains) if domains else agent.domains
    stored = cache.get(key, {})
    missing = [d for d in wanted if d not in stored]
    for d in missing:
        env = agent.make_env(d, n_envs=min(n_envs, episodes), seed=seed)
        # One domain at a time, each from the same seed: identical layouts, only the visuals differ.
        res = evaluate_domains(agent.model, {d: env}, episodes, deterministic=True, seed=seed)
        env.close()
        stored[d] = res[d]["rewards"]
    if missing:
        cache[key] = stored
        atomic_write_json(cache_path, cache)
    cfg = agent.config
    return RunEvaluation(str(run_dir), agent.variant.name, cfg.agent.algo, cfg.train.seed, cfg.env.train_domain, {d: stored[d] for d in wanted})


def _interval(scores: dict[str, np.ndarray | list[np.ndarray]], func: Any, reps: int, rng_seed: int) -> tuple[dict, dict]:
    with warnings.catch_warnings():
        # rliable passes `random_state` to its bootstrap library `arch`, which deprecates it with a FutureWarning per
        # call; the seeded RandomState is what makes the CIs reproducible, and the warning is noise for users.
        warnings.filterwarnings("ignore", message="random_state is deprecated", category=FutureWarning,
                                module=r"arch(\.|$)")
        return library.get_interval_estimates(scores, func, reps=reps, random_state=np.random.RandomState(rng_seed))


def aggregate(evals: Sequence[RunEvaluation], reps: int = 2000, rng_seed: int = 0) -> dict[str, Any]:
    """Per variant: IQM/mean (95% CIs) on the source, each target and all targets; transfer ratio; gap; and the
    probability of improvement on the targets between every pair of variants. Scores are per-seed mean returns."""
    by_variant: dict[str, list[RunEvaluation]] = defaultdict(list)
    for e in evals:
        by_variant[e.variant].append(e)
    out: dict[str, Any] = {"variants": {}, "probability_of_improvement": {}}
    target_mats: dict[str, np.ndarray] = {}
    iqm_mean = lambda x: np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)])  # noqa: E731
    for variant, runs in by_variant.items():
        source = runs[0].source
        domains = [d for d in runs[0].returns if all(d in r.returns for r in runs)]
        targets = [d for d in domains if d != source]
        per_seed = {d: np.array([[np.mean(r.returns[d])] for r in runs]) for d in domains}  # (seeds, 1)
        row: dict[str, Any] = {"seeds": sorted(r.seed for r in runs), "runs": [r.run_dir for r in runs],
                               "algo": runs[0].algo, "source_domain": source, "target_domains": targets, "domains": {}}
        for d, m in per_seed.items():
            pt, ci = _interval({variant: m}, iqm_mean, reps, rng_seed)
            row["domains"][d] = {"iqm": float(pt[variant][0]), "mean": float(pt[variant][1]),
                                 "iqm_ci": ci[variant][:, 0].tolist(), "mean_ci": ci[variant][:, 1].tolist(),
                                 "per_seed": m[:, 0].tolist()}
        if targets:
            tmat = np.concatenate([per_seed[d] for d in targets], axis=1)  # (seeds, targets)
            target_mats[variant] = tmat
            pt, ci = _interval({variant: tmat}, iqm_mean, reps, rng_seed)
            row["target"] = {"iqm": float(pt[variant][0]), "mean": float(pt[variant][1]),
                             "iqm_ci": ci[variant][:, 0].tolist(), "mean_ci": ci[variant][:, 1].tolist()}
            both = np.concatenate([per_seed[source], tmat], axis=1)

            def ratio(x: np.ndarray) -> np.ndarray:
                src = metrics.aggregate_iqm(x[:, :1])
                return np.array([metrics.aggregate_iqm(x[:, 1:]) / src if abs(src) > 1e-12 else np.nan])

            def gap(x: np.ndarray) -> np.ndarray:
                return np.array([metrics.aggregate_iqm(x[:, :1]) - metrics.aggregate_iqm(x[:, 1:])])

            pt_r, ci_r = _interval({variant: both}, ratio, reps, rng_seed)
            pt_g, ci_g = _interval({variant: both}, gap, reps, rng_seed)
            row["transfer_ratio"] = {"value": float(pt_r[variant][0]), "ci": ci_r[variant][:, 0].tolist()}
            row["generalisation_gap"] = {"value": float(pt_g[variant][0]), "ci": ci_g[variant][:, 0].tolist()}
        out["variants"][variant] = row
    for a, b in itertools.permutations(sorted(target_mats), 2):
        if target_mats[a].shape[1] != target_mats[b].shape[1]:
            continue
        pt, ci = _interval({f"{a}>{b}": [target_mats[a], target_mats[b]]}, metrics.probability_of_improvement, reps, rng_seed)
        out["probability_of_improvement"][f"{a} > {b}"] = {"value": float(pt[f"{a}>{b}"]), "ci": ci[f"{a}>{b}"][:, 0].tolist()}
    return out


def check_run_dirs(run_dirs: Sequence[str | Path]) -> None:
    """Raise a one-line :class:`FileNotFoundError` naming the first run directory that is missing or holds no
    trained agent (checked before any evaluation or output, so a typo costs nothing)."""
    from darla.stage2 import AGENT_NAME

    for r in run_dirs:
        p = Path(r)
        if not p.is_dir():
            raise FileNotFoundError(f"--runs: {p} does not exist (expected a stage-2 run directory)")
        if not (p / AGENT_NAME).is_file():
            raise FileNotFoundError(f"--runs: {p} holds no trained agent ({AGENT_NAME}); run darla.stage2 first")


def transfer(run_dirs: Sequence[str | Path], out_dir: str | Path, episodes: int = 20, seed: int = EVAL_SEED,
             reps: int = 2000, device: str = "auto", progress: bool = True) -> dict[str, Any]:
    """Evaluate every run, aggregate, and write JSON, Markdown, PNG and tensorboard outputs into ``out_dir``
    (created only once every run has been evaluated)."""
    from torch.utils.tensorboard import SummaryWriter

    check_run_dirs(run_dirs)
    evals = [evaluate_run(r, episodes, seed, device=device) for r in progress_bar(run_dirs, desc="transfer", disable=not progress)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = aggregate(evals, reps=reps)
    result["episodes"] = episodes
    result["eval_seed"] = seed
    result["runs"] = [e.__dict__ for e in evals]
    result["provenance"] = {"git_sha": git_sha(), "versions": versions(), "command": sys.argv}
    atomic_write_json(out / "transfer.json", result)
    atomic_write_text(out / "transfer.md", transfer_markdown(result))
    transfer_plot(result, out / "transfer.png")
    writer = SummaryWriter(str(out / "tb"))
    for variant, row in result["variants"].items():
        for d, s in row["domains"].items():
            writer.add_scalar(f"transfer/{variant}/{d}/iqm", s["iqm"], 0)
        if "transfer_ratio" in row:
            writer.add_scalar(f"transfer/{variant}/ratio", row["transfer_ratio"]["value"], 0)
    writer.close()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m darla.transfer", description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", required=True, help="stage-2 run directories (any variants and seeds)")
    p.add_argument("--episodes", type=int, default=20, help="episodes per domain and run")
    p.add_argument("--out", default="runs/transfer", help="output directory")
    p.add_argument("--seed", type=int, default=EVAL_SEED, help="evaluation seed (keep it away from training seeds)")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap repetitions")
    p.add_argument("--device", default="auto")
    a = p.parse_args(argv)
    if a.episodes < 1:
        print("error: --episodes: must be >= 1", file=sys.stderr)
        return 2
    try:
        result = transfer(a.runs, a.out, a.episodes, a.seed, a.reps, a.device)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(transfer_markdown(result))
    print(f"written: {Path(a.out) / 'transfer.json'}, transfer.md, transfer.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
