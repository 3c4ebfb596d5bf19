"""Likelihoods, closed-form KL and the β-TCVAE aggregate-posterior estimators (MWS with its constant, MSS)."""
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from vision.losses import (
    gaussian_kl,
    gaussian_log_density,
    kl_decomposition,
    log_qz,
    mss_log_weight_matrix,
    reconstruction_loss,
    total_correlation,
)

DATASET = 100_000


def test_gaussian_kl_closed_form():
    zeros = torch.zeros(3, 4)
    assert torch.equal(gaussian_kl(zeros, zeros), zeros)
    # mu = 1, sigma² = 2: 0.5·(1 + 2 − 1 − log 2)
    kl = gaussian_kl(torch.tensor([[1.0]]), torch.tensor([[math.log(2.0)]]))
    assert kl.item() == pytest.approx(0.5 * (2.0 - math.log(2.0)), rel=1e-6)
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3)
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0))
    assert torch.allclose(gaussian_kl(mu, logvar), ref, atol=1e-5)


def test_gaussian_log_density_matches_torch():
    z, mu, logvar = torch.randn(6, 3), torch.randn(6, 3), torch.randn(6, 3)
    ref = Normal(mu, (0.5 * logvar).exp()).log_prob(z)
    assert torch.allclose(gaussian_log_density(z, mu, logvar), ref, atol=1e-5)


def test_reconstruction_losses_hand_values():
    x = torch.ones(2, 1, 2, 2)
    logits = torch.zeros(2, 1, 2, 2)
    assert torch.allclose(reconstruction_loss(x, logits, "bernoulli"), torch.full((2,), 4 * math.log(2.0)))
    assert torch.allclose(reconstruction_loss(x, logits, "gaussian"), torch.full((2,), 4 * 0.25))
    with pytest.raises(ValueError, match="model.likelihood"):
        reconstruction_loss(x, logits, "laplace")


def test_mss_weight_matrix_structure():
    b, n = 6, 50
    m = b - 1
    w = mss_log_weight_matrix(b, n, dtype=torch.float64).exp()
    rows = torch.arange(b)
    # Own posterior (the diagonal) 1/N; one stratum weight per row; 1/M elsewhere; each row a mixture (sums to 1).
    assert torch.allclose(w.diagonal(), torch.full((b,), 1 / n, dtype=torch.float64))
    assert torch.allclose(w[rows, (rows + 1) % b], torch.full((b,), (n - m) / (n * m), dtype=torch.float64))
    other = torch.ones(b, b, dtype=torch.bool)
    other[rows, rows] = False
    other[rows, (rows + 1) % b] = False
    assert torch.allclose(w[other], torch.full((int(other.sum()),), 1 / m, dtype=torch.float64))
    assert torch.allclose(w.sum(1), torch.ones(b, dtype=torch.float64))
    # Not the widely copied layout (1/N down column 0).
    assert not torch.allclose(w[:, 0], torch.full((b,), 1 / n, dtype=torch.float64))


def test_mss_weight_matrix_rejects_bad_sizes():
    with pytest.raises(ValueError, match="batch_size"):
        mss_log_weight_matrix(1, 10)
    with pytest.raises(ValueError, match="dataset_size"):
        mss_log_weight_matrix(16, 8)


def _toy(correlated: bool, b: int = 512, d: int = 4, seed: int = 0):
    """Posteriors N(mu_n, I) with mu_n ~ N(0, Σ); for a large data set q(z) = N(0, Σ + I)."""
    g = torch.Generator().manual_seed(seed)
    if correlated:  # Σ = 1·1ᵀ + 0.04·I: every latent shares one factor
        mu = torch.randn(b, 1, generator=g) + 0.2 * torch.randn(b, d, generator=g)
    else:
        mu = torch.randn(b, d, generator=g)
    logvar = torch.zeros(b, d)
    z = mu + torch.randn(b, d, generator=g)
    return z, mu, logvar


def _gaussian_tc(cov: torch.Tensor) -> float:
    return 0.5 * (cov.diagonal().log().sum() - torch.logdet(cov)).item()


def test_mss_near_zero_on_factorised_and_positive_on_correlated():
    d = 4
    true_corr = _gaussian_tc(torch.ones(d, d) + 1.04 * torch.eye(d))  # ≈ 0.56 nats
    tc_fact = total_correlation(*_toy(False), DATASET, "mss").item()
    tc_corr = total_correlation(*_toy(True), DATASET, "mss").item()
    assert abs(tc_fact) < 0.1
    assert tc_corr > 0.3 and tc_corr == pytest.approx(true_corr, abs=0.2)


def test_mws_constant_and_sensitivity_to_correlation():
    # Every posterior equal to the prior: q(z) = N(0, I), true TC 0. MWS (a lower bound of log q) reads exactly
    # (D − 1)·log N with its −log(N·M) constant (−(D − 1)·log M without it); MSS reads exactly 0.
    b, d = 64, 5
    z, zeros = torch.randn(b, d), torch.zeros(b, d)
    assert total_correlation(z, zeros, zeros, DATASET, "mws").item() == pytest.approx((d - 1) * math.log(DATASET), abs=1e-3)
    assert total_correlation(z, zeros, zeros, DATASET, "mss").item() == pytest.approx(0.0, abs=1e-4)
    # The offset is shared, so MWS still rises by about the true TC from the factorised to the correlated toy.
    d = 4
    true_corr = _gaussian_tc(torch.ones(d, d) + 1.04 * torch.eye(d))
    gap = total_correlation(*_toy(True), DATASET, "mws") - total_correlation(*_toy(False), DATASET, "mws")
    assert gap.item() > 0.3 and gap.item() == pytest.approx(true_corr, abs=0.25)


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_kl_decomposition_sums_to_monte_carlo_kl(estimator):
    z, mu, logvar = _toy(True, b=32)
    logvar = logvar - 1.0
    parts = kl_decomposition(z, mu, logvar, DATASET, estimator)
    mc_kl = (gaussian_log_density(z, mu, logvar) - gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))).sum(1).mean()
    assert set(parts) == {"mi", "tc", "dwkl"}
    assert (parts["mi"] + parts["tc"] + parts["dwkl"]).item() == pytest.approx(mc_kl.item(), abs=1e-3)


def test_estimators_run_in_float32_from_half_inputs():
    z, mu, logvar = (t.to(torch.bfloat16) for t in _toy(False, b=16))
    joint, marginals = log_qz(z, mu, logvar, DATASET, "mss")
    assert joint.dtype == torch.float32 and marginals.dtype == torch.float32
    assert torch.isfinite(joint).all() and torch.isfinite(marginals).all()


def test_estimator_errors_are_clear():
    z, mu, logvar = _toy(False, b=8)
    with pytest.raises(ValueError, match="model.tc_estimator"):
        total_correlation(z, mu, logvar, DATASET, "exact")
    with pytest.raises(ValueError, match="dataset_size"):
        total_correlation(z, mu, logvar, 0, "mws")
