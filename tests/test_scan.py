"""SCAN: symbols, concepts and operators; the objective's KL direction; the CLI end to end, its errors and resume."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import vision.scan as vscan
from darla.scan import dsprites_groups, main
from vision.checkpoint import save_checkpoint
from vision.data.dsprites import DSprites
from vision.models import ModelConfig, build_model
from vision.scan import (
    OPERATORS, UNSPECIFIED, Recombination, ScanModelConfig, SymbolGroup, SymbolSpace, SymbolVAE, combine,
    concept_scores, gaussian_kl_between, normalised_entropy, recombination_triples, split_concepts,
)


@pytest.fixture(scope="module")
def space():
    ds = DSprites()
    return SymbolSpace(dsprites_groups(), ds.factor_names, ds.factor_sizes)


# ----- symbols and concepts -----------------------------------------------------------------------------
def test_khot_encoding_of_concepts(space):
    assert space.sizes == (3, 2, 3, 3) and space.dim == 11
    assert space.names[:5] == ["shape=square", "shape=ellipse", "shape=heart", "scale=small", "scale=large"]
    concept = np.array([2, UNSPECIFIED, 0, UNSPECIFIED])  # shape=heart x=left
    y = space.khot(concept)
    assert y.shape == (11,) and y.sum() == 2 and y[2] == 1 and y[5] == 1
    assert space.name(concept) == "shape=heart x=left"
    concepts = space.all_concepts()
    assert len(concepts) == 4 * 3 * 4 * 4 - 1  # every non-empty partial assignment
    assert (np.diff((concepts >= 0).sum(1)) >= 0).all()  # ordered by how many groups they name
    np.testing.assert_array_equal(space.concepts_of(space.khot(concepts)), concepts)
    # factor values -> group values: posX 0..10 left, 11..21 centre, 22..31 right; scale 0..2 small
    f = np.zeros((3, 6), dtype=np.int64)
    f[:, 4] = [10, 11, 31]
    f[:, 2] = [2, 3, 5]
    np.testing.assert_array_equal(space.values_of(f)[:, [1, 2]], [[0, 0], [1, 1], [1, 2]])


def test_concept_images_satisfy_the_concept_and_vary_elsewhere(space):
    ds = DSprites()
    concept = np.array([1, UNSPECIFIED, 2, UNSPECIFIED])
    f = space.sample_factors(concept, 400, np.random.default_rng(0), ds.sample_factors)
    v = space.values_of(f)
    assert space.satisfies(v, concept).all()
    assert len(np.unique(v[:, 1])) == 2 and len(np.unique(v[:, 3])) == 3  # unspecified groups vary


def test_group_values_subset_bins_and_errors():
    sizes, names = (8, 4), ("colour", "x")
    sp = SymbolSpace([SymbolGroup("c", "colour", values=[0, 1, 2, 3]), SymbolGroup("x", "x", bins=2)], names, sizes)
    np.testing.assert_array_equal(sp.lookup[0], [0, 1, 2, 3, -1, -1, -1, -1])
    np.testing.assert_array_equal(sp.lookup[1], [0, 0, 1, 1])
    with pytest.raises(ValueError, match=r"symbols.groups\[1\].factor: unknown factor 'posZ'"):
        SymbolSpace([SymbolGroup("c", "colour"), SymbolGroup("z", "posZ")], names, sizes)
    with pytest.raises(ValueError, match=r"symbols.groups\[0\].bins"):
        SymbolSpace([SymbolGroup("x", "x", bins=5)], names, sizes)
    with pytest.raises(ValueError, match=r"symbols.groups\[0\].labels"):
        SymbolSpace([SymbolGroup("x", "x", bins=2, labels=["a"])], names, sizes)


def test_split_keeps_every_one_group_concept(space):
    concepts = space.all_concepts()
    train, held = split_concepts(concepts, 0.3, seed=0)
    assert len(train) + len(held) == len(concepts)
    assert ((held >= 0).sum(1) >= 2).all()
    assert ((train >= 0).sum(1) == 1).sum() == sum(space.sizes)
    assert len(held) == round(0.3 * ((concepts >= 0).sum(1) >= 2).sum())
    np.testing.assert_array_equal(split_concepts(concepts, 0.3, seed=0)[1], held)  # seeded


# ----- operators -------------------------------------------------------------------------------------------
def test_operator_definitions():
    U = UNSPECIFIED
    red_wall, small = np.array([0, U, U]), np.array([U, 1, U])
    np.testing.assert_array_equal(combine("AND", red_wall, small), [0, 1, U])
    assert combine("AND", np.array([0, U, U]), np.array([1, U, U])) is None  # two values for one group
    np.testing.assert_array_equal(combine("IN_COMMON", np.array([0, 1, 2]), np.array([0, 0, 2])), [0, U, 2])
    assert combine("IN_COMMON", np.array([0, U, U]), np.array([1, 1, U])) is None  # nothing shared
    np.testing.assert_array_equal(combine("IGNORE", np.array([0, 1, 2]), np.array([U, 1, U])), [0, U, 2])
    assert combine("IGNORE", np.array([0, 1, U]), np.array([U, 0, U])) is None  # b is not part of a
    assert combine("IGNORE", np.array([0, U, U]), np.array([0, U, U])) is None  # nothing would remain
    with pytest.raises(ValueError, match="operator"):
        combine("OR", red_wall, small)


def test_operators_are_union_intersection_difference_of_khot(space):
    concepts = space.all_concepts()
    rng = np.random.default_rng(0)
    khot = {op: (lambda a, b, op=op: {"AND": np.maximum(a, b), "IN_COMMON": a * b, "IGNORE": a * (1 - b)}[op])
            for op in OPERATORS}
    checked = {op: 0 for op in OPERATORS}
    for _ in range(3000):
        a, b = concepts[rng.integers(len(concepts), size=2)]
        for op in OPERATORS:
            r = combine(op, a, b)
            if r is not None:
                np.testing.assert_array_equal(space.khot(r), khot[op](space.khot(a), space.khot(b)))
                checked[op] += 1
    assert min(checked.values()) > 20
    # the vectorised triple search agrees with combine and never returns an input as its own result
    train, held = split_concepts(concepts, 0.3, seed=0)
    for op, rows in recombination_triples(train, held, space.sizes, 10**6, seed=0).items():
        assert len(rows) > 0
        for i, j, t in rows[:200]:
            np.testing.assert_array_equal(combine(op, train[i], train[j]), held[t])


# ----- the model -----------------------------------------------------------------------------------------
def test_shapes():
    cfg = ScanModelConfig(hidden=16, layers=1)
    model = SymbolVAE(11, 6, cfg)
    y = torch.zeros(5, 11)
    mu, logvar = model.encode(y)
    assert mu.shape == logvar.shape == (5, 6) and model.decode(mu).shape == (5, 11)
    loss, terms = model.loss(y, torch.zeros(5, 6), torch.zeros(5, 6))
    assert loss.ndim == 0 and set(terms) == {"recon", "kl_prior", "kl_visual", "loss"}
    ops = Recombination(cfg)
    m, lv = ops(mu, logvar, mu, logvar, torch.tensor([0, 1, 2, 0, 1]))
    assert m.shape == lv.shape == (5, 6)


def test_kl_between_gaussians_is_closed_form():
    g = torch.Generator().manual_seed(0)
    mq, lq, mp, lp = (torch.randn(4, 3, generator=g) for _ in range(4))
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mq, (0.5 * lq).exp()),
                                            torch.distributions.Normal(mp, (0.5 * lp).exp()))
    torch.testing.assert_close(gaussian_kl_between(mq, lq, mp, lp), ref)


def test_objective_runs_from_visual_to_symbol_posterior():
    model = SymbolVAE(4, 2, ScanModelConfig(hidden=8, layers=1))
    y = torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 0]])
    mu_x, lv_x = torch.tensor([[0.5, -1.0], [2.0, 0.0]]), torch.tensor([[-4.0, 0.0], [-3.0, -1.0]])
    torch.manual_seed(0)
    _, terms = model.loss(y, mu_x, lv_x)
    mu_y, lv_y = model.encode(y)
    forward = gaussian_kl_between(mu_x, lv_x, mu_y, lv_y).sum(1).mean()
    reverse = gaussian_kl_between(mu_y, lv_y, mu_x, lv_x).sum(1).mean()
    torch.testing.assert_close(terms["kl_visual"], forward.detach())
    assert not torch.isclose(terms["kl_visual"], reverse.detach())


def test_broad_symbol_posterior_on_an_unspecified_latent_is_not_penalised():
    # Images of one concept: sharp visual posteriors (σ 0.1) spread over [-2, 2] on the latent of a factor the
    # concept leaves free. Averaged over the images, KL(q(z_x|x) ‖ q(z_y|y)) is smallest for a symbol posterior as
    # broad as that spread and ~30x larger for one as narrow as an image's; the reverse KL wants the narrow one.
    mu_x = torch.linspace(-2, 2, 41)[:, None]
    lv_x = torch.full_like(mu_x, 2 * np.log(0.1))

    def mean_kl(sd_y: float, forward: bool) -> float:
        mu_y, lv_y = torch.zeros_like(mu_x), torch.full_like(mu_x, 2 * np.log(sd_y))
        args = (mu_x, lv_x, mu_y, lv_y) if forward else (mu_y, lv_y, mu_x, lv_x)
        return float(gaussian_kl_between(*args).mean())

    sds = np.linspace(0.05, 2.0, 40)
    spread = float((mu_x.pow(2).mean() + 0.01).sqrt())  # the moment-matched σ: 1.19
    assert abs(sds[np.argmin([mean_kl(s, True) for s in sds])] - spread) < 0.05
    assert sds[np.argmin([mean_kl(s, False) for s in sds])] < 0.15
    assert 20 * mean_kl(spread, True) < mean_kl(0.1, True)


def test_scores_of_read_back_images(space):
    concept = np.array([0, UNSPECIFIED, 1, UNSPECIFIED])
    read = np.array([[0, 0, 1, 0], [0, 1, 1, 1], [1, 0, 1, 2], [0, 1, 2, 0]])
    s = concept_scores(space, concept, read)
    assert s["match"] == 0.5 and s["group_acc"] == {"shape": 0.75, "x": 0.75}
    assert s["diversity"] == pytest.approx(np.mean([normalised_entropy(read[:, 1], 2), normalised_entropy(read[:, 3], 3)]))
    assert normalised_entropy(np.array([0, 1, 2]), 3) == pytest.approx(1.0)
    assert normalised_entropy(np.array([1, 1]), 3) == 0.0


# ----- the CLI ---------------------------------------------------------------------------------------------
TINY = ["--no-progress", "train.num_threads=1", "train.steps=30", "train.op_steps=20", "train.ckpt_every=10",
        "train.log_every=5", "symbols.examples_per_concept=1", "eval.classifier_steps=3", "eval.classifier_images=64",
        "eval.num_images=64", "eval.concepts=3", "eval.samples=2", "eval.triples=2", "eval.figure_concepts=2",
        "vision.device=cpu"]


@pytest.fixture(scope="module")
def tiny_vision(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(ModelConfig(family="beta_vae", latent_dim=4, hidden=32), (1, 64, 64))
    path = tmp_path_factory.mktemp("vision") / "checkpoint.pt"
    save_checkpoint(path, model, 0)
    return path.parent


def _results(run: Path) -> dict:
    s = json.loads((run / "scan.json").read_text())
    s["classifier"].pop("seconds")  # wall time: the one thing allowed to differ
    return {k: s[k] for k in ("terms", "img2sym", "sym2img", "recombination", "classifier", "symbols")}


def _states(run: Path) -> dict:
    p = torch.load(run / "scan.pt", weights_only=False)
    return {**{f"s.{k}": v for k, v in p["symbols"].items()}, **{f"o.{k}": v for k, v in p["ops"].items()}}


def test_tiny_end_to_end_run_is_deterministic(tmp_path, tiny_vision, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["--vision", str(tiny_vision), "--config", "configs/scan/dsprites.yaml", f"run.dir={a}", *TINY]) == 0
    out = capsys.readouterr().out
    assert "img→sym accuracy: shape" in out and "recombination to held-out concepts" in out
    for name in ("config.yaml", "run.json", "vision.json", "scan.pt", "classifier.pt", "figures/posteriors.png",
                 "figures/sym2img_train.png", "figures/sym2img_heldout.png"):
        assert (a / name).exists(), name
    assert any((a / "tb").iterdir())
    s = json.loads((a / "scan.json").read_text())
    assert set(s["img2sym"]) == {"shape", "scale", "x", "y"}
    assert s["symbols"]["labelled_pairs"] == s["symbols"]["concepts"]["train"]  # one image per concept
    assert set(s["recombination"]) == set(OPERATORS)
    assert {"scan", "real_images"} <= set(s["sym2img"]["heldout"])
    assert set(s["sym2img"]["train"]["scan"]["without_group"]) == set(s["img2sym"])  # each group left out in turn
    info = json.loads((a / "run.json").read_text())
    assert info["stage"] == "scan" and "git_sha" in info and "versions" in info
    # same config and seed: the same result
    assert main(["--vision", str(tiny_vision), "--config", "configs/scan/dsprites.yaml", f"run.dir={b}", *TINY]) == 0
    assert _results(a) == _results(b)
    sa, sb = _states(a), _states(b)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # a finished run returns its stored summary
    assert main(["--vision", str(tiny_vision), "--config", "configs/scan/dsprites.yaml", f"run.dir={a}", *TINY]) == 0


def test_killed_and_resumed_run_ends_identical(tmp_path, tiny_vision, monkeypatch):
    args = ["--vision", str(tiny_vision), *TINY, "eval.classifier=" + str(tmp_path / "a" / "classifier.pt")]
    assert main(["--vision", str(tiny_vision), f"run.dir={tmp_path / 'a'}", *TINY]) == 0
    real_save, calls = vscan._save_state, []

    def dying_save(path, payload):
        real_save(path, payload)
        calls.append(payload["state"]["phase"])
        if len(calls) == 4:  # mid-way through the operator phase
            raise KeyboardInterrupt

    monkeypatch.setattr(vscan, "_save_state", dying_save)
    with pytest.raises(KeyboardInterrupt):
        main([*args, f"run.dir={tmp_path / 'b'}"])
    assert calls == ["symbols", "symbols", "ops", "ops"] and not (tmp_path / "b" / "scan.json").exists()
    monkeypatch.setattr(vscan, "_save_state", real_save)
    assert main([*args, f"run.dir={tmp_path / 'b'}"]) == 0
    sa, sb = _states(tmp_path / "a"), _states(tmp_path / "b")
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    ra, rb = _results(tmp_path / "a"), _results(tmp_path / "b")
    assert ra == rb
    assert json.loads((tmp_path / "b" / "scan.json").read_text())["resumed"] is True


@pytest.mark.parametrize("extra, key", [
    (["symbols.groups=[{name: shape, factor: posZ}]"], "symbols.groups[0].factor: unknown factor 'posZ'"),
    (["symbols.bogus=1"], "symbols.bogus"),
    (["symbols.examples_per_concept=0"], "symbols.examples_per_concept"),
    (["symbols.source=env"], "symbols.env_id"),
    (["symbols.source=env", "symbols.env_id=darla/Nope-v0"], "symbols.env_id"),
    (["model.lam=-1"], "model.lam"),
    (["eval.classifier=/nonexistent/classifier.pt"], "eval.classifier: no such file"),
])
def test_bad_input_is_one_line_naming_the_key(tmp_path, tiny_vision, capsys, extra, key):
    run = tmp_path / "r"
    rc = main(["--vision", str(tiny_vision), f"run.dir={run}", *TINY, *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and key in err and len(err.splitlines()) == 1, err
    assert not run.exists() or not (run / "scan.pt").exists()


def test_bad_vision_paths(tmp_path, capsys):
    assert main([f"run.dir={tmp_path / 'r'}", *TINY]) == 2
    assert "vision.run: required" in capsys.readouterr().err
    assert main(["--vision", str(tmp_path / "missing"), f"run.dir={tmp_path / 'r'}", *TINY]) == 2
    err = capsys.readouterr().err
    assert "vision.run: checkpoint: no such file" in err and str(tmp_path / "missing") in err
    assert not (tmp_path / "r").exists()


def test_sprites_vision_shape_mismatch_is_named(tmp_path, tiny_vision, capsys):
    rc = main(["--vision", str(tiny_vision), "--config", "configs/scan/sprites.yaml", f"run.dir={tmp_path / 'r'}", *TINY])
    assert rc == 2
    assert "vision.run:" in capsys.readouterr().err  # a 1-channel dSprites vision cannot see RGB Sprites frames
