"""bench/metric_table.py: carrying rows of an earlier table beside newly scored runs."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def table():
    spec = importlib.util.spec_from_file_location("metric_table", ROOT / "bench" / "metric_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(name, family=None, seed=None, mig=0.1):
    return {"name": name, "family": family, "seed": seed, "results": {"mig": {"scores": {"mig": mig}}}, "cpu_s": 1.0}


def _earlier(tmp_path):
    rows = [_row("raw pixels"), _row("vae", "vae", 0), _row("vae", "vae", 1),
            _row("beta_vae", "beta_vae", 0, 0.4), _row("beta_vae", "beta_vae", 1, 0.4), _row("dip_vae", "dip_vae", 0)]
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps({"git": "abc", "num_points": 10_000, "rows": rows}))
    return path


def test_carried_rows_drop_exactly_the_rescored_family_and_seed(table, tmp_path):
    specs = [{"name": "raw pixels", "kind": "raw"}, {"name": "beta_vae", "kind": "run", "family": "beta_vae", "seed": 0}]
    carried = table.carried_rows(_earlier(tmp_path), specs)
    assert ("beta_vae", 0) not in carried and ("beta_vae", 1) in carried
    assert ("raw pixels", None) in carried and carried[("vae", 1)]["scored_git"] == "abc"


def test_merge_keeps_baselines_first_and_the_earlier_family_order(table, tmp_path):
    specs = [{"name": "raw pixels", "kind": "raw"}, {"name": "PCA (10)", "kind": "pca"},
             {"name": "beta_vae", "kind": "run", "family": "beta_vae", "seed": 0},
             {"name": "infogan", "kind": "run", "family": "infogan", "seed": 0}]
    carried = table.carried_rows(_earlier(tmp_path), specs)
    scored = [_row("PCA (10)"), _row("beta_vae", "beta_vae", 0, 0.9), _row("infogan", "infogan", 0)]
    rows = table.merge_rows(specs, scored, carried)
    assert [(r["name"], r["seed"]) for r in rows] == [
        ("raw pixels", None), ("PCA (10)", None), ("vae", 0), ("vae", 1), ("beta_vae", 0), ("beta_vae", 1),
        ("dip_vae", 0), ("infogan", 0)]
    assert rows[4]["results"]["mig"]["scores"]["mig"] == 0.9  # the re-scored run replaced the earlier row


def test_carry_refuses_a_table_scored_on_other_points(table, tmp_path, capsys):
    earlier = _earlier(tmp_path)
    with pytest.raises(SystemExit) as e:
        table.main(["--quick", "--carry", str(earlier), "--out", str(tmp_path / "t.md")])
    assert e.value.code == 2
    assert "--carry" in capsys.readouterr().err and not (tmp_path / "t.md").exists()


def test_carry_names_a_file_that_is_not_a_table(table, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rows": 3}))
    with pytest.raises(SystemExit):
        table.main(["--quick", "--carry", str(bad), "--out", str(tmp_path / "t.md")])
    assert "bad.json" in capsys.readouterr().err


def test_rewriting_the_table_keeps_the_hand_written_part(table, tmp_path):
    doc = tmp_path / "metrics.md"
    assert table.kept_prose(doc) == ""  # no earlier document
    doc.write_text("# old tables\n| a |\n")
    assert table.kept_prose(doc) == ""  # no marker: nothing is kept
    doc.write_text(f"# old tables\n| a |\n\n{table.PROSE_MARKER}\n\n## How the runs were made\ntext\n")
    kept = table.kept_prose(doc)
    assert kept.startswith("\n" + table.PROSE_MARKER) and kept.endswith("## How the runs were made\ntext\n")
    assert "old tables" not in kept
