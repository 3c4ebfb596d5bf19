"""Agents: algorithm factory, variants, frozen vs fine-tuned encoders, Episodic Control, augmentation, callbacks."""
import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.utils import LinearSchedule

from agents.augment import VecImageAugmentation
from agents.callbacks import MultiDomainEvalCallback
from agents.config import AgentConfig
from agents.episodic_control import ActionTable, EpisodicControl
from agents.extractors import VisionExtractor, encoder_matches, vision_extractors
from agents.factory import make_algorithm, parse_hparams, parse_policy_kwargs
from agents.variants import VARIANTS, build_agent, check_vision, get_variant, random_vision, wrap_observations
from vision.images import to_tensor
from vision.models import build_model
from vision.models.base import ModelConfig
from vision.wrappers import FrozenEncoder

PPO_TINY = {"n_steps": 32, "batch_size": 32, "n_epochs": 2}


class Bandit(gym.Env):
    """One-step contextual bandit: observation one-hot(context), reward 1 for the action equal to the context."""

    def __init__(self, n: int = 3):
        self.n = n
        self.observation_space = spaces.Box(0, 1, (n,), np.float32)
        self.action_space = spaces.Discrete(n)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.context = int(self.np_random.integers(self.n))
        return np.eye(self.n, dtype=np.float32)[self.context], {}

    def step(self, action):
        return np.eye(self.n, dtype=np.float32)[self.context], float(int(action) == self.context), True, False, {}


class Pixels(gym.Env):
    """Tiny pixel env: a block whose position tells the rewarded action; 8-step episodes."""

    def __init__(self, continuous: bool = False):
        self.observation_space = spaces.Box(0, 255, (64, 64, 3), np.uint8)
        self.action_space = spaces.Box(-1, 1, (2,), np.float32) if continuous else spaces.Discrete(2)

    def _obs(self):
        frame = np.zeros((64, 64, 3), np.uint8)
        frame[:, self.side * 32:(self.side + 1) * 32] = 200
        return frame

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.side = 0, int(self.np_random.integers(2))
        return self._obs(), {}

    def step(self, action):
        reward = float(int(action) == self.side) if np.ndim(action) == 0 else -float(np.abs(action).sum())
        self.t += 1
        self.side = int(self.np_random.integers(2))
        return self._obs(), reward, False, self.t >= 8, {}


def pixel_venv(n=2, seed=0, **kw):
    return make_vec_env(lambda: Pixels(**kw), n_envs=n, seed=seed)


@pytest.fixture(scope="module")
def dae():
    torch.manual_seed(0)
    return build_model(ModelConfig(family="dae", latent_dim=8, hidden=32), (3, 64, 64))


@pytest.fixture(scope="module")
def beta_vae_dae(dae):
    torch.manual_seed(1)
    model = build_model(ModelConfig(family="beta_vae_dae", latent_dim=6, hidden=32), (3, 64, 64), pretrained=False)
    model.attach_dae(dae)
    return model


# ----- factory ---------------------------------------------------------------------------------------------
def test_hparams_reach_sb3():
    model = make_algorithm("ppo", pixel_venv(), "CnnPolicy",
                           {"n_steps": 64, "batch_size": 32, "learning_rate": "lin_0.001", "ent_coef": 0.02},
                           {"net_arch": [16], "activation_fn": "relu"}, seed=0, device="cpu")
    assert model.n_steps == 64 and model.batch_size == 32 and model.ent_coef == 0.02
    assert model.learning_rate(1.0) == pytest.approx(1e-3) and model.learning_rate(0.5) == pytest.approx(5e-4)
    assert model.policy.activation_fn is torch.nn.ReLU


def test_hparam_translations():
    box = spaces.Box(-1, 1, (3,), np.float32)
    out = parse_hparams("td3", {"train_freq": [4, "step"], "action_noise": {"type": "normal", "sigma": 0.2}}, box)
    assert out["train_freq"] == (4, "step")
    assert np.allclose(out["action_noise"]._sigma, 0.2) and out["action_noise"]._sigma.shape == (3,)
    assert isinstance(parse_hparams("ppo", {"clip_range": "lin_0.2"})["clip_range"], LinearSchedule)
    assert parse_policy_kwargs({"optimizer_class": "adamw"})["optimizer_class"] is torch.optim.AdamW


