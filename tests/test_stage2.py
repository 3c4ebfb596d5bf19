"""python -m darla.stage2: every variant on Sprites, run directory contents, resume after a kill, load_agent, errors."""
import json

import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback

from agents.callbacks import evaluate_domains
from darla.config import ConfigError, Stage2Config, load_config
from darla.stage2 import EVAL_SEED_OFFSET, load_agent, main, run
from vision.checkpoint import file_sha256, save_checkpoint
from vision.models import build_model
from vision.models.base import ModelConfig
from vision.wrappers import ObservationShapeError

pytest.importorskip("envs")

ENV = "darla/Sprites-v0"
TINY = ["env.n_envs=2", "train.total_timesteps=128", "train.eval_every=64", "train.eval_episodes=1",
        "train.eval_envs=1", "train.ckpt_every=64", "train.device=cpu"]
HPARAMS = {"ppo": ["agent.hparams={n_steps: 32, batch_size: 32, n_epochs: 1}", "agent.policy_kwargs={net_arch: [32]}"],
           "dqn": ["agent.hparams={learning_starts: 32, buffer_size: 500}", "agent.policy_kwargs={net_arch: [32]}"],
           "ec": []}


@pytest.fixture(scope="module")
def vision_runs(tmp_path_factory):
    """Stage-1-style run directories (checkpoint.pt inside) of the families the variants name."""
    root = tmp_path_factory.mktemp("stage1")
    torch.manual_seed(0)
    small = dict(latent_dim=6, hidden=32)
    dae = build_model(ModelConfig(family="dae", **small), (3, 64, 64))
    bvd = build_model(ModelConfig(family="beta_vae_dae", **small), (3, 64, 64), pretrained=False)
    bvd.attach_dae(dae)
    models = {"dae": dae, "beta_vae_dae": bvd, "vae": build_model(ModelConfig(family="vae", **small), (3, 64, 64)),
              "dc_ign": build_model(ModelConfig(family="dc_ign", **small), (3, 64, 64)),
              "gray": build_model(ModelConfig(family="beta_vae_dae", **small), (1, 64, 64), pretrained=False)}
    for name, model in models.items():
        save_checkpoint(root / name / "checkpoint.pt", model, step=0)
    return {name: root / name for name in models}


VARIANT_VISION = {"BASELINE": None, "DARLA": "beta_vae_dae", "DARLA_ENT": "beta_vae_dae", "PIXEL_VAE": "vae",
                  "DARLA_DAE": "dae",
                  "DARLA_FT": "beta_vae_dae", "DC_IGN": "dc_ign", "RANDOM_ENC": None, "AUG": None}


def config(tmp_path, variant, vision_runs, *extra, name=None, algo="ppo"):
    vision = VARIANT_VISION.get(variant)
    ovs = [f"run.dir={tmp_path / (name or variant)}", f"env.id={ENV}", f"agent.variant={variant}",
           f"agent.algo={algo}", *TINY, *HPARAMS[algo]]
    if vision:
        ovs.append(f"vision.run={vision_runs[vision]}")
    return load_config(Stage2Config, None, [*ovs, *extra])


@pytest.mark.parametrize("variant", list(VARIANT_VISION))
def test_each_variant_trains_on_sprites(tmp_path, vision_runs, variant):
    cfg = config(tmp_path, variant, vision_runs, "train.total_timesteps=256", "train.eval_every=128")
    summary = run(cfg, progress=False)
    d = tmp_path / variant
    assert summary["num_timesteps"] >= 256 and summary["domains"] == ["source", "target"]
    for name in ("config.yaml", "run.json", "agent.zip", "evaluations.json", "stage2.json"):
        assert (d / name).exists(), name
    evals = json.loads((d / "evaluations.json").read_text())
    assert [h["timesteps"] for h in evals["source"]] == [h["timesteps"] for h in evals["target"]]
    assert evals["source"][0]["timesteps"] == 0 and evals["source"][-1]["timesteps"] == summary["num_timesteps"]
    assert summary["reference"]["scripted"]["mean_reward"] > summary["reference"]["random"]["mean_reward"]
    info = json.loads((d / "run.json").read_text())
    assert info["git_sha"] and "stable-baselines3" in info["versions"]
    if VARIANT_VISION[variant]:
        vis = json.loads((d / "vision.json").read_text())
        source = vision_runs[VARIANT_VISION[variant]] / "checkpoint.pt"
        assert vis["source_path"] == str(source.resolve()) and vis["source_sha256"] == file_sha256(source)
        assert vis["snapshot_sha256"] == file_sha256(d / "vision.pt") == vis["source_sha256"]
    elif variant == "RANDOM_ENC":
        assert json.loads((d / "vision.json").read_text())["random_init"] is True
    else:
        assert summary["vision"] is None and not (d / "vision.pt").exists()


