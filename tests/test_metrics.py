"""The disentanglement metric suite on a tiny synthetic ground-truth data set with known representations."""
import json
import math

import numpy as np
import pytest
from sklearn.metrics import mutual_info_score

from vision.data.ground_truth import uniform_factors
from vision.metrics import (
    METRICS, RepresentationCache, compute_udr, encoder_from_model, evaluate, summary_table, udr_from_encoders,
)
from vision.metrics import baselines
from vision.metrics.beta_vae import compute_beta_vae
from vision.metrics.dci import completeness, compute_dci, disentanglement, importance_matrix, lightgbm_variant
from vision.metrics.factor_vae import compute_factor_vae
from vision.metrics.irs import compute_irs
from vision.metrics.mig import compute_mig, mig_from_mi
from vision.metrics.modularity_explicitness import compute_modularity_explicitness, modularity
from vision.metrics.sap import compute_sap, top_two_gap
from vision.metrics.udr import pair_score
from vision.metrics.unsupervised import compute_unsupervised, gaussian_total_correlation, rotation_gain
from vision.metrics.utils import discretize, entropy, mutual_info_matrix

SMALL = {"num_train": 1000, "num_eval": 500}


class Toy:
    """Ground-truth data whose images store the factor indices as pixel values (so encoders can read them)."""

    factor_names = ("a", "b", "c", "const")
    factor_sizes = (3, 4, 5, 1)
    observation_shape = (1, 4, 1)

    def sample_factors(self, n, rng):
        return uniform_factors(self.factor_sizes, n, rng)

    def render(self, factors):
        return (np.asarray(factors) * 40).astype(np.uint8).reshape(len(factors), 1, 4, 1)


def read_factors(images):
    return images.reshape(len(images), 4)[:, :3].astype(np.float64) / 40.0


def perfect(images):
    return read_factors(images), None


def perfect_with_posterior(images):
    f = read_factors(images)
    return f, np.full(f.shape, np.log(0.01))


def random_codes(seed=0, dim=3):
    rng = np.random.default_rng(seed)

    def encode(images):
        return rng.normal(size=(len(images), dim)), None

    return encode


@pytest.fixture(scope="module")
def toy():
    return Toy()


@pytest.fixture(scope="module")
def perfect_cache(toy):
    return RepresentationCache.build(toy, perfect, num_points=1000, seed=0, progress=False)


@pytest.fixture(scope="module")
def random_cache(toy):
    return RepresentationCache.build(toy, random_codes(), num_points=1000, seed=0, progress=False)


def transformed(cache, fn):
    """The same pools with every code passed through ``fn`` (a permutation, a scaling)."""
    return RepresentationCache.from_arrays(fn(cache.train.mu), cache.train.factors, fn(cache.test.mu),
                                           cache.test.factors, cache.factor_sizes, cache.factor_names)


def noisy(cache, scale=0.05, seed=0):
    rng = np.random.default_rng(seed)
    return transformed(cache, lambda m: m + scale * rng.normal(size=m.shape))


# ----- helpers ---------------------------------------------------------------------------------------------------
def test_discretize_matches_numpy_histogram_digitize():
    x = np.random.default_rng(0).normal(size=(500, 3))
    x[:3, 0] = np.linspace(x[:, 0].min(), x[:, 0].max(), 21)[[0, 7, 20]]  # values on bin edges
    ref = np.stack([np.digitize(c, np.histogram(c, 20)[1][:-1]) - 1 for c in x.T], axis=1)
    assert (discretize(x) == ref).all()
    assert (discretize(np.ones((5, 1))) == 0).all()