@pytest.mark.parametrize("algo,continuous", [("a2c", False), ("dqn", False), ("sac", True), ("td3", True), ("ec", False)])
def test_every_algorithm_builds_and_learns(algo, continuous):
    hp = {"ec": {}, "a2c": {"n_steps": 8}}.get(algo, {"learning_starts": 16, "buffer_size": 200, "batch_size": 16})
    enc = FrozenEncoder(random_vision((64, 64, 3), seed=0, model_config=ModelConfig(hidden=32)), device="cpu")
    venv = wrap_observations(pixel_venv(continuous=continuous), get_variant("RANDOM_ENC"), encoder=enc)
    model = make_algorithm(algo, venv, "MlpPolicy", hp, {"net_arch": [16]}, seed=0, device="cpu")
    model.learn(48)
    assert model.num_timesteps >= 48
    assert np.shape(model.predict(venv.reset())[0])[0] == 2


def test_factory_errors():
    with pytest.raises(ValueError, match=r"agent.hparams.n_step: not a PPO parameter"):
        make_algorithm("ppo", pixel_venv(), "CnnPolicy", {"n_step": 64})
    with pytest.raises(ValueError, match="agent.algo: unknown algorithm 'ddpg'"):
        make_algorithm("ddpg", pixel_venv())
    with pytest.raises(ValueError, match="agent.algo: dqn needs a Discrete action space"):
        make_algorithm("dqn", pixel_venv(continuous=True), "CnnPolicy")
    with pytest.raises(ValueError, match="activation_fn: unknown 'swish'"):
        parse_policy_kwargs({"activation_fn": "swish"})
    with pytest.raises(ValueError, match="agent.variant: unknown variant 'DARLA2'"):
        AgentConfig(variant="DARLA2")
    with pytest.raises(ValueError, match="agent.algo: unknown algorithm 'impala'"):
        AgentConfig(algo="impala")


# ----- variants --------------------------------------------------------------------------------------------
def test_variant_table():
    assert set(VARIANTS) == {"BASELINE", "DARLA", "DARLA_ENT", "PIXEL_VAE", "DARLA_DAE", "DARLA_FT", "DC_IGN",
                             "RANDOM_ENC", "AUG"}
    assert get_variant("DARLA").families == ("beta_vae_dae",) and get_variant("DARLA").placement == "wrapper"
    assert get_variant("DARLA_FT").placement == "extractor"
    assert get_variant("BASELINE").policy == "CnnPolicy" and not get_variant("BASELINE").uses_vision
    with pytest.raises(ValueError, match="choose from"):
        get_variant("darla")


def test_family_checks(dae, beta_vae_dae):
    check_vision(get_variant("DARLA"), beta_vae_dae, "run")
    check_vision(get_variant("DARLA_DAE"), dae, "run")
    with pytest.raises(ValueError, match=r"variant DARLA expects a vision module of family beta_vae_dae; runs/x holds 'dae'"):
        check_vision(get_variant("DARLA"), dae, "runs/x")
    # DARLA_ENT is DARLA's own vision at a low β: the same family as DARLA, never a pixel VAE.
    ent = get_variant("DARLA_ENT")
    assert ent.families == get_variant("DARLA").families == ("beta_vae_dae",)
    assert ent.accepts("beta_vae_dae", {"beta": 0.01}) and ent.accepts("beta_vae_dae", {"beta": 1.0})
    assert not ent.accepts("vae", {}) and not ent.accepts("beta_vae", {"beta": 1.0})
    check_vision(ent, beta_vae_dae, "run")
    # PIXEL_VAE is the pixel-space β = 1 VAE (a beta_vae trained with β = 1 and no β normalisation counts too).
    pix = get_variant("PIXEL_VAE")
    assert pix.families == ("vae",) and pix.placement == "wrapper" and pix.policy == "MlpPolicy"
    assert pix.accepts("vae", {}) and pix.accepts("beta_vae", {"beta": 1.0})
    assert not pix.accepts("beta_vae", {"beta": 4.0}) and not pix.accepts("beta_vae", {"beta": 1.0, "beta_norm": True})
    assert not pix.accepts("beta_vae_dae", {"beta": 1.0})
    # DC_IGN reads a DC-IGN only; a β-VAE_DAE is not a factor-supervised code.
    assert get_variant("DC_IGN").accepts("dc_ign", {}) and not get_variant("DC_IGN").accepts("beta_vae_dae", {})