def test_tensorboard_has_one_eval_stream_per_domain(tmp_path, vision_runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run(config(tmp_path, "DARLA", vision_runs), progress=False)
    acc = EventAccumulator(str(tmp_path / "DARLA" / "tb"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for domain in ("source", "target"):
        steps = [e.step for e in acc.Scalars(f"eval/{domain}/mean_reward")]
        assert steps[0] == 0 and steps[-1] >= 128 and len(steps) >= 3
    assert "train/value_loss" in tags


class Kill(BaseCallback):
    """Simulates a kill: raises once training has passed ``at`` env steps."""

    def __init__(self, at: int):
        super().__init__()
        self.at = at

    def _on_step(self) -> bool:
        if self.num_timesteps > self.at:
            raise KeyboardInterrupt
        return True


@pytest.mark.parametrize("variant,algo", [("DARLA", "ppo"), ("DARLA", "dqn"), ("DARLA", "ec"), ("BASELINE", "ppo")])
def test_resume_after_a_kill(tmp_path, vision_runs, variant, algo):
    cfg = config(tmp_path, variant, vision_runs, "train.total_timesteps=192", algo=algo)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, progress=False, callbacks=[Kill(at=100)])
    d = tmp_path / variant
    assert (d / "agent.zip").exists() and not (d / "stage2.json").exists()
    if algo == "dqn":
        assert (d / "replay_buffer.pkl").exists()
    summary = run(cfg, progress=False)
    assert summary["resumed_from"] is not None and 64 <= summary["resumed_from"] <= 100
    assert summary["num_timesteps"] >= 192
    assert summary["num_timesteps"] - summary["resumed_from"] < 192  # continued, not restarted
    evals = json.loads((d / "evaluations.json").read_text())["source"]
    steps = [h["timesteps"] for h in evals]
    assert steps == sorted(steps) and steps[0] == 0
    again = run(cfg, progress=False)  # a finished run returns at once
    assert again["num_timesteps"] == summary["num_timesteps"] and again["train_seconds"] < 5


def test_load_agent_rebuilds_the_exact_pipeline(tmp_path, vision_runs):
    cfg = config(tmp_path, "DARLA", vision_runs)
    summary = run(cfg, progress=False)
    agent = load_agent(tmp_path / "DARLA", device="cpu")
    assert agent.variant.name == "DARLA" and agent.domains == ["source", "target"]
    envs = {d: agent.make_env(d, n_envs=cfg.train.eval_envs, seed=0) for d in agent.domains}
    obs = envs["target"].reset()
    assert obs.shape == (1, 6) and agent.predict(obs).shape == (1,)
    # Same envs, seeds and weights as the run's final evaluation: the same returns.
    again = evaluate_domains(agent.model, envs, cfg.train.eval_episodes, seed=cfg.train.seed + EVAL_SEED_OFFSET)
    for d in agent.domains:
        assert again[d]["mean_reward"] == pytest.approx(summary["final"][d]["mean_reward"])


def test_pixel_and_ft_agents_load_for_stage3(tmp_path, vision_runs):
    for variant in ("BASELINE", "DARLA_FT"):
        run(config(tmp_path, variant, vision_runs), progress=False)
        agent = load_agent(tmp_path / variant, device="cpu")
        obs = agent.make_env("target", n_envs=2, seed=1).reset()
        assert obs.shape == (2, 64, 64, 3) and agent.predict(obs).shape == (2,)


def test_clear_errors(tmp_path, vision_runs):
    with pytest.raises(ConfigError, match="vision.run: variant DARLA needs a stage-1 run directory or checkpoint"):
        run(config(tmp_path, "BASELINE", vision_runs, "agent.variant=DARLA", name="a"), progress=False)
    with pytest.raises(ValueError, match="variant DARLA_DAE expects a vision module of family dae"):
        run(config(tmp_path, "DARLA_DAE", vision_runs, f"vision.run={vision_runs['vae']}", name="b"), progress=False)
    # DARLA_ENT is DARLA's β-VAE_DAE at a low β; the pixel β = 1 VAE belongs to PIXEL_VAE.
    with pytest.raises(ValueError, match="variant DARLA_ENT expects a vision module of family beta_vae_dae; .* 'vae'"):
        run(config(tmp_path, "DARLA_ENT", vision_runs, f"vision.run={vision_runs['vae']}", name="b2"), progress=False)
    with pytest.raises(ObservationShapeError, match=r"\(64, 64, 3\).*\(1, 64, 64\)"):
        run(config(tmp_path, "DARLA", vision_runs, f"vision.run={vision_runs['gray']}", "vision.check_family=false",
                   name="c"), progress=False)
    with pytest.raises(ConfigError, match="vision.run: checkpoint: no such file"):
        run(config(tmp_path, "DARLA", vision_runs, f"vision.run={tmp_path / 'missing'}", name="d"), progress=False)
    with pytest.raises(ConfigError, match="agent.variant: unknown variant 'DARLA_XL'"):
        config(tmp_path, "DARLA_XL", vision_runs)
    with pytest.raises(ConfigError, match="agent.algo: unknown algorithm 'ppo2'"):
        config(tmp_path, "BASELINE", vision_runs, "agent.algo=ppo2")
    with pytest.raises(ConfigError, match="env.id: 'NoSuchEnv-v9' is not a registered Gymnasium id"):
        run(config(tmp_path, "BASELINE", vision_runs, "env.id=NoSuchEnv-v9", name="e"), progress=False)


def test_cli(tmp_path, vision_runs, capsys):
    yaml = tmp_path / "cfg.yaml"
    yaml.write_text(f"env:\n  id: {ENV}\nagent:\n  variant: DARLA\n")
    ovs = [f"run.dir={tmp_path / 'cli'}", f"vision.run={vision_runs['beta_vae_dae']}", *TINY, *HPARAMS["ppo"],
           "train.total_timesteps=64"]
    assert main(["--config", str(yaml), "--no-progress", *ovs]) == 0
    assert "stage2 done: DARLA/ppo" in capsys.readouterr().out
    assert main(["--config", str(yaml), "--no-progress", "agent.variant=NOPE"]) == 2
    assert "error: agent.variant: unknown variant 'NOPE'" in capsys.readouterr().err


def test_non_darla_pixel_env(tmp_path, vision_runs):
    """A Gymnasium env darla knows nothing about: no domains, frames of another size (resized by the wrapper)."""
    import gymnasium as gym

    gym.register("stage2test/Blocks-v0", entry_point="tests.test_wrappers:BlockEnv", kwargs={"size": 80},
                 max_episode_steps=20)
    cfg = config(tmp_path, "DARLA", vision_runs, "env.id=stage2test/Blocks-v0", "env.domain_kwarg=''",
                 "env.imports=[tests.test_wrappers]")
    summary = run(cfg, progress=False)
    assert summary["domains"] == ["source"] and summary["reference"] is None
    assert np.isfinite(summary["final"]["source"]["mean_reward"])


def test_random_encoder_borrows_an_architecture_not_weights(tmp_path, vision_runs):
    cfg = config(tmp_path, "RANDOM_ENC", vision_runs, f"vision.run={vision_runs['vae']}", "train.total_timesteps=64")
    run(cfg, progress=False)
    info = json.loads((tmp_path / "RANDOM_ENC" / "vision.json").read_text())
    assert info["random_init"] and info["family"] == "vae" and info["latent_dim"] == 6
    assert info["architecture_from"].endswith("checkpoint.pt") and info["source_sha256"] is None
    trained = torch.load(vision_runs["vae"] / "checkpoint.pt", weights_only=False)["state_dict"]
    random = torch.load(tmp_path / "RANDOM_ENC" / "vision.pt", weights_only=False)["state_dict"]
    assert not torch.equal(trained["encoder.head.weight"], random["encoder.head.weight"])


def test_vision_amp_reaches_the_frozen_encoder(tmp_path, vision_runs):
    from darla.stage2 import build_pipeline
    from vision.runtime import autocast_dtype

    fp32 = build_pipeline(config(tmp_path, "DARLA_DAE", vision_runs, name="fp32"), tmp_path / "fp32", torch.device("cpu"))
    amp = build_pipeline(config(tmp_path, "DARLA_DAE", vision_runs, "vision.amp=true", name="amp"), tmp_path / "amp",
                         torch.device("cpu"))
    assert fp32.encoder.backend == "fp32"
    # bf16 where the CPU has it natively; on other CPUs amp=true falls back to fp32
    assert (amp.encoder.backend != "fp32") == (autocast_dtype(torch.device("cpu")) is not None)


# ----- policy invariance (stage 3's analysis of what a domain change does to a trained policy) -------------------
def test_action_distance_known_values():
    from darla.transfer import action_distance

    assert action_distance(np.array([0, 1, 2]), np.array([0, 2, 2])).tolist() == [0.0, 1.0, 0.0]
    assert action_distance(np.array([[0, 1], [1, 1]]), np.array([[0, 1], [1, 0]])).tolist() == [0.0, 1.0]
    assert action_distance(np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]])).tolist() == [5.0]


