"""UDR model selection: ranking on synthetic representations, and selection over a (Ray-free) stage-1 sweep."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from darla import stage1
from darla.config import ConfigError
from darla.select import (SELECTION_JSON, SELECTION_MD, _correlations, best_vision_run, candidates, select,
                          udr_by_setting)
from darla.sweep import SWEEP_PLAN, SweepConfig, expand, trial_config, write_plan

ROOT = Path(__file__).resolve().parents[1]
N, K = 600, 4  # inputs, ground-truth factors
INACTIVE_KL = 1e-3


def _disentangled(z: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A seed of a disentangled model: the factors permuted, sign-flipped, noisy, plus two unused latents."""
    codes = z[:, rng.permutation(K)] * rng.choice([-1.0, 1.0], size=K) + 0.05 * rng.normal(size=z.shape)
    codes = np.concatenate([codes, 0.01 * rng.normal(size=(len(z), 2))], axis=1)
    return codes, np.array([1.0] * K + [INACTIVE_KL] * 2)


def _entangled(z: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A seed of an entangled model: a random rotation of the factors (every latent mixes all of them)."""
    q, _ = np.linalg.qr(rng.normal(size=(K, K)))
    codes = z @ q + 0.05 * rng.normal(size=z.shape)
    codes = np.concatenate([codes, 0.01 * rng.normal(size=(len(z), 2))], axis=1)
    return codes, np.array([1.0] * K + [INACTIVE_KL] * 2)


@pytest.mark.parametrize("correlation", ["lasso", "spearman"])
def test_udr_ranks_disentangled_seeds_above_entangled_ones(correlation: str) -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(N, K))
    models = [_disentangled(z, rng) for _ in range(3)] + [_entangled(z, rng) for _ in range(3)]
    settings = ["model.beta=16"] * 3 + ["model.beta=1"] * 3
    udr, pairwise = udr_by_setting([m[0] for m in models], [m[1] for m in models], settings, correlation=correlation)
    assert min(udr[:3]) > max(udr[3:]), udr
    assert min(udr[:3]) > 0.8  # an exact permutation scores 1
    assert pairwise[0].keys() == {1, 2} and pairwise[4].keys() == {3, 5}  # partners: the other seeds of the setting
    assert udr[0] == pytest.approx(float(np.median(list(pairwise[0].values()))))


def test_udr_pairs_and_lonely_settings() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=(N, K))
    models = [_disentangled(z, rng) for _ in range(4)] + [_entangled(z, rng)]
    udr, pairwise = udr_by_setting([m[0] for m in models], [m[1] for m in models], ["a"] * 4 + ["b"], pairs=1)
    assert all(len(p) == 1 for p in pairwise[:4])
    assert math.isnan(udr[4]) and pairwise[4] == {}  # alone in its setting: no seed to compare with


def test_correlation_with_supervised_scores() -> None:
    models = [{"udr": u, "metrics": {"mig.scores.mig": m, "dci.scores.disentanglement": d, "const": 1.0}}
              for u, m, d in [(0.9, 0.5, 0.1), (0.7, 0.4, 0.3), (0.5, 0.2, 0.2), (0.2, 0.1, 0.4)]]
    out = _correlations(models)
    assert out["mig.scores.mig"]["rho"] == pytest.approx(1.0)
    assert out["dci.scores.disentanglement"]["rho"] == pytest.approx(-0.8)
    assert out["mig.scores.mig"]["n"] == 4 and "const" not in out  # a constant score has no rank correlation


def _tiny_sweep(tmp_path: Path, seeds: list[int]) -> SweepConfig:
    """A finished 2-β × seeds stage-1 sweep, its trials run in-process (the selection does not need Ray)."""
    spec = SweepConfig(stage="stage1", base=str(ROOT / "configs/dsprites/beta_vae.yaml"),
                       overrides=["data.num_images=256", "train.steps=3", "train.batch_size=8", "model.latent_dim=3",
                                  "train.image_every=100", "train.ckpt_every=100", "train.restarts=1"],
                       grid={"model.beta": [1, 4], "train.seed": seeds}, dir=str(tmp_path / "sweep"))
    trials = expand(spec)
    write_plan(spec, trials)
    for t in trials:
        stage1.run(trial_config(spec, t), progress=False)
    return spec


def test_select_writes_selection_and_best_vision_run_reuses_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _tiny_sweep(tmp_path, [0, 1])
    root = Path(spec.dir)
    result = select(root, num_points=64, progress=False)
    saved = json.loads((root / SELECTION_JSON).read_text())
    assert saved["best"] == result["best"]
    assert {m["setting"] for m in saved["models"]} == {"model.beta=1", "model.beta=4"}
    assert sorted(m["rank"] for m in saved["models"]) == [1, 2, 3, 4]
    assert all(len(m["pairwise"]) == 1 and len(m["kl_per_latent"]) == 3 for m in saved["models"])
    assert saved["udr"]["num_points"] == 64 and saved["udr"]["correlation"] == "lasso"
    assert "**Best:**" in (root / SELECTION_MD).read_text()
    best = Path(result["best"]["run_dir"])
    assert best.parent == root.resolve() / "trials"

    import darla.select

    monkeypatch.setattr(darla.select, "select", lambda *a, **k: pytest.fail("selection.json was fresh"))
    assert best_vision_run(root) == best
    # A model retrained (its checkpoint changed) makes the saved selection stale: it is recomputed.
    calls = []
    monkeypatch.setattr(darla.select, "select", lambda *a, **k: calls.append(a) or saved)
    t = expand(spec)[3]
    stage1.run(trial_config(spec, t.__class__(t.name, t.params, [*t.overrides, "train.steps=4"], t.run_dir)), progress=False)
    best_vision_run(root)
    assert len(calls) == 1


def test_select_refuses_sweeps_it_cannot_rank(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="holds no sweep.json"):
        candidates(tmp_path)
    (tmp_path / SWEEP_PLAN).write_text(json.dumps({"stage": "stage2", "trials": []}))
    with pytest.raises(ConfigError, match="is a stage2 sweep"):
        candidates(tmp_path)
    spec = _tiny_sweep(tmp_path / "one_seed", [0])
    with pytest.raises(ConfigError, match="no setting of .* has two finished trials"):
        select(spec.dir, num_points=64, progress=False)


def _stage2_summary(root: Path, rows: list[tuple[str, float, int, float, float]], stage: str = "stage2") -> None:
    """A stage-2 sweep summary: rows of (variant, learning rate, seed, source return, target return)."""
    trials = [{"trial": f"{v},lr={lr},seed={s}", "status": "done",
               "params": {"variant": v, "agent.variant": v, "agent.hparams.learning_rate": lr, "train.seed": s},
               "run_dir": str(root / "trials" / f"{v}{lr}{s}"),
               "result": {"reward/source": src, "reward/target": tgt}}
              for v, lr, s, src, tgt in rows]
    root.mkdir(parents=True, exist_ok=True)
    (root / "summary.json").write_text(json.dumps({"stage": stage, "trials": trials}))


def test_select_agents_reads_the_source_domain_only(tmp_path: Path) -> None:
    from darla.select import AGENT_SELECTION_JSON, main, select_agents

    root = tmp_path / "tuning"
    _stage2_summary(root, [
        # DARLA: lr 1e-3 has the best mean source return (10, 12 → 11); lr 3e-3 the best target, never chosen
        ("DARLA", 1e-3, 0, 10.0, 0.0), ("DARLA", 1e-3, 1, 12.0, 0.0),
        ("DARLA", 3e-3, 0, 13.0, 9.0), ("DARLA", 3e-3, 1, 5.0, 9.0),
        # BASELINE: a tie on the source goes to the setting listed first
        ("BASELINE", 3e-4, 0, 4.0, 0.0), ("BASELINE", 1e-3, 0, 4.0, 5.0),
    ])
    result = select_agents(root)
    darla = result["variants"]["DARLA"]
    assert darla["settings"] == {"agent.variant": "DARLA", "agent.hparams.learning_rate": 1e-3}
    assert darla["mean_return"] == {"agent.variant=DARLA,agent.hparams.learning_rate=0.001": 11.0,
                                    "agent.variant=DARLA,agent.hparams.learning_rate=0.003": 9.0}
    assert result["variants"]["BASELINE"]["settings"]["agent.hparams.learning_rate"] == 3e-4
    assert json.loads((root / AGENT_SELECTION_JSON).read_text()) == result
    assert main(["--agents", str(root)]) == 0


def test_select_agents_refuses_what_it_cannot_select(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from darla.select import main

    assert main(["--agents", str(tmp_path / "none")]) == 2
    assert "summary.json not found" in capsys.readouterr().err
    _stage2_summary(tmp_path / "s1", [("DARLA", 1e-3, 0, 1.0, 0.0)], stage="stage1")
    assert main(["--agents", str(tmp_path / "s1")]) == 2
    assert "needs a stage-2 sweep" in capsys.readouterr().err
    root = tmp_path / "unfinished"
    _stage2_summary(root, [("DARLA", 1e-3, 0, 1.0, 0.0)])
    summary = json.loads((root / "summary.json").read_text())
    summary["trials"][0].update(status="incomplete", result={})
    (root / "summary.json").write_text(json.dumps(summary))
    assert main(["--agents", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "has no reward/source (incomplete)" in err


def test_select_agents_over_several_sweeps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same grid over two vision modules: each variant's best setting over both sweeps, labelled by sweep."""
    from darla.select import AGENT_SELECTION_JSON, main, select_agents

    _stage2_summary(tmp_path / "fg", [("DARLA", 3e-4, 0, 0.1, 9.0), ("DARLA", 1e-3, 0, -0.2, 9.0),
                                      ("DARLA_DAE", 3e-4, 0, 6.0, 0.0)])
    _stage2_summary(tmp_path / "nofg", [("DARLA", 3e-4, 0, 7.0, 0.0), ("DARLA", 1e-3, 0, 5.0, 0.0),
                                        ("DARLA_DAE", 3e-4, 0, 4.0, 0.0)])
    out = tmp_path / "chosen"
    result = select_agents([tmp_path / "fg", tmp_path / "nofg"], out=out)
    darla, dae = result["variants"]["DARLA"], result["variants"]["DARLA_DAE"]
    assert darla["best"] == "nofg: agent.variant=DARLA,agent.hparams.learning_rate=0.0003"
    assert darla["settings"]["sweep"] == str(tmp_path / "nofg") and len(darla["mean_return"]) == 4
    assert dae["settings"]["sweep"] == str(tmp_path / "fg")
    assert json.loads((out / AGENT_SELECTION_JSON).read_text()) == result
    assert main(["--agents", str(tmp_path / "fg"), str(tmp_path / "nofg")]) == 2
    assert "--out: required" in capsys.readouterr().err