def test_darla_ent_refuses_a_pixel_vae_in_one_line():
    vae = build_model(ModelConfig(family="vae", latent_dim=4, hidden=32), (3, 64, 64))
    with pytest.raises(ValueError) as err:
        check_vision(get_variant("DARLA_ENT"), vae, "runs/x/vae")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("vision.run: variant DARLA_ENT expects a vision module of family beta_vae_dae; "
                          "runs/x/vae holds 'vae'")
    check_vision(get_variant("PIXEL_VAE"), vae, "runs/x/vae")  # the pixel VAE's own variant takes it


def test_no_gradient_reaches_the_frozen_encoder(beta_vae_dae):
    encoder = FrozenEncoder(beta_vae_dae, device="cpu")
    before = {k: v.clone() for k, v in beta_vae_dae.state_dict().items() if torch.is_tensor(v)}
    venv = wrap_observations(pixel_venv(), get_variant("DARLA"), encoder=encoder)
    model = build_agent(AgentConfig(variant="DARLA", hparams=PPO_TINY), venv, vision=beta_vae_dae, seed=0, device="cpu")
    policy_params = {id(p) for p in model.policy.parameters()}
    assert not policy_params & {id(p) for p in beta_vae_dae.parameters()}
    model.learn(128)
    for k, v in beta_vae_dae.state_dict().items():
        if torch.is_tensor(v):
            assert torch.equal(v, before[k]), k
    assert all(p.grad is None and not p.requires_grad for p in beta_vae_dae.parameters())
    assert not beta_vae_dae.training


def test_ortho_init_would_overwrite_pretrained_extractor(beta_vae_dae):
    """The pitfall DARLA_FT guards against: building PPO re-initialises the features extractor."""
    kwargs = {"features_extractor_class": VisionExtractor,
              "features_extractor_kwargs": {"model_config": beta_vae_dae.cfg, "input_shape": (3, 64, 64)}}
    model = make_algorithm("ppo", pixel_venv(), "CnnPolicy", PPO_TINY, kwargs, seed=0, device="cpu")
    assert not encoder_matches(model.policy, beta_vae_dae.state_dict())


@pytest.mark.parametrize("algo,hp", [("ppo", PPO_TINY), ("dqn", {"learning_starts": 16, "buffer_size": 200,
                                                                  "batch_size": 16, "train_freq": 4})])
def test_darla_ft_starts_from_the_checkpoint_and_fine_tunes(beta_vae_dae, tmp_path, algo, hp):
    variant = get_variant("DARLA_FT")
    venv = wrap_observations(pixel_venv(), variant, vision=beta_vae_dae)
    model = build_agent(AgentConfig(variant="DARLA_FT", algo=algo, hparams=hp), venv, vision=beta_vae_dae, seed=0,
                        device="cpu")
    state = beta_vae_dae.state_dict()
    extractors = vision_extractors(model.policy)
    assert len(extractors) >= (1 if algo == "ppo" else 2)  # DQN: online and target networks
    assert encoder_matches(model.policy, state)
    model.learn(96)
    online = extractors[0].encoder_state()
    assert any(not torch.equal(online[k], state[f"encoder.{k}"]) for k in online), "the encoder did not change"
    assert all(not p.requires_grad for n, p in extractors[0].vision.named_parameters() if not n.startswith("encoder."))
    # The fine-tuned encoder survives a save/load round trip (the policy is rebuilt from the architecture alone).
    model.save(tmp_path / "agent")
    loaded = type(model).load(tmp_path / "agent", device="cpu")
    reloaded = vision_extractors(loaded.policy)[0].encoder_state()
    assert all(torch.equal(reloaded[k], online[k]) for k in online)


def test_darla_ft_features_start_equal_to_the_darla_wrapper(beta_vae_dae):
    """Same vision, same input to the policy head: standardised μ, with the checkpoint's latent statistics."""
    vision = copy.deepcopy(beta_vae_dae)
    vision.latent_mean.copy_(torch.linspace(-1, 1, vision.latent_dim))
    vision.latent_std.copy_(torch.linspace(0.1, 2, vision.latent_dim))
    venv = wrap_observations(pixel_venv(), get_variant("DARLA_FT"), vision=vision)
    model = build_agent(AgentConfig(variant="DARLA_FT", hparams=PPO_TINY), venv, vision=vision, seed=0, device="cpu")
    frames = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)  # as an env emits them
    with torch.no_grad():
        features = vision_extractors(model.policy)[0](to_tensor(frames)).numpy()
    np.testing.assert_allclose(features, FrozenEncoder(vision, device="cpu")(frames), rtol=1e-4, atol=1e-4)


