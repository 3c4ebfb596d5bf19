"""Frozen-vision observation wrappers: spaces, dtypes, batched = per-env, terminal observations, shape errors."""
import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv

from vision.checkpoint import save_checkpoint
from vision.images import resize_frames, to_tensor
from vision.models import build_model
from vision.models.base import ModelConfig
from vision.runtime import autocast_dtype
from vision.wrappers import (
    DisentangledObservation, FrozenEncoder, ObservationShapeError, VecDisentangledObservation, VecResizeFrames,
)

LATENT = 5


class BlockEnv(gym.Env):
    """A non-darla pixel env: a bright block at a random cell of a 4×4 grid; episodes of ``horizon`` steps."""

    metadata = {"render_modes": []}

    def __init__(self, size: int = 64, channels: int = 3, horizon: int = 5):
        self.size, self.channels, self.horizon = size, channels, horizon
        self.observation_space = spaces.Box(0, 255, (size, size, channels), np.uint8)
        self.action_space = spaces.Discrete(2)

    def _obs(self):
        frame = np.full((self.size, self.size, self.channels), 20, np.uint8)
        q = self.size // 4
        r, c = divmod(self.cell, 4)
        frame[r * q:(r + 1) * q, c * q:(c + 1) * q] = self.colour
        return frame

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.colour = self.np_random.integers(100, 256, size=self.channels).astype(np.uint8)
        self.cell = int(self.np_random.integers(16))
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        self.cell = int(self.np_random.integers(16))
        return self._obs(), float(action), False, self.t >= self.horizon, {}


@pytest.fixture(scope="module")
def vae_path(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(ModelConfig(family="beta_vae", latent_dim=LATENT, hidden=32), (3, 64, 64))
    path = tmp_path_factory.mktemp("vision") / "checkpoint.pt"
    save_checkpoint(path, model, step=0)
    return path


def encode_reference(path, frames):
    model = FrozenEncoder(path, device="cpu").model
    with torch.no_grad():
        return model.encode(to_tensor(frames))[0].numpy()


@pytest.mark.parametrize("latent,dim", [("mean", LATENT), ("sample", LATENT), ("mean+logvar", 2 * LATENT)])
def test_gym_wrapper_space_shape_dtype(vae_path, latent, dim):
    env = DisentangledObservation(BlockEnv(), vae_path, latent=latent, device="cpu", seed=0)
    assert env.observation_space == spaces.Box(-np.inf, np.inf, (dim,), np.float32)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (dim,) and obs.dtype == np.float32
    assert env.observation_space.contains(obs)
    obs, *_ = env.step(0)
    assert obs.shape == (dim,) and obs.dtype == np.float32


def test_mean_is_the_encoder_mean_of_the_frame(vae_path):
    raw = BlockEnv()
    frame, _ = raw.reset(seed=3)
    env = DisentangledObservation(BlockEnv(), vae_path, device="cpu")
    obs, _ = env.reset(seed=3)
    np.testing.assert_allclose(obs, encode_reference(vae_path, frame[None])[0], rtol=1e-5, atol=1e-6)


def test_means_are_standardised_by_the_stored_latent_statistics(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig(family="beta_vae", latent_dim=LATENT, hidden=32), (3, 64, 64))
    frames = np.stack([BlockEnv().reset(seed=s)[0] for s in range(6)])
    model.latent_mean.copy_(torch.arange(LATENT, dtype=torch.float32))
    model.latent_std.copy_(torch.full((LATENT,), 0.5))
    save_checkpoint(tmp_path / "c.pt", model, step=1)
    raw = FrozenEncoder(tmp_path / "c.pt", device="cpu", standardize=False)(frames)
    np.testing.assert_allclose(raw, encode_reference(tmp_path / "c.pt", frames), rtol=1e-5, atol=1e-6)
    std = FrozenEncoder(tmp_path / "c.pt", device="cpu")(frames)
    np.testing.assert_allclose(std, (raw - np.arange(LATENT)) / 0.5, rtol=1e-5, atol=1e-5)
    both = FrozenEncoder(tmp_path / "c.pt", device="cpu", latent="mean+logvar")(frames)
    np.testing.assert_allclose(both[:, :LATENT], std, rtol=1e-5, atol=1e-5)  # log σ² is left as it is
    env = DisentangledObservation(BlockEnv(), tmp_path / "c.pt", device="cpu", standardize=False)
    np.testing.assert_allclose(env.reset(seed=0)[0], raw[0], rtol=1e-5, atol=1e-6)


def test_sample_mode_is_noisy_and_seeded(vae_path):
    frames = np.stack([BlockEnv().reset(seed=0)[0]] * 2)
    a = FrozenEncoder(vae_path, latent="sample", device="cpu", seed=7)(frames)
    b = FrozenEncoder(vae_path, latent="sample", device="cpu", seed=7)(frames)
    mean = FrozenEncoder(vae_path, device="cpu")(frames)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[0], a[1]) and not np.allclose(a, mean)


