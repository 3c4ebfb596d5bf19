"""Stage 3 — transfer: ``python -m darla.transfer --runs RUN_DIR... [--episodes N] [--out DIR] [--domains ...]``.

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
from typing import Any, Mapping, Sequence

import numpy as np
from rliable import library, metrics

from agents.callbacks import evaluate_domains
from darla.report import transfer_markdown, transfer_plot
from vision.runtime import atomic_write_json, atomic_write_text, git_sha, progress_bar, set_num_threads, versions

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


def parse_domains(entries: Sequence[str]) -> dict[str, Any]:
    """``--domains`` entries -> {label: domain}. An entry is a domain name (``target``) or ``LABEL=YAML``, where the
    YAML is a name, a factor mapping (``{wall_colour: [3, 4]}``) or a pixel shift from :mod:`envs.shifts`
    (``{shift: hue, degrees: 90}``; ``domain: NAME`` picks the domain it shifts, the run's train domain by default)."""
    import yaml

    out: dict[str, Any] = {}
    for entry in entries:
        label, sep, text = entry.partition("=")
        label = label.strip()
        if not label:
            raise ValueError(f"--domains: {entry!r} has no label; write LABEL=SPEC or a domain name")
        if not sep:
            out[label] = label
            continue
        try:
            spec = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"--domains: {label}: {text!r} is not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(spec, (str, dict)) or not spec:
            raise ValueError(f"--domains: {label}: expected a domain name or a mapping, got {text!r}")
        if isinstance(spec, dict) and "shift" in spec:
            from envs.shifts import SHIFTS

            if spec["shift"] not in SHIFTS:
                raise ValueError(f"--domains: {label}: unknown shift {spec['shift']!r}; choose from {', '.join(SHIFTS)}")
        out[label] = spec
    return out


def _cache_key(label: str, spec: Any) -> str:
    """Where a domain's returns are cached: its name, or its label with the exact spec (so a label reused for a
    different spec is evaluated afresh)."""
    if spec == label:
        return label
    try:
        return f"{label} {json.dumps(spec, sort_keys=True)}"
    except TypeError:  # keys of mixed types (YAML reads a bare `on:` or `yes:` key as a boolean)
        return f"{label} {json.dumps(spec)}"


def evaluate_run(run_dir: str | Path, episodes: int, seed: int = EVAL_SEED, domains: Mapping[str, Any] | None = None,
                 n_envs: int = 4, device: str = "auto") -> RunEvaluation:
    """Evaluate one stage-2 run (cached in ``RUN_DIR/transfer_eval.json`` per episodes/seed) on its source domain
    and either its own domains or ``domains`` ({label: domain}, see :func:`parse_domains`)."""
    from darla.stage2 import load_agent

    run_dir = Path(run_dir)
    cache_path = run_dir / EVAL_FILE
    key = f"episodes={episodes},seed={seed}"
    cache: dict[str, Any] = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    agent = load_agent(run_dir, device=device)
    source = agent.config.env.train_domain
    wanted = {source: source, **dict(domains)} if domains else {d: d for d in agent.domains}
    stored = cache.get(key, {})
    missing = {label: spec for label, spec in wanted.items() if _cache_key(label, spec) not in stored}
    for label, spec in missing.items():
        env = agent.make_env(spec, n_envs=min(n_envs, episodes), seed=seed)
        # One domain at a time, each from the same seed: identical layouts, only the visuals differ.
        res = evaluate_domains(agent.model, {label: env}, episodes, deterministic=True, seed=seed)
        env.close()
        stored[_cache_key(label, spec)] = res[label]["rewards"]
    if missing:
        cache[key] = stored
        atomic_write_json(cache_path, cache)
    cfg = agent.config
    return RunEvaluation(str(run_dir), agent.variant.name, cfg.agent.algo, cfg.train.seed, source,
                         {label: stored[_cache_key(label, spec)] for label, spec in wanted.items()})


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


def check_domains(run_dirs: Sequence[str | Path], domains: Mapping[str, Any]) -> None:
    """Make one env of every domain in ``domains`` for each env config among the runs, before any evaluation or
    output: an unknown name, factor or shift argument is a one-line :class:`ValueError` naming the label."""
    from darla.config import Stage2Config, load_config
    from darla.stage2 import env_factory, import_env_modules

    seen: set[str] = set()
    for r in run_dirs:
        env_cfg = load_config(Stage2Config, Path(r) / "config.yaml").env
        ident = json.dumps([env_cfg.id, env_cfg.kwargs, env_cfg.domain_kwarg, env_cfg.train_domain], default=str)
        if ident in seen:
            continue
        seen.add(ident)
        import_env_modules(env_cfg)
        for label, spec in domains.items():
            try:
                env_factory(env_cfg, spec)().close()
            except Exception as e:  # an unknown domain name or factor, a shift argument the wrapper does not take
                raise ValueError(f"--domains: {label}: {env_cfg.id} cannot make it ({str(e).splitlines()[0]})") from None


def transfer(run_dirs: Sequence[str | Path], out_dir: str | Path, episodes: int = 20, seed: int = EVAL_SEED,
             reps: int = 2000, device: str = "auto", progress: bool = True,
             domains: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate every run, aggregate, and write JSON, Markdown, PNG and tensorboard outputs into ``out_dir``
    (created only once every run has been evaluated). ``domains`` ({label: domain}, :func:`parse_domains`)
    replaces the runs' own target domains."""
    from torch.utils.tensorboard import SummaryWriter

    check_run_dirs(run_dirs)
    if domains:
        check_domains(run_dirs, domains)
    evals = [evaluate_run(r, episodes, seed, domains=domains, device=device)
             for r in progress_bar(run_dirs, desc="transfer", disable=not progress)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = aggregate(evals, reps=reps)
    result["episodes"] = episodes
    result["eval_seed"] = seed
    if domains:
        result["domain_specs"] = dict(domains)
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
    p.add_argument("--domains", nargs="+", metavar="DOMAIN",
                   help="target domains instead of the runs' own: a name (target), or LABEL=YAML with a name, a factor "
                        "mapping ('walls={wall_colour: [3]}') or a pixel shift ('hue90={shift: hue, degrees: 90}'; "
                        "shifts: hue, channels, palette, background)")
    a = p.parse_args(argv)
    if a.episodes < 1:
        print("error: --episodes: must be >= 1", file=sys.stderr)
        return 2
    set_num_threads()  # auto: the job's share of the cores, or the cores other processes leave free
    try:
        domains = parse_domains(a.domains) if a.domains else None
        result = transfer(a.runs, a.out, a.episodes, a.seed, a.reps, a.device, domains=domains)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(transfer_markdown(result))
    print(f"written: {Path(a.out) / 'transfer.json'}, transfer.md, transfer.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