def test_random_encoder_is_seeded():
    a = random_vision((64, 64, 3), seed=3, model_config=ModelConfig(hidden=32))
    b = random_vision((64, 64, 3), seed=3, model_config=ModelConfig(hidden=32))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert a.input_shape == (3, 64, 64) and not any(p.requires_grad for p in a.parameters())
    # Variance-preserving init: latents of different frames differ at unit scale, not by ~1e-3 (PyTorch default).
    frames = np.zeros((2, 64, 64, 3), np.uint8)
    frames[0, :, :32], frames[1, :, 32:] = 200, 200
    z = FrozenEncoder(a, device="cpu")(frames)
    assert np.abs(z[0] - z[1]).max() > 0.1


# ----- augmentation ----------------------------------------------------------------------------------------
def test_augmentation_colour_is_per_episode_and_shift_per_frame():
    raw = pixel_venv(n=2, seed=4)
    aug = VecImageAugmentation(pixel_venv(n=2, seed=4), pad=0, brightness=0.3, contrast=0.0, hue=0.0, seed=0)
    r, a = raw.reset(), aug.reset()
    assert a.shape == r.shape and a.dtype == np.uint8
    gains = []
    for _ in range(9):  # crosses one episode end (8-step episodes)
        r, _, done, info_r = raw.step(np.zeros(2, dtype=int))
        a, _, done_a, info_a = aug.step(np.zeros(2, dtype=int))
        bright = r[0] == 200
        gains.append(round(float(a[0][bright].mean()) / 200, 3))
        if done[0]:
            assert info_a[0]["terminal_observation"].shape == (64, 64, 3)
    assert len(set(gains[:7])) == 1 and gains[-1] != gains[0]  # constant within the episode, redrawn after
    shifted = VecImageAugmentation(pixel_venv(n=1, seed=4), pad=4, brightness=0, contrast=0, hue=0, seed=0)
    clean = pixel_venv(n=1, seed=4)
    shifted.reset(), clean.reset()
    edges = set()
    for _ in range(6):
        s, c = shifted.step(np.zeros(1, dtype=int))[0][0], clean.step(np.zeros(1, dtype=int))[0][0]
        assert s.shape == c.shape and s[..., 0].sum() != 0
        edges.add(int(np.argmax(s[0, :, 0] != s[0, 0, 0])) - int(np.argmax(c[0, :, 0] != c[0, 0, 0])))
    assert len(edges) > 1 and all(abs(e) <= 4 for e in edges)  # the block edge moves by random offsets <= pad


def test_aug_variant_wraps_training_envs_only():
    variant = get_variant("AUG")
    assert isinstance(wrap_observations(pixel_venv(), variant, training=True), VecImageAugmentation)
    assert not isinstance(wrap_observations(pixel_venv(), variant, training=False), VecImageAugmentation)


# ----- Episodic Control ------------------------------------------------------------------------------------
def test_ec_learns_a_bandit(tmp_path):
    venv = make_vec_env(Bandit, n_envs=2, seed=0)
    agent = EpisodicControl(venv, k=1, exploration_fraction=0.5, exploration_final_eps=0.0, seed=0)
    obs = np.eye(3, dtype=np.float32)
    agent.learn(300)
    actions, state = agent.predict(obs)
    assert state is None
    np.testing.assert_array_equal(actions, [0, 1, 2])
    np.testing.assert_allclose(agent.q_values(obs).max(1), 1.0)
    agent.save(tmp_path / "ec")
    loaded = EpisodicControl.load(tmp_path / "ec")
    np.testing.assert_array_equal(loaded.predict(obs)[0], actions)
    assert loaded.num_timesteps == agent.num_timesteps
    assert int(agent.predict(obs[1])[0]) == 1  # an unbatched observation gives an unbatched action


def test_ec_untried_actions_come_first_and_sb3_evaluation_works():
    venv = make_vec_env(Bandit, n_envs=1, seed=1)
    agent = EpisodicControl(venv, seed=0)
    agent.tables[0].update(np.eye(3, dtype=np.float32)[:1], np.array([5.0], np.float32), now=1)
    q = agent.q_values(np.eye(3, dtype=np.float32)[:1])
    assert q[0, 0] == 5.0 and np.isinf(q[0, 1:]).all()
    from stable_baselines3.common.evaluation import evaluate_policy

    mean, _ = evaluate_policy(agent, venv, n_eval_episodes=4, warn=False)
    assert 0.0 <= mean <= 1.0