def test_mutual_info_matrix_equals_sklearn():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 6, size=(400, 3))
    b = np.stack([a[:, 0] // 2, rng.integers(0, 4, 400)], axis=1)
    ref = np.array([[mutual_info_score(a[:, i], b[:, j]) for j in range(2)] for i in range(3)])
    assert np.allclose(mutual_info_matrix(a, b), ref, atol=1e-12)
    assert np.allclose(entropy(b), [mutual_info_score(c, c) for c in b.T])


# ----- the cache -------------------------------------------------------------------------------------------------
def test_cache_drops_constant_factors_and_samples_fixed_factor_groups(perfect_cache):
    c = perfect_cache
    assert c.factor_names == ("a", "b", "c") and c.info["dropped_factors"] == ["const"]
    assert len(c.train) == 1000 and len(c.test) == 500 and not c.has_posterior
    rng = np.random.default_rng(0)
    k = np.array([0, 1, 2, 2])
    first, second = c.fixed_factor_pairs(k, 64, rng)
    f = c.train.factors
    for row, kk in enumerate(k):
        assert (f[first[row], kk] == f[second[row], kk]).all()
        assert (first[row] != second[row]).all()
    batches, small = c.fixed_factor_batches(k, 64, rng, "test")
    assert small == 0
    for row, kk in enumerate(k):
        assert len(np.unique(batches[row])) == 64
        assert len(np.unique(c.test.factors[batches[row], kk])) == 1


def test_encoder_from_model_batches_without_grad_and_restores_mode():
    import torch

    from vision.models import ModelConfig, build_model

    model = build_model(ModelConfig(family="vae", arch="mlp", latent_dim=4, hidden=16), (1, 4, 4)).train()
    images = np.random.default_rng(0).integers(0, 256, size=(10, 4, 4, 1), dtype=np.uint8)
    mu, logvar = encoder_from_model(model, batch_size=3)(images)
    assert mu.shape == logvar.shape == (10, 4) and model.training
    with torch.no_grad():
        ref, _ = model.eval().encode(torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255)
    assert np.allclose(mu, ref.numpy(), atol=1e-5)
    ae = build_model(ModelConfig(family="ae", arch="mlp", latent_dim=4, hidden=16), (1, 4, 4))
    assert encoder_from_model(ae)(images)[1] is None  # a deterministic model has no posterior


# ----- hand-computed examples ------------------------------------------------------------------------------------
def test_mig_hand_computed():
    # v1, v2 binary; z1 = v1, z2 = v1 + v2. I(z1;v1) = ln2, I(z2;v1) = I(z2;v2) = ln2/2, I(z1;v2) = 0.
    v = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 25)
    z = np.stack([v[:, 0], v[:, 0] + v[:, 1]], axis=1).astype(float)
    mi = mutual_info_matrix(discretize(z), v)
    assert np.allclose(mi, [[math.log(2), 0], [math.log(2) / 2, math.log(2) / 2]], atol=1e-12)
    score, gaps = mig_from_mi(mi, entropy(v))
    assert np.allclose(gaps, [0.5, 0.5]) and score == pytest.approx(0.5)
    cache = RepresentationCache.from_arrays(z, v, z, v)
    assert compute_mig(cache)["scores"]["mig"] == pytest.approx(0.5)


def test_dci_weighting_hand_computed():
    r = np.array([[1.0, 0.0], [1.0, 1.0]])
    # code 0 serves one factor (1), code 1 two equally (0); weights 1/3, 2/3.
    d, per_code = disentanglement(r)
    assert np.allclose(per_code, [1, 0], atol=1e-6) and d == pytest.approx(1 / 3, abs=1e-6)
    # factor 0 spread over both codes (0), factor 1 on one code (1); weights 2/3, 1/3.
    c, per_factor = completeness(r)
    assert np.allclose(per_factor, [0, 1], atol=1e-6) and c == pytest.approx(1 / 3, abs=1e-6)
    assert disentanglement(np.eye(3))[0] == pytest.approx(1, abs=1e-6)
    assert completeness(np.array([[1.0, 1.0], [0.0, 0.0]]))[0] == pytest.approx(1, abs=1e-6)


def test_small_formulas():
    assert top_two_gap(np.array([[0.9, 0.2], [0.5, 0.6], [0.1, 0.1]]))[0] == pytest.approx((0.4 + 0.4) / 2)
    assert modularity(np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]))[1] == pytest.approx([1.0, 0.0, 0.0])
    assert gaussian_total_correlation(np.diag([1.0, 4.0])) == pytest.approx(0)
    rho = 0.6  # TC of a bivariate Gaussian: -½ log(1 − ρ²)
    assert gaussian_total_correlation(np.array([[1, rho], [rho, 1]])) == pytest.approx(-0.5 * math.log(1 - rho ** 2))
    assert pair_score(np.eye(2), np.ones(2, bool), np.ones(2, bool)) == pytest.approx(1)
    # Uniform similarities: each row and column scores 0.5² / 1 = 0.25; (2·0.25 + 2·0.25) / (2 + 2) = 0.25.
    assert pair_score(np.full((2, 2), 0.5), np.ones(2, bool), np.ones(2, bool)) == pytest.approx(0.25)


