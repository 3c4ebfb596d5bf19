"""Typed configs: defaults, YAML, dotted overrides, and one-line errors naming the key."""
from pathlib import Path

import pytest

from darla.config import ConfigError, Stage1Config, load_config, to_yaml
from darla.runs import config_differences, prepare_run_dir

ROOT = Path(__file__).resolve().parents[1]


def test_yaml_and_overrides():
    cfg = load_config(Stage1Config, ROOT / "configs/dsprites/beta_vae.yaml", ["model.beta=8", "train.steps=2000"])
    assert cfg.model.beta == 8.0 and cfg.train.steps == 2000
    assert cfg.model.family == "beta_vae" and cfg.model.latent_dim == 10


@pytest.mark.parametrize(
    "override, key",
    [
        ("model.betta=3", "model.betta"),
        ("train.steps=abc", "train.steps"),
        ("model.beta=-1", "model.beta"),
        ("data.source=imagenet", "data.source"),
        ("model.likelihood=poisson", "model.likelihood"),
        ("nosuchsection.x=1", "nosuchsection"),
    ],
)
def test_bad_override_is_one_line_error_naming_key(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(Stage1Config, None, [override])
    msg = str(e.value)
    assert key in msg and "\n" not in msg


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(Stage1Config, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {beta: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Stage1Config, bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("model:\n  latent_dims: 4\n")
    with pytest.raises(ConfigError, match="model.latent_dims"):
        load_config(Stage1Config, unknown)


def test_override_needs_equals():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(Stage1Config, None, ["model.beta"])


def test_yaml_round_trip(tmp_path):
    cfg = load_config(Stage1Config, None, ["model.beta=2.5"])
    p = tmp_path / "c.yaml"
    p.write_text(to_yaml(cfg))
    assert load_config(Stage1Config, p) == cfg


def test_run_dir_records_provenance_and_refuses_mismatch(tmp_path):
    cfg = load_config(Stage1Config, None, [f"run.dir={tmp_path / 'r'}"])
    path, resuming = prepare_run_dir(cfg.run.dir, cfg, "stage1", resume=True, ignore=("train.steps",))
    assert not resuming and (path / "config.yaml").exists() and (path / "run.json").exists()
    import json

    info = json.loads((path / "run.json").read_text())
    assert info["stage"] == "stage1" and "torch" in info["versions"] and info["git_sha"]
    longer = load_config(Stage1Config, None, [f"run.dir={tmp_path / 'r'}", "train.steps=5"])
    assert prepare_run_dir(cfg.run.dir, longer, "stage1", resume=True, ignore=("train.steps",))[1]
    other = load_config(Stage1Config, None, [f"run.dir={tmp_path / 'r'}", "model.beta=9"])
    with pytest.raises(ConfigError, match="model.beta"):
        prepare_run_dir(cfg.run.dir, other, "stage1", resume=True)
    with pytest.raises(ConfigError, match="run.resume"):
        prepare_run_dir(cfg.run.dir, cfg, "stage1", resume=False)


def test_config_differences():
    assert config_differences({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}}) == ["a.c"]
    assert config_differences({"a": {"b": 1}}, {"a": {"b": 2}}, ignore=("a.",)) == []
    # A setting added since the run was saved counts as its default, so old runs resume unless it is changed.
    assert config_differences({"a": {"b": 1}}, {"a": {"b": 1, "new": 0}}, defaults={"a": {"new": 0}}) == []
    assert config_differences({"a": {"b": 1}}, {"a": {"b": 1, "new": 5}}, defaults={"a": {"new": 0}}) == ["a.new"]


def test_a_run_saved_before_a_setting_existed_resumes(tmp_path):
    cfg = load_config(Stage1Config, None, [f"run.dir={tmp_path / 'r'}"])
    path, _ = prepare_run_dir(cfg.run.dir, cfg, "stage1", resume=True)
    saved = (path / "config.yaml").read_text()
    assert "  restarts: 1\n" in saved
    (path / "config.yaml").write_text(saved.replace("  restarts: 1\n", ""))  # as written before train.restarts existed
    assert prepare_run_dir(cfg.run.dir, cfg, "stage1", resume=True)[1]
    with pytest.raises(ConfigError, match=r"train\.restarts"):
        prepare_run_dir(cfg.run.dir, load_config(Stage1Config, None, [f"run.dir={tmp_path / 'r'}", "train.restarts=2",
                                                                     "train.restart_steps=10"]), "stage1", resume=True)


def test_an_empty_override_is_the_empty_string():
    cfg = load_config(Stage1Config, None, ["data.path=", "run.dir=x"])
    assert cfg.data.path == ""