class _FramePolicy:
    """A stand-in agent on pixels: ``policy(frames) -> actions``."""

    def __init__(self, agent, policy):
        self.config, self.run_dir, self.model, self.policy = agent.config, agent.run_dir, None, policy

    def observe(self, frames):
        return frames

    def predict(self, obs):
        return self.policy(obs)


def test_policy_invariance_known_values(tmp_path, vision_runs):
    from darla.stage2 import load_agent
    from darla.transfer import policy_invariance

    run(config(tmp_path, "BASELINE", vision_runs, "train.total_timesteps=64"), progress=False)
    agent = load_agent(tmp_path / "BASELINE", device="cpu")

    def where(frames):  # the column of the sprites' centre, in 8 bands: blind to colour up to edge pixels
        mask = (frames != frames[:, :1, :1]).any(-1)
        cols = (mask.sum(1) * np.arange(frames.shape[2])).sum(1) / np.maximum(mask.sum((1, 2)), 1)
        return (cols // 8).astype(np.int64)

    blind = policy_invariance(_FramePolicy(agent, where), num_scenes=64)
    assert blind["reference_distance"] > 0.5
    assert blind["targets"]["target"]["policy_invariance"] > 0.9
    assert blind["targets"]["target"]["action_agreement"] > 0.9

    def colour(frames):  # the corner's (background) colour: the target's palette changes it
        return (frames[:, 0, 0].astype(np.int64) // 10 @ np.array([1, 7, 49])) % 5

    copier = policy_invariance(_FramePolicy(agent, colour), num_scenes=64)
    assert copier["targets"]["target"]["policy_invariance"] < 0.5
    constant = policy_invariance(_FramePolicy(agent, lambda f: np.zeros(len(f), dtype=np.int64)), num_scenes=64)
    assert np.isnan(constant["targets"]["target"]["policy_invariance"])
    assert constant["targets"]["target"]["action_agreement"] == 1.0


def test_policy_invariance_of_trained_agents_in_transfer(tmp_path, vision_runs):
    from darla.transfer import INVARIANCE_FILE, transfer

    runs = []
    for variant in ("DARLA", "BASELINE"):
        run(config(tmp_path, variant, vision_runs, "train.total_timesteps=64"), progress=False)
        runs.append(tmp_path / variant)
    result = transfer(runs, tmp_path / "out", episodes=2, reps=50, device="cpu", progress=False, invariance_scenes=40)
    darla = result["runs"][0]["policy_invariance"]
    assert len(darla["sensitivity"]) == 6 and len(darla["targets"]["target"]["per_latent"]) == 6
    assert 0.0 <= darla["targets"]["target"]["latent_invariance"] <= 1.0
    baseline = result["runs"][1]["policy_invariance"]
    assert baseline["sensitivity"] is None and "latent_invariance" not in baseline["targets"]["target"]
    assert result["policy_invariance"]["DARLA"]["target"]["policy_invariance"]["per_seed"] == [
        darla["targets"]["target"]["policy_invariance"]]
    assert "invariance of the latents it reads" in (tmp_path / "out" / "transfer.md").read_text()
    assert (tmp_path / "out" / "policy_invariance.png").exists()
    cached = json.loads((runs[0] / INVARIANCE_FILE).read_text())
    assert list(cached) == ["scenes=40,seed=1000003"]


def test_a_vision_run_still_training_is_refused(tmp_path, vision_runs):
    model = build_model(ModelConfig(family="beta_vae_dae", latent_dim=6, hidden=32), (3, 64, 64), pretrained=False)
    model.attach_dae(build_model(ModelConfig(family="dae", latent_dim=6, hidden=32), (3, 64, 64)))
    partial = tmp_path / "partial"
    save_checkpoint(partial / "checkpoint.pt", model, step=900, extra={"config": {"train": {"steps": 2000}}})
    cfg = config(tmp_path, "DARLA", vision_runs, f"vision.run={partial}")
    with pytest.raises(ConfigError, match=r"vision.run: .*checkpoint.pt is at step 900 of the 2000"):
        run(cfg, progress=False)
    assert not (tmp_path / "DARLA").exists()  # refused before the run directory was made
    # a random encoder borrows only the architecture: an unfinished run is enough for that
    borrowed = config(tmp_path, "RANDOM_ENC", vision_runs, f"vision.run={partial}", "train.total_timesteps=64")
    assert run(borrowed, progress=False)["num_timesteps"] >= 64
    save_checkpoint(partial / "checkpoint.pt", model, step=2000, extra={"config": {"train": {"steps": 2000}}})
    assert run(config(tmp_path, "DARLA", vision_runs, f"vision.run={partial}", "train.total_timesteps=64"),
               progress=False)["num_timesteps"] >= 64