# ----- perfect vs random representations -------------------------------------------------------------------------
def test_beta_vae_perfect_and_chance(perfect_cache, random_cache):
    assert compute_beta_vae(perfect_cache, **SMALL)["scores"]["eval_accuracy"] >= 0.99
    assert compute_beta_vae(random_cache, **SMALL)["scores"]["eval_accuracy"] < 1 / 3 + 0.1


def test_factor_vae_perfect_chance_and_more_latents_than_factors(perfect_cache, random_cache):
    r = compute_factor_vae(perfect_cache, **SMALL)
    assert r["scores"]["eval_accuracy"] == 1.0 and r["details"]["num_active_dims"] == 3
    assert compute_factor_vae(random_cache, **SMALL)["scores"]["eval_accuracy"] < 1 / 3 + 0.1
    # Two extra noise latents and a duplicate of factor b: 6 latents for 3 factors.
    rng = np.random.default_rng(0)
    wide = transformed(perfect_cache, lambda m: np.concatenate([m, 2 * m[:, 1:2], rng.normal(size=(len(m), 2))], 1))
    r = compute_factor_vae(wide, **SMALL)
    assert r["scores"]["eval_accuracy"] == 1.0 and r["details"]["num_active_dims"] == 6
    assert r["details"]["latent_to_factor"][:3] == [0, 1, 2]
    # Collapsed latents are pruned; a representation with none left scores 0 (disentanglement_lib's convention).
    dead = compute_factor_vae(transformed(perfect_cache, lambda m: 0.01 * m), **SMALL)
    assert dead["scores"]["eval_accuracy"] == 0.0 and dead["details"]["num_active_dims"] == 0


def test_mig_perfect_and_random(perfect_cache, random_cache):
    assert compute_mig(perfect_cache)["scores"]["mig"] > 0.95
    assert compute_mig(random_cache)["scores"]["mig"] < 0.05


def test_mig_sampling_variant(toy):
    cache = RepresentationCache.build(toy, perfect_with_posterior, num_points=600, seed=0, progress=False)
    r = compute_mig(cache, variant="sampling", num_samples=300)
    assert r["variant"] == "sampling" and r["scores"]["mig"] > 0.9
    assert compute_mig(cache, variant="sampling", exclude_factors=("a",))["details"]["factor_names"] == ["b", "c"]
    with pytest.raises(ValueError, match="deterministic"):
        compute_mig(transformed(cache, lambda m: m), variant="sampling")


def test_dci_perfect_and_random(perfect_cache, random_cache):
    good = compute_dci(noisy(perfect_cache))
    assert good["variant"] == "lightgbm" and good["params"]["backend"] == "lightgbm"
    assert good["scores"]["disentanglement"] > 0.9 and good["scores"]["completeness"] > 0.9
    assert good["scores"]["informativeness_test"] > 0.95
    bad = compute_dci(random_cache)
    assert bad["scores"]["disentanglement"] < 0.2 and bad["scores"]["informativeness_test"] < 0.45


def test_dci_other_backends(perfect_cache):
    r = compute_dci(noisy(perfect_cache), backend="lasso")
    assert r["variant"] == "lasso" and r["scores"]["disentanglement"] > 0.9
    # Fully grown forests also split on the noise of irrelevant latents: lower, but far above a random code's.
    r = compute_dci(noisy(perfect_cache), backend="random_forest", n_estimators=20)
    assert r["variant"] == "random_forest" and r["params"]["backend_params"]["n_estimators"] == 20
    assert r["scores"]["disentanglement"] > 0.5
    assert compute_dci(noisy(perfect_cache), backend="lasso")["params"]["informativeness"] == "1 - NRMSE"
    with pytest.raises(ValueError, match="backend"):
        compute_dci(perfect_cache, backend="xgb")


