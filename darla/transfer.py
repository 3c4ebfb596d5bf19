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
from darla.report import invariance_correlation, invariance_plot, transfer_markdown, transfer_plot
from vision.runtime import atomic_write_json, atomic_write_text, git_sha, progress_bar, set_num_threads, versions

EVAL_SEED = 1_000_003  # far from training seeds (0, 1, 2, …), so evaluation episodes were never trained on
EVAL_FILE = "transfer_eval.json"
INVARIANCE_FILE = "policy_invariance.json"


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
                 n_envs: int = 4, device: str = "auto", agent: Any = None) -> RunEvaluation:
    """Evaluate one stage-2 run (cached in ``RUN_DIR/transfer_eval.json`` per episodes/seed) on its source domain
    and either its own domains or ``domains`` ({label: domain}, see :func:`parse_domains`); ``agent``: the run's
    :class:`~darla.stage2.LoadedAgent` when the caller has loaded it already."""
    from darla.stage2 import load_agent

    run_dir = Path(run_dir)
    cache_path = run_dir / EVAL_FILE
    key = f"episodes={episodes},seed={seed}"
    cache: dict[str, Any] = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    agent = agent or load_agent(run_dir, device=device)
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


def action_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row distance between two batches of actions: 1 where discrete actions differ (any component, for
    MultiDiscrete), else 0; the Euclidean distance for continuous actions."""
    a, b = np.asarray(a), np.asarray(b)
    if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer):
        diff = a != b
        return (diff.reshape(len(diff), -1).any(1) if diff.ndim > 1 else diff).astype(np.float64)
    return np.linalg.norm((a - b).reshape(len(a), -1).astype(np.float64), axis=1)


def policy_sensitivity(model: Any, obs: np.ndarray) -> np.ndarray | None:
    """How much an SB3 policy's choice moves per typical change of each input of flat observations ``obs`` (N, D):
    the mean over the rows of the norm, over actions, of the gradient of the action scores (logits, centred
    Q-values, or the Gaussian mean) with respect to input j, times input j's sd over the rows. None for a policy
    without gradients (Episodic Control) or image observations."""
    import torch

    policy = getattr(model, "policy", None)
    if not isinstance(policy, torch.nn.Module) or np.asarray(obs).ndim != 2:
        return None
    x = torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=policy.device).requires_grad_(True)
    with torch.enable_grad():
        if hasattr(policy, "q_net"):
            scores = policy.q_net(x)
            scores = scores - scores.mean(1, keepdim=True)  # a common shift of every Q-value changes no choice
        else:
            dist = policy.get_distribution(x).distribution
            scores = dist.logits if hasattr(dist, "logits") else dist.mean
        squared = torch.zeros_like(x)
        for k in range(scores.shape[1]):
            (grad,) = torch.autograd.grad(scores[:, k].sum(), x, retain_graph=True)
            squared += grad ** 2
    return (squared.sqrt().mean(0) * x.std(0)).detach().cpu().numpy().astype(np.float64)


def policy_invariance(agent: Any, num_scenes: int = 1_000, seed: int = EVAL_SEED) -> dict[str, Any]:
    """How far a trained agent's choices move when only the visual domain of a scene changes.

    The same source scenes are rendered in every named domain of the agent's env (:func:`envs.same_scenes`) and
    seen through the agent's own observation pipeline. Per target domain:

    - ``policy_invariance`` = clip(1 − E d(a_source, a_target) / E d(a_source, a_other), 0, 1): the deterministic
      action's move on the same scene against its move between two different source scenes (``d``:
      :func:`action_distance`); 1 when the domain changes no choice, 0 when it moves them as much as a change of
      scene. NaN for a policy that acts alike on every scene.
    - ``action_agreement`` (discrete actions): how often the action is the same.
    - for agents on latents, ``latent_invariance``: each input's domain invariance
      (:func:`vision.metrics.domain_invariance.latent_invariance`) weighted by how much the policy reads it
      (:func:`policy_sensitivity`); per input in ``per_latent``, the weights in ``sensitivity``.
    """
    from envs import make_factor_env, same_scenes
    from vision.metrics.domain_invariance import latent_invariance

    env_cfg = agent.config.env
    try:
        env = make_factor_env(env_cfg.id, "source", **dict(env_cfg.kwargs))
    except ValueError:
        raise ValueError(f"{agent.run_dir}: {env_cfg.id} does not render scenes from factors; policy invariance "
                         "needs an env of darla's (envs.ENV_IDS)") from None
    rng = np.random.default_rng(seed)
    pairs = same_scenes(env, num_scenes, rng)
    obs = {d: agent.observe(frames) for d, frames in pairs.frames.items()}
    actions = {d: np.asarray(agent.predict(o)) for d, o in obs.items()}
    source = actions.pop("source")
    order = rng.permutation(num_scenes)
    partner = np.empty(num_scenes, dtype=np.int64)
    partner[order] = np.roll(order, -1)  # every scene paired with a different one
    reference = float(action_distance(source, source[partner]).mean())
    discrete = np.issubdtype(source.dtype, np.integer)
    weights = policy_sensitivity(agent.model, obs["source"])
    targets: dict[str, dict[str, Any]] = {}
    for name, acts in actions.items():
        moved = action_distance(source, acts)
        row: dict[str, Any] = {
            "policy_invariance": float(np.clip(1.0 - moved.mean() / reference, 0.0, 1.0)) if reference > 0 else float("nan"),
        }
        if discrete:
            row["action_agreement"] = float(1.0 - moved.mean())
        if weights is not None:
            inv = latent_invariance(obs["source"], obs[name])
            row["latent_invariance"] = float((weights * inv).sum() / weights.sum()) if weights.sum() > 0 else float("nan")
            row["per_latent"] = inv.tolist()
        targets[name] = row
    return {"num_scenes": num_scenes, "seed": seed, "reference_distance": reference, "targets": targets,
            "sensitivity": None if weights is None else weights.tolist()}


def run_policy_invariance(run_dir: str | Path, num_scenes: int, seed: int = EVAL_SEED, device: str = "auto",
                          agent: Any = None) -> dict[str, Any]:
    """:func:`policy_invariance` of one stage-2 run, cached in ``RUN_DIR/policy_invariance.json`` per scenes/seed
    (``agent``: the run's loaded agent, if the caller has it)."""
    from darla.stage2 import load_agent

    path = Path(run_dir) / INVARIANCE_FILE
    cache: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    key = f"scenes={num_scenes},seed={seed}"
    if key not in cache:
        cache[key] = policy_invariance(agent or load_agent(run_dir, device=device), num_scenes, seed)
        atomic_write_json(path, cache)
    return cache[key]


def aggregate_invariance(evals: Sequence[RunEvaluation], per_run: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per variant and target domain: mean, sd and per-seed values of each score of :func:`policy_invariance`."""
    rows: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for e, inv in zip(evals, per_run):
        for target, scores in inv["targets"].items():
            for score in ("policy_invariance", "action_agreement", "latent_invariance"):
                if score in scores:
                    rows[e.variant][target][score].append(scores[score])
    return {v: {t: {score: {"mean": float(np.mean(vals)), "sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
                            "per_seed": vals}
                    for score, vals in scores.items()}
                for t, scores in targets.items()}
            for v, targets in rows.items()}


def _interval(scores: dict[str, np.ndarray | list[np.ndarray]], func: Any, reps: int, rng_seed: int) -> tuple[dict, dict]:
    with warnings.catch_warnings():
        # rliable passes `random_state` to its bootstrap library `arch`, which deprecates it with a FutureWarning per
        # call; the seeded RandomState is what makes the CIs reproducible, and the warning is noise for users.
        warnings.filterwarnings("ignore", message="random_state is deprecated", category=FutureWarning,
                                module=r"arch(\.|$)")
        return library.get_interval_estimates(scores, func, reps=reps, random_state=np.random.RandomState(rng_seed))


def aggregate(evals: Sequence[RunEvaluation], reps: int = 2000, rng_seed: int = 0) -> dict[str, Any]:
    """Per variant: IQM/mean (95% CIs) on the source, each target and all targets; transfer ratio; gap; and the
    probability of improvement between every pair of variants, on all targets together and, where there is more
    than one target, on each alone (a held-out target and an extrapolation one answer different questions).
    Scores are per-seed mean returns."""
    by_variant: dict[str, list[RunEvaluation]] = defaultdict(list)
    for e in evals:
        by_variant[e.variant].append(e)
    out: dict[str, Any] = {"variants": {}, "probability_of_improvement": {}, "probability_of_improvement_by_target": {}}
    target_mats: dict[str, np.ndarray] = {}
    target_cols: dict[str, dict[str, np.ndarray]] = {}  # variant -> target -> (seeds, 1)
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
            target_cols[variant] = {d: per_seed[d] for d in targets}
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
        out["probability_of_improvement"][f"{a} > {b}"] = _improvement(target_mats[a], target_mats[b], reps, rng_seed)
        shared = [d for d in target_cols[a] if d in target_cols[b]]
        for d in shared if len(shared) > 1 else []:
            out["probability_of_improvement_by_target"].setdefault(d, {})[f"{a} > {b}"] = _improvement(
                target_cols[a][d], target_cols[b][d], reps, rng_seed)
    return out


def _improvement(a: np.ndarray, b: np.ndarray, reps: int, rng_seed: int) -> dict[str, Any]:
    """P(a > b) (rliable's probability of improvement over (seeds, tasks) score matrices) with its 95% CI."""
    pt, ci = _interval({"a>b": [a, b]}, metrics.probability_of_improvement, reps, rng_seed)
    return {"value": float(pt["a>b"]), "ci": ci["a>b"][:, 0].tolist()}


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
             domains: Mapping[str, Any] | None = None, invariance_scenes: int = 0) -> dict[str, Any]:
    """Evaluate every run, aggregate, and write JSON, Markdown, PNG and tensorboard outputs into ``out_dir``
    (created only once every run has been evaluated). ``domains`` ({label: domain}, :func:`parse_domains`)
    replaces the runs' own target domains. With ``invariance_scenes`` > 0, each run's :func:`policy_invariance`
    on that many scenes is added (per run, and per variant under ``policy_invariance``)."""
    from torch.utils.tensorboard import SummaryWriter

    check_run_dirs(run_dirs)
    if domains:
        check_domains(run_dirs, domains)
    from darla.stage2 import load_agent

    evals, invariance = [], []
    for r in progress_bar(run_dirs, desc="transfer", disable=not progress):
        agent = load_agent(r, device=device)  # once per run, for its returns and its policy invariance
        evals.append(evaluate_run(r, episodes, seed, domains=domains, device=device, agent=agent))
        if invariance_scenes > 0:
            invariance.append(run_policy_invariance(r, invariance_scenes, seed, device=device, agent=agent))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = aggregate(evals, reps=reps)
    if invariance:
        result["policy_invariance"] = aggregate_invariance(evals, invariance)
    result["episodes"] = episodes
    result["eval_seed"] = seed
    if domains:
        result["domain_specs"] = dict(domains)
    result["runs"] = [e.__dict__ for e in evals]
    for row, inv in zip(result["runs"], invariance):
        row["policy_invariance"] = inv
    if invariance:
        result["policy_invariance_correlation"] = invariance_correlation(result, reps=reps)
    result["provenance"] = {"git_sha": git_sha(), "versions": versions(), "command": sys.argv}
    atomic_write_json(out / "transfer.json", result)
    atomic_write_text(out / "transfer.md", transfer_markdown(result))
    transfer_plot(result, out / "transfer.png")
    if invariance:
        invariance_plot(result, out / "policy_invariance.png")
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
    p.add_argument("--invariance", type=int, default=0, metavar="SCENES",
                   help="also measure how far each policy's actions move when only the domain of a scene changes, "
                        "on this many scenes (darla envs only; 0: off)")
    p.add_argument("--domains", nargs="+", metavar="DOMAIN",
                   help="target domains instead of the runs' own: a name (target), or LABEL=YAML with a name, a factor "
                        "mapping ('walls={wall_colour: [3]}') or a pixel shift ('hue90={shift: hue, degrees: 90}'; "
                        "shifts: hue, channels, palette, background)")
    a = p.parse_args(argv)
    if a.episodes < 1:
        print("error: --episodes: must be >= 1", file=sys.stderr)
        return 2
    if a.invariance != 0 and a.invariance < 2:
        print(f"error: --invariance: must be 0 (off) or >= 2 scenes, got {a.invariance}", file=sys.stderr)
        return 2
    set_num_threads()  # auto: the job's share of the cores, or the cores other processes leave free
    try:
        domains = parse_domains(a.domains) if a.domains else None
        result = transfer(a.runs, a.out, a.episodes, a.seed, a.reps, a.device, domains=domains,
                          invariance_scenes=a.invariance)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(transfer_markdown(result))
    print(f"written: {Path(a.out) / 'transfer.json'}, transfer.md, transfer.png"
          + (", policy_invariance.png" if "policy_invariance" in result else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