def test_ec_projects_pixels():
    agent = EpisodicControl(pixel_venv(), projection_dim=16, seed=0)
    assert agent.projection is not None and agent.projection.shape == (64 * 64 * 3, 16)
    agent.learn(32)
    assert agent.tables[0].keys.shape[1] == 16 and sum(t.size for t in agent.tables) > 0


def test_action_table_max_update_and_lru_eviction():
    table = ActionTable(capacity=3, dim=1)
    keys = np.arange(3, dtype=np.float32)[:, None]
    table.update(keys, np.array([1.0, 2.0, 3.0], np.float32), now=1)
    table.update(keys[:1], np.array([0.5], np.float32), now=2)  # max(1, 0.5) keeps 1
    table.update(keys[1:2], np.array([7.0], np.float32), now=3)
    assert table.estimate(keys, k=1).tolist() == [1.0, 7.0, 3.0]
    table.update(np.array([[10.0]], np.float32), np.array([9.0], np.float32), now=4)  # evicts key 2 (least recent)
    assert table.size == 3 and 2.0 not in table.keys[:, 0] and 10.0 in table.keys[:, 0]
    assert table.estimate(np.array([[1.4]], np.float32), k=2)[0] == pytest.approx((7.0 + 1.0) / 2)


# ----- callbacks -------------------------------------------------------------------------------------------
def test_multi_domain_eval_logs_one_stream_per_domain():
    enc = FrozenEncoder(random_vision((64, 64, 3), seed=0, model_config=ModelConfig(hidden=32)), device="cpu")
    variant = get_variant("RANDOM_ENC")
    train = wrap_observations(pixel_venv(), variant, encoder=enc)
    evals = {d: wrap_observations(pixel_venv(n=1, seed=i + 10), variant, encoder=enc) for i, d in enumerate(["a", "b"])}
    saved = []
    cb = MultiDomainEvalCallback(evals, eval_freq=64, n_eval_episodes=2, on_evaluate=lambda h: saved.append(len(h["a"])))
    model = make_algorithm("ppo", train, "MlpPolicy", PPO_TINY, seed=0, device="cpu")
    model.learn(128, callback=cb)
    steps = [h["timesteps"] for h in cb.history["a"]]
    assert steps[0] == 0 and steps[-1] == model.num_timesteps and len(steps) == 3  # start, 64, 128
    assert [h["timesteps"] for h in cb.history["b"]] == steps and saved == [1, 2, 3]
    assert len(cb.history["a"][-1]["rewards"]) == 2


def test_training_time_evaluation_plays_the_same_scenes_in_every_domain():
    """Every domain is reseeded with the same seed: the agent and goal positions of each evaluation episode match
    across domains, only the colours differ."""
    import envs  # noqa: F401  (registers darla/Sprites-v0)
    from stable_baselines3.common.vec_env import VecEnvWrapper

    from agents.callbacks import evaluate_domains

    class RecordResets(VecEnvWrapper):
        def __init__(self, venv):
            super().__init__(venv)
            self.starts = []

        def reset(self):
            obs = self.venv.reset()
            self.starts += [dict(info["factors"]) for info in self.venv.reset_infos]
            return obs

        def step_wait(self):
            obs, rew, done, infos = self.venv.step_wait()
            self.starts += [dict(info["factors"]) for info, d in zip(infos, done) if d]  # auto-reset scenes
            return obs, rew, done, infos

    class First:  # a constant policy: SB3's evaluate_policy only needs predict
        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            return np.zeros(len(obs), dtype=np.int64), None

    venvs = {d: RecordResets(make_vec_env("darla/Sprites-v0", n_envs=2, env_kwargs={"domain": d, "grid": 4}))
             for d in ("source", "target")}
    evaluate_domains(First(), venvs, n_episodes=4, seed=7)
    positions = {d: [{k: v for k, v in f.items() if "colour" not in k} for f in v.starts] for d, v in venvs.items()}
    colours = {d: [f["background_colour"] for f in v.starts] for d, v in venvs.items()}
    assert len(positions["source"]) >= 4 and positions["source"] == positions["target"]
    assert set(colours["source"]).isdisjoint(colours["target"])