def test_lightgbm_dci_agrees_with_sklearn_reference():
    # Fixed, partly entangled codes: the tuned LightGBM backend reproduces GradientBoostingClassifier's D and C.
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, size=(900, 2))
    x = np.concatenate([y + 0.6 * rng.normal(size=y.shape), (y @ [[0.5], [0.5]]) + 0.5 * rng.normal(size=(900, 1)),
                        rng.normal(size=(900, 1))], axis=1)
    tr, te = slice(0, 600), slice(600, 900)
    ref, _, _ = importance_matrix(x[tr], y[tr], x[te], y[te], "sklearn_gbt")
    for opts in ({}, {"n_estimators": 100, "learning_rate": 0.1}):  # the default schedule and sklearn's own
        fast, _, _ = importance_matrix(x[tr], y[tr], x[te], y[te], "lightgbm", **opts)
        assert abs(disentanglement(fast)[0] - disentanglement(ref)[0]) <= 0.03
        assert abs(completeness(fast)[0] - completeness(ref)[0]) <= 0.03


def test_lightgbm_dci_variant_names_its_schedule(perfect_cache):
    assert lightgbm_variant({"n_estimators": 50, "learning_rate": 0.2, "max_bin": "exact"}) == "lightgbm"
    assert lightgbm_variant({"n_estimators": 100, "learning_rate": 0.1}) == "lightgbm_gbt100"
    assert lightgbm_variant({"n_estimators": 30, "learning_rate": 0.25, "max_depth": 4}) == "lightgbm_t30_lr0.25_d4"
    assert lightgbm_variant({"n_estimators": 50, "learning_rate": 0.2, "max_bin": 255}) == "lightgbm_bins255"
    r = evaluate(None, None, ["dci", "dci:lightgbm_gbt100"], cache=noisy(perfect_cache), progress=False)
    assert r["dci"]["variant"] == "lightgbm"
    assert {k: r["dci"]["params"]["backend_params"][k] for k in ("n_estimators", "learning_rate")} == {
        "n_estimators": 50, "learning_rate": 0.2}
    gbt = r["dci:lightgbm_gbt100"]
    assert gbt["variant"] == "lightgbm_gbt100" and gbt["params"]["backend_params"]["n_estimators"] == 100
    assert gbt["scores"]["disentanglement"] > 0.9


def test_lightgbm_dci_survives_codes_with_nothing_to_split():
    # Collapsed codes (every latent constant): no tree can split, as sklearn's GBT the predictor is the prior.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=(300, 2))
    x = np.zeros((300, 4))
    imp, train_acc, test_acc = importance_matrix(x[:200], y[:200], x[200:], y[200:], "lightgbm")
    ref, ref_train, ref_test = importance_matrix(x[:200], y[:200], x[200:], y[200:], "sklearn_gbt")
    assert np.all(imp == 0) and np.allclose(test_acc, ref_test) and np.allclose(train_acc, ref_train)
    # Codes that vary but say nothing: each code value holds every class equally often, so no split has any gain.
    i = np.arange(600)
    x2, y2 = np.stack([i % 2, (i // 2) % 2], axis=1).astype(float), np.stack([(i // 4) % 3], axis=1)
    imp2, _, test2 = importance_matrix(x2[:300], y2[:300], x2[300:], y2[300:], "lightgbm")
    _, _, ref2 = importance_matrix(x2[:300], y2[:300], x2[300:], y2[300:], "sklearn_gbt")
    assert np.all(imp2 == 0) and np.allclose(test2, ref2)


def test_sap_perfect_and_random(perfect_cache, random_cache):
    good = compute_sap(noisy(perfect_cache))["scores"]["sap"]
    assert good > 0.3
    assert abs(compute_sap(random_cache)["scores"]["sap"]) < 0.05
    assert compute_sap(perfect_cache, continuous_factors=True)["scores"]["sap"] > 0.95


def test_modularity_explicitness_irs_perfect_and_random(perfect_cache, random_cache):
    good = compute_modularity_explicitness(perfect_cache)["scores"]
    assert good["modularity"] > 0.95 and good["explicitness_test"] > 0.99
    bad = compute_modularity_explicitness(random_cache)["scores"]
    assert bad["explicitness_test"] < 0.6
    assert compute_irs(perfect_cache)["scores"]["irs"] > 0.99
    assert compute_irs(random_cache)["scores"]["irs"] < 0.45  # chance level: the 0.99 quantile is near the max


def test_unsupervised_scores(perfect_cache, random_cache):
    indep = compute_unsupervised(random_cache)["scores"]
    assert abs(indep["gaussian_total_correlation"]) < 0.02
    mixed = compute_unsupervised(transformed(random_cache, lambda m: m @ np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1.0]])))
    assert mixed["scores"]["gaussian_total_correlation"] > 0.2
    # The plug-in MI of independent latents is biased upwards (~(bins - 1)² / 2n); correlated ones score higher.
    assert indep["mutual_info_score"] < 0.2 < mixed["scores"]["mutual_info_score"]