def test_wrapper_freezes_a_model_instance(vae_path):
    model = build_model(ModelConfig(family="beta_vae", latent_dim=LATENT, hidden=32), (3, 64, 64))
    model.train()
    DisentangledObservation(BlockEnv(), model, device="cpu")
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_batched_wrapper_equals_per_env_wrapper(vae_path):
    n, seed = 3, 11
    encoder = FrozenEncoder(vae_path, device="cpu")
    batched = VecDisentangledObservation(make_vec_env(BlockEnv, n_envs=n, seed=seed), encoder)
    single = DummyVecEnv([lambda: DisentangledObservation(BlockEnv(), encoder) for _ in range(n)])
    single.seed(seed)
    np.testing.assert_allclose(batched.reset(), single.reset(), rtol=1e-5, atol=1e-5)
    rng = np.random.default_rng(0)
    for _ in range(12):  # crosses two episode ends
        actions = rng.integers(2, size=n)
        ob, rb, db, ib = batched.step(actions)
        os_, rs, ds, is_ = single.step(actions)
        np.testing.assert_allclose(ob, os_, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(rb, rs)
        np.testing.assert_array_equal(db, ds)
        for i in np.flatnonzero(db):
            np.testing.assert_allclose(ib[i]["terminal_observation"], is_[i]["terminal_observation"], rtol=1e-5, atol=1e-5)


def test_terminal_observations_are_encoded(vae_path):
    raw = make_vec_env(BlockEnv, n_envs=2, seed=5)
    wrapped = VecDisentangledObservation(make_vec_env(BlockEnv, n_envs=2, seed=5), vae_path, device="cpu")
    raw.reset(), wrapped.reset()
    seen = 0
    for _ in range(5):
        _, _, done_raw, info_raw = raw.step(np.zeros(2, dtype=int))
        _, _, done, info = wrapped.step(np.zeros(2, dtype=int))
        for i in np.flatnonzero(done):
            term = info[i]["terminal_observation"]
            assert term.shape == (LATENT,) and term.dtype == np.float32
            expected = encode_reference(vae_path, info_raw[i]["terminal_observation"][None])[0]
            np.testing.assert_allclose(term, expected, rtol=1e-5, atol=1e-5)
            seen += 1
    assert seen == 2


def test_frames_of_another_size_are_resized_in_one_place(vae_path):
    env = DisentangledObservation(BlockEnv(size=96), vae_path, device="cpu")
    obs, _ = env.reset(seed=2)
    frame, _ = BlockEnv(size=96).reset(seed=2)
    expected = encode_reference(vae_path, resize_frames(frame, (64, 64))[None])[0]
    np.testing.assert_allclose(obs, expected, rtol=1e-5, atol=1e-6)


def test_shape_errors_name_both_shapes(vae_path, tmp_path):
    with pytest.raises(ObservationShapeError, match=r"\(64, 64, 1\).*\(3, 64, 64\)"):
        DisentangledObservation(BlockEnv(channels=1), vae_path, device="cpu")
    with pytest.raises(ObservationShapeError, match=r"\(96, 96, 3\).*\(3, 64, 64\)"):
        DisentangledObservation(BlockEnv(size=96), vae_path, device="cpu", resize=False)
    vector_env = gym.make("CartPole-v1")
    with pytest.raises(ObservationShapeError, match="uint8 image frames"):
        DisentangledObservation(vector_env, vae_path, device="cpu")
    with pytest.raises(ValueError, match="latent: unknown mode"):
        FrozenEncoder(vae_path, latent="median")
    dae = build_model(ModelConfig(family="dae", latent_dim=4, hidden=32), (3, 64, 64))
    with pytest.raises(ValueError, match="no log-variance"):
        FrozenEncoder(dae, latent="mean+logvar", device="cpu")


def test_grayscale_frames(tmp_path):
    model = build_model(ModelConfig(family="beta_vae", latent_dim=3, hidden=32), (1, 64, 64))
    env = DisentangledObservation(BlockEnv(channels=1), model, device="cpu")
    assert env.reset(seed=0)[0].shape == (3,)


def test_vec_resize_frames():
    venv = VecResizeFrames(make_vec_env(lambda: BlockEnv(size=96, horizon=2), n_envs=2, seed=0), (64, 64))
    assert venv.observation_space.shape == (64, 64, 3)
    assert venv.reset().shape == (2, 64, 64, 3)
    venv.step(np.zeros(2, dtype=int))
    obs, _, done, info = venv.step(np.zeros(2, dtype=int))
    assert obs.shape == (2, 64, 64, 3) and done.all()
    assert info[0]["terminal_observation"].shape == (64, 64, 3)


def test_darla_env():
    envs = pytest.importorskip("envs")
    model = build_model(ModelConfig(family="beta_vae", latent_dim=LATENT, hidden=32), (3, 64, 64))
    env = DisentangledObservation(gym.make("darla/Sprites-v0", domain="target"), model, device="cpu")
    obs, info = env.reset(seed=0)
    assert obs.shape == (LATENT,) and "factors" in info
    assert envs is not None


def test_to_tensor_channels_last_keeps_values_and_layout():
    frames = np.random.default_rng(0).integers(0, 256, size=(3, 8, 6, 3), dtype=np.uint8)
    plain = to_tensor(frames)
    cl = to_tensor(frames, memory_format=torch.channels_last)
    assert plain.shape == cl.shape == (3, 3, 8, 6)
    assert plain.is_contiguous() and cl.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(plain, cl)
    assert float(cl.max()) <= 1.0 and float(cl[0, 2, 1, 4]) == pytest.approx(frames[0, 1, 4, 2] / 255.0)


def test_mixed_precision_encoder_stays_close_to_fp32():
    torch.manual_seed(0)
    model = build_model(ModelConfig(family="beta_vae", latent_dim=6), (3, 64, 64))
    frames = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    fp32, amp = FrozenEncoder(model), FrozenEncoder(model, amp=True)
    assert fp32.backend == "fp32"
    out = amp(frames)
    assert out.dtype == np.float32 and out.shape == (4, 6)
    if autocast_dtype(torch.device("cpu")) is None:  # no native bf16: amp stays fp32, bit for bit
        assert amp.amp_dtype is None and amp.backend == "fp32" and np.array_equal(out, fp32(frames))
    else:
        assert amp.amp_dtype == torch.bfloat16 and amp.backend == "bf16 onednn-fused"
        np.testing.assert_allclose(out, fp32(frames), atol=0.05)


needs_bf16 = pytest.mark.skipif(autocast_dtype(torch.device("cpu")) != torch.bfloat16, reason="this CPU has no native bf16")


@needs_bf16
@pytest.mark.parametrize("family,channels", [("beta_vae", 3), ("beta_vae", 1), ("dae", 3)])
def test_fused_bf16_encoder_matches_fp32_for_any_batch(family, channels):
    from vision.wrappers import FusedConv64Bf16

    torch.manual_seed(0)
    model = build_model(ModelConfig(family=family, latent_dim=4), (channels, 64, 64))
    fp32 = FrozenEncoder(model, latent="mean+logvar" if model.stochastic else "mean")
    amp = FrozenEncoder(model, latent=fp32.latent, amp=True)
    assert amp.backend == "bf16 onednn-fused"
    rng = np.random.default_rng(1)
    for n in (1, 7, 33):  # the kernels' weight layout was packed once, for no particular batch size
        frames = rng.integers(0, 256, (n, 64, 64, channels), dtype=np.uint8)
        ref, out = fp32(frames), amp(frames)
        assert out.shape == ref.shape == (n, fp32.out_dim) and out.dtype == np.float32
        # bf16 keeps 8 significant bits; through five layers the outputs stay within ~1e-3 of their scale
        np.testing.assert_allclose(out, ref, atol=2e-3 * max(1.0, float(np.abs(ref).max())))
    body = FusedConv64Bf16(model.encoder)
    x = to_tensor(frames)
    with torch.no_grad():
        np.testing.assert_allclose(body(x).numpy(), model.encoder(x).numpy(), atol=2e-3)


@needs_bf16
def test_fused_path_only_for_the_plain_conv64_encode():
    torch.manual_seed(0)
    mlp = build_model(ModelConfig(family="beta_vae", arch="mlp", latent_dim=3, hidden=16), (1, 8, 8))
    assert FrozenEncoder(mlp, amp=True).backend == "bfloat16 autocast"
    infogan = build_model(ModelConfig(family="infogan", latent_dim=4), (3, 64, 64))  # its own encode (Q head)
    enc = FrozenEncoder(infogan, amp=True)
    assert enc.backend == "bfloat16 autocast"
    frames = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    np.testing.assert_allclose(enc(frames), FrozenEncoder(infogan)(frames), atol=0.05)


def test_fused_encoder_does_not_touch_the_global_rng():
    torch.manual_seed(0)
    model = build_model(ModelConfig(family="beta_vae", latent_dim=3), (3, 64, 64))
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    FrozenEncoder(model, amp=True)
    assert torch.equal(torch.rand(3), expected)
