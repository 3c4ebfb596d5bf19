"""CUDA code paths: stage-1 AMP training, checkpoints across devices, the frozen-encoder wrappers, device choice.

Every test here needs a CUDA device and is skipped without one; ``bench/gpu_check.py`` runs this file on a GPU
machine and reports its counts.
"""
import numpy as np
import pytest
import torch
from stable_baselines3.common.env_util import make_vec_env

import envs  # noqa: F401  (registers darla/*)
import vision
from vision.checkpoint import read_checkpoint, save_checkpoint
from vision.data.dsprites import DSprites
from vision.data.frames import FrameStore
from vision.data.ground_truth import sample_observations
from vision.models import ModelConfig, build_model
from vision.runtime import autocast_dtype, resolve_device
from vision.train import TrainConfig, train
from vision.wrappers import FrozenEncoder, VecDisentangledObservation

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

LATENT = 4
ENV_ID = "darla/Sprites-v0"


def _close_latents(gpu: np.ndarray, cpu: np.ndarray) -> None:
    """GPU latents equal CPU ones up to float error; cuDNN convolutions default to TF32 (10-bit mantissa)."""
    scale = max(1.0, float(np.abs(cpu).max()))
    np.testing.assert_allclose(gpu, cpu, rtol=1e-2, atol=2e-3 * scale)


@pytest.fixture(scope="module")
def store():
    ds = DSprites()
    frames, factors = sample_observations(ds, 64, np.random.default_rng(0))
    return FrameStore(frames, factors, ds.factor_names, ds.factor_sizes)


def _cfg(steps: int, **kw) -> TrainConfig:
    base = dict(batch_size=16, lr=1e-3, device="cuda", amp=True, log_every=1, image_every=100, ckpt_every=100)
    return TrainConfig(steps=steps, **{**base, **kw})


def _model(store, family: str = "beta_vae"):
    torch.manual_seed(0)
    return build_model(ModelConfig(family=family, latent_dim=LATENT), (1, 64, 64), len(store))


def test_auto_device_is_cuda_with_fp16_autocast():
    dev = resolve_device("auto")
    assert dev.type == "cuda"
    assert autocast_dtype(dev) == torch.float16


# factor_vae steps two optimizers through one GradScaler; dip_vae turns autocast off for its covariance.
@pytest.mark.parametrize("family", ["beta_vae", "factor_vae", "beta_tcvae", "dip_vae", "dae"])
def test_stage1_amp_on_cuda_is_finite_and_loads_on_cpu(store, tmp_path, family):
    model = _model(store, family)
    result = train(model, store, _cfg(6), tmp_path, progress=False)  # a non-finite loss would raise TrainingDiverged
    assert result.step == 6 and all(np.isfinite(v) for v in result.terms.values())
    assert next(model.parameters()).device.type == "cuda"
    payload = read_checkpoint(tmp_path)
    assert "scaler" in payload["extra"], "AMP on CUDA should train with a GradScaler and checkpoint its state"
    assert "cuda" in payload["extra"]["rng"]
    loaded = vision.load(tmp_path, device="cpu")
    assert next(loaded.parameters()).device.type == "cpu"
    trained = model.state_dict()
    for name, value in loaded.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, trained[name].cpu()), name


def test_stage1_resumes_on_cuda(store, tmp_path):
    """A CUDA run interrupted at step 3 continues to step 6 from its checkpoint (weights, optimizer, RNG, scaler)."""
    train(_model(store), store, _cfg(3), tmp_path, progress=False)
    resumed = train(_model(store), store, _cfg(6), tmp_path, progress=False)
    assert resumed.resumed_from == 3 and resumed.step == 6
    assert read_checkpoint(tmp_path)["step"] == 6


def test_checkpoint_loads_on_cuda_with_cpu_encodings(store, tmp_path):
    model = _model(store)
    save_checkpoint(tmp_path / "m.pt", model, step=0)
    x = torch.rand(8, 1, 64, 64)
    on_cpu, on_gpu = vision.load(tmp_path / "m.pt", device="cpu"), vision.load(tmp_path / "m.pt", device="cuda")
    assert next(on_gpu.parameters()).device.type == "cuda"
    with torch.no_grad():
        _close_latents(on_gpu.encode(x.cuda())[0].cpu().numpy(), on_cpu.encode(x)[0].numpy())


@pytest.fixture(scope="module")
def rgb_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(ModelConfig(family="beta_vae", latent_dim=LATENT, hidden=32), (3, 64, 64))
    model.latent_mean.copy_(torch.linspace(-0.1, 0.1, LATENT))  # a non-identity standardisation must move too
    model.latent_std.copy_(torch.full((LATENT,), 0.5))
    path = tmp_path_factory.mktemp("vision") / "checkpoint.pt"
    save_checkpoint(path, model, step=0)
    return path


@pytest.mark.parametrize("latent", ["mean", "mean+logvar"])
def test_frozen_encoder_on_cuda_matches_cpu(rgb_checkpoint, latent):
    frames = np.random.default_rng(0).integers(0, 256, size=(16, 48, 48, 3), dtype=np.uint8)  # resized to 64x64
    gpu = FrozenEncoder(rgb_checkpoint, latent=latent, device="cuda")
    cpu = FrozenEncoder(rgb_checkpoint, latent=latent, device="cpu")
    assert gpu.device.type == "cuda" and next(gpu.model.parameters()).device.type == "cuda"
    out = gpu(frames)
    assert out.dtype == np.float32 and out.shape == (16, gpu.out_dim)
    _close_latents(out, cpu(frames))


def test_sampled_latents_on_cuda_are_seeded(rgb_checkpoint):
    frames = np.random.default_rng(1).integers(0, 256, size=(4, 64, 64, 3), dtype=np.uint8)
    a = FrozenEncoder(rgb_checkpoint, latent="sample", device="cuda", seed=3)(frames)
    b = FrozenEncoder(rgb_checkpoint, latent="sample", device="cuda", seed=3)(frames)
    np.testing.assert_array_equal(a, b)
    assert np.isfinite(a).all()


def test_vec_wrapper_on_cuda_matches_cpu(rgb_checkpoint):
    """The batched SB3 wrapper on CUDA emits the CPU latents, step by step, terminal observations included."""
    def venv(device: str) -> VecDisentangledObservation:
        return VecDisentangledObservation(make_vec_env(ENV_ID, n_envs=4, seed=0, env_kwargs={"domain": "source"}),
                                          rgb_checkpoint, device=device)

    gpu, cpu = venv("cuda"), venv("cpu")
    assert gpu.encoder.device.type == "cuda"
    _close_latents(gpu.reset(), cpu.reset())
    gpu.action_space.seed(0)
    for _ in range(40):
        actions = np.stack([gpu.action_space.sample() for _ in range(4)])
        g_obs, g_rew, g_done, g_info = gpu.step(actions)
        c_obs, c_rew, c_done, c_info = cpu.step(actions)
        np.testing.assert_array_equal(g_rew, c_rew)
        np.testing.assert_array_equal(g_done, c_done)
        _close_latents(g_obs, c_obs)
        for gi, ci in zip(g_info, c_info):
            if "terminal_observation" in ci:
                _close_latents(gi["terminal_observation"], ci["terminal_observation"])
    gpu.close(), cpu.close()