def test_rotation_gain_sees_axes_rotated_off_the_independent_directions():
    rng = np.random.default_rng(0)
    u = rng.uniform(-1, 1, (20_000, 2))
    assert rotation_gain(u) < 0.02  # already along the independent directions
    for deg, want in ((45, 1.2), (20, None)):  # two uniforms mixed at 45°: kurtosis −0.6 each instead of −1.2
        t = np.radians(deg)
        gain = rotation_gain(u @ np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]))
        assert gain == pytest.approx(want, abs=0.05) if want else 0.2 < gain < 1.2
    # Scaling, shifting or swapping latents changes nothing; Gaussian latents have no preferred axes (gain ≈ 0).
    assert rotation_gain(3 * u[:, ::-1] + 7) == pytest.approx(rotation_gain(u), abs=1e-9)
    assert rotation_gain(rng.normal(size=(20_000, 3))) < 0.1
    assert rotation_gain(u[:, :1]) == 0.0


# ----- invariances -----------------------------------------------------------------------------------------------
def test_invariance_to_permuting_and_scaling_latents(perfect_cache):
    base = noisy(perfect_cache, 0.3)
    perm = np.array([2, 0, 1])
    scale = np.array([10.0, 0.5, 3.0])
    for fn, key in ((compute_mig, "mig"), (compute_irs, "irs"), (compute_modularity_explicitness, "modularity"),
                    (compute_modularity_explicitness, "explicitness_test"), (compute_factor_vae, "eval_accuracy")):
        kwargs = SMALL if fn is compute_factor_vae else {}
        ref = fn(base, **kwargs)["scores"][key]
        assert fn(transformed(base, lambda m: m[:, perm]), **kwargs)["scores"][key] == pytest.approx(ref, abs=1e-6)
        # IRS weighs latents by their spread, so it is invariant to a common scale only.
        s = scale.max() if fn is compute_irs else scale
        assert fn(transformed(base, lambda m: m * s), **kwargs)["scores"][key] == pytest.approx(ref, abs=1e-6)
    assert compute_sap(transformed(base, lambda m: m[:, perm]))["scores"]["sap"] == pytest.approx(
        compute_sap(base)["scores"]["sap"], abs=1e-9)
    d = compute_dci(base)["scores"]["disentanglement"]
    assert compute_dci(transformed(base, lambda m: m[:, perm] * scale[perm]))["scores"]["disentanglement"] == pytest.approx(d, abs=0.02)


# ----- UDR -------------------------------------------------------------------------------------------------------
def test_udr_same_representation_up_to_permutation_scores_high():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(500, 4))
    kl = np.array([1.0, 1.0, 1.0, 0.001])  # latent 3 inactive
    reps = [z, z[:, [1, 0, 2, 3]] * 3.0, z[:, [2, 1, 0, 3]] - 1.0]
    for corr in ("lasso", "spearman"):
        r = compute_udr(reps, [kl, kl[[1, 0, 2, 3]], kl[[2, 1, 0, 3]]], correlation=corr)
        # Lasso (α = 0.1) shrinks a perfect match to 0.9; Spearman keeps the small chance correlations of the rest.
        assert r["variant"] == corr and min(r["scores"].values()) > 0.89
        assert r["details"]["active_latents"] == [3, 3, 3]
    mixed = [rng.normal(size=(500, 4)) @ rng.normal(size=(4, 4)) for _ in range(3)]
    low = compute_udr(mixed, [np.ones(4)] * 3, correlation="spearman")
    assert max(low["scores"].values()) < 0.6
    with pytest.raises(ValueError, match="kl_per_latent"):
        compute_udr(reps, [kl, kl, kl[:3]])


def test_udr_from_encoders_encodes_common_inputs(toy):
    def permuted(images):
        mu, logvar = perfect_with_posterior(images)
        return 2.0 * mu[:, ::-1], logvar[:, ::-1]

    r = udr_from_encoders(toy, [perfect_with_posterior, permuted], num_points=300, correlation="spearman",
                          progress=False)
    assert r["metric"] == "udr" and r["params"]["num_models"] == 2 and r["params"]["data"] == "Toy"
    assert min(r["scores"].values()) > 0.8  # 1 up to the chance correlations of 300 points
    with pytest.raises(ValueError, match="log-variances"):
        udr_from_encoders(toy, [perfect, perfect], num_points=50, progress=False)


def test_cache_rejects_bad_encoder_output(toy):
    with pytest.raises(ValueError, match=r"encode: mu: expected shape \(300, D\)"):
        RepresentationCache.build(toy, lambda x: (np.zeros((len(x) - 1, 2)), None), num_points=200, progress=False)
    with pytest.raises(ValueError, match="NaN"):
        RepresentationCache.build(toy, lambda x: (np.full((len(x), 2), np.nan), None), num_points=200, progress=False)


# ----- the registry and evaluate ---------------------------------------------------------------------------------
def test_evaluate_all_records_names_variants_and_params(toy):
    params = {"beta_vae": SMALL, "factor_vae": SMALL, "mig:sampling": {"num_samples": 200}}
    res = evaluate(toy, perfect_with_posterior, "all", num_points=600, seed=1, progress=False, params=params)
    assert set(res) == {"beta_vae", "factor_vae", "mig", "mig:sampling", "dci", "sap", "modularity_explicitness",
                        "irs", "unsupervised"}
    for key, r in res.items():
        name = key.split(":")[0]
        assert r["metric"] == name and r["variant"] in METRICS[name].variants
        assert r["params"]["num_points"] == 600 and r["params"]["factors"] == ["a", "b", "c"]
        assert r["scores"] and all(isinstance(v, float) for v in r["scores"].values())
    assert res["beta_vae"]["params"]["num_train"] == 1000 and res["mig:sampling"]["params"]["num_samples"] == 200
    json.dumps(res)  # JSON-ready
    assert "dci" in summary_table(res)
    # A deterministic representation: "all" skips the posterior-only variant; asking for it is an error.
    det = evaluate(toy, perfect, ["mig", "dci:lasso", "dci:lightgbm_bins255"], num_points=300, progress=False)
    assert set(det) == {"mig", "dci:lasso", "dci:lightgbm_bins255"} and det["dci:lasso"]["variant"] == "lasso"
    fast = det["dci:lightgbm_bins255"]
    assert fast["variant"] == "lightgbm_bins255" and fast["params"]["backend_params"]["max_bin"] == 255
    with pytest.raises(ValueError, match="posterior"):
        evaluate(toy, perfect, ["mig:sampling"], num_points=300, progress=False)
    with pytest.raises(ValueError, match="unknown metric 'nope'"):
        evaluate(toy, perfect, ["nope"], num_points=300, progress=False)


def test_baselines_encode_dsprites():
    from vision.data.dsprites import DSprites

    data = DSprites()
    images = data.render(data.sample_factors(20, np.random.default_rng(0)))
    assert baselines.raw_pixels()(images)[0].shape == (20, 4096)
    for make in (baselines.pca, baselines.ica):
        mu, logvar = make(data, n_components=4, num_fit=300)(images)
        assert mu.shape == (20, 4) and logvar is None and np.isfinite(mu).all()
    mu, logvar = baselines.untrained_encoder(data, latent_dim=5, device="cpu")(images)
    assert mu.shape == logvar.shape == (20, 5)
    again, _ = baselines.untrained_encoder(data, latent_dim=5, device="cpu")(images)
    assert np.array_equal(mu, again)  # seeded initialisation


# ----- domain invariance ----------------------------------------------------------------------------------
def _scenes(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 10, size=(n, 2))  # (posX, posY) indices of n scenes


def test_domain_invariance_ignoring_colour_scores_one_copying_colour_scores_zero():
    from vision.metrics.domain_invariance import compute_domain_invariance, latent_invariance

    f = _scenes()
    pos = f.astype(float)
    # Source colour 0, target colour 1. Latents: x, y, and a colour copy.
    src = np.column_stack([pos, np.zeros(len(f))])
    tgt = np.column_stack([pos, np.ones(len(f))])
    inv = latent_invariance(src, tgt)
    np.testing.assert_allclose(inv, [1.0, 1.0, 0.0])
    # A code whose position latents also move with colour (an entangled mix) scores in between.
    mixed_src = np.column_stack([pos[:, 0], pos[:, 1]])
    mixed_tgt = np.column_stack([pos[:, 0] + 3.0, pos[:, 1]])
    assert 0.0 < latent_invariance(mixed_src, mixed_tgt)[0] < 1.0
    # Summary over the latents that carry position: the colour copy carries none, so the code is invariant.
    r = compute_domain_invariance(src, {"target": tgt}, f, ("posX", "posY"), ("posX", "posY"))
    assert r["metric"] == "domain_invariance" and r["variant"] == "pooled_variance"
    assert r["scores"]["domain_invariance"] == pytest.approx(1.0)
    assert r["details"]["per_target"]["target"]["per_latent"] == pytest.approx([1.0, 1.0, 0.0])
    # A code that writes position *and* colour into the same latents (colour shifts position codes) scores 0.
    shift = np.column_stack([pos + 100.0, np.ones(len(f))])
    r0 = compute_domain_invariance(src, {"target": shift}, f, ("posX", "posY"), ("posX", "posY"))
    assert r0["scores"]["domain_invariance"] == pytest.approx(0.0)


def test_domain_invariance_random_code_scores_about_zero_and_bad_input_is_clear():
    from vision.metrics.domain_invariance import compute_domain_invariance, latent_invariance

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5000, 3)), rng.normal(size=(5000, 3))
    assert np.all(latent_invariance(a, b) < 0.05)  # moves like a jump to an unrelated scene
    with pytest.raises(ValueError, match="weight_factors: 'colour'"):
        compute_domain_invariance(a, {"t": b}, _scenes(5000), ("posX", "posY"), ("colour",))
    with pytest.raises(ValueError, match="codes: source and target"):
        latent_invariance(a, b[:10])


def test_probe_r2_reads_linear_position_and_not_noise():
    from vision.metrics.domain_invariance import compute_domain_invariance, probe_r2

    f = _scenes(2000)
    rng = np.random.default_rng(0)
    linear = f @ np.array([[1.0, 0.5], [-0.3, 2.0]]) + 0.01 * rng.normal(size=f.shape)
    assert probe_r2(linear, f) > 0.99
    assert abs(probe_r2(rng.normal(size=(2000, 4)), f)) < 0.02
    assert probe_r2(linear, f[:, :1]) > 0.99  # one factor column: (n, 1) against sklearn's (n,) prediction
    # Reported beside invariance: a code that ignores the image is invariant and holds no position.
    blank = np.zeros((2000, 3))
    r = compute_domain_invariance(blank, {"t": blank}, f, ("posX", "posY"), ("posX", "posY"))
    assert abs(r["scores"]["probe_r2"]) < 0.02
