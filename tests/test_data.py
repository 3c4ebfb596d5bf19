"""Procedural dSprites and the frame store."""
import numpy as np
import pytest

from vision.data.dsprites import DSprites
from vision.data.frames import FrameStore
from vision.data.ground_truth import GroundTruthData, check_factors, sample_observations


@pytest.fixture(scope="module")
def ds():
    return DSprites()


def test_protocol_and_grid(ds):
    assert isinstance(ds, GroundTruthData)
    assert ds.factor_sizes == (1, 3, 6, 40, 32, 32) and len(ds) == 737_280
    f = ds.sample_factors(500, np.random.default_rng(0))
    assert f.dtype == np.int64 and f.shape == (500, 6)
    assert (f >= 0).all() and (f < np.array(ds.factor_sizes)).all()


def test_index_round_trip(ds):
    idx = np.array([0, 1, 31, 32, 12345, len(ds) - 1])
    assert (ds.factors_to_index(ds.index_to_factors(idx)) == idx).all()
    assert (ds.index_to_factors(np.array([len(ds) - 1]))[0] == np.array(ds.factor_sizes) - 1).all()


def test_render_is_binary_deterministic_and_encodes_factors(ds):
    f = ds.sample_factors(64, np.random.default_rng(1))
    a, b = ds.render(f), ds.render(f)
    assert a.shape == (64, 64, 64, 1) and a.dtype == np.uint8
    assert set(np.unique(a)) <= {0, 255} and (a == b).all()
    # Factors -> image -> factors: the centroid recovers the position indices, the area orders the scales.
    ys, xs = np.mgrid[:64, :64]
    for fi, im in zip(f, a[..., 0]):
        m = im > 0
        cx, cy = xs[m].mean(), ys[m].mean()
        assert np.argmin(np.abs(ds.positions - cx)) == pytest.approx(fi[4], abs=1)
        assert np.argmin(np.abs(ds.positions - cy)) == pytest.approx(fi[5], abs=1)
    areas = [(ds.render(np.array([[0, 0, s, 0, 16, 16]])) > 0).sum() for s in range(6)]
    assert areas == sorted(areas) and areas[0] < areas[-1]


def test_distinct_shapes_and_orientations(ds):
    imgs = ds.render(np.array([[0, s, 5, o, 16, 16] for s in range(3) for o in (0, 5)]))
    flat = imgs.reshape(len(imgs), -1)
    assert len({row.tobytes() for row in flat}) == len(flat)


def test_bad_factors_are_clear_errors(ds):
    with pytest.raises(ValueError, match="shape"):
        ds.render(np.zeros((3, 5), dtype=int))
    with pytest.raises(ValueError, match="factor 1"):
        check_factors(np.array([[0, 3, 0, 0, 0, 0]]), ds.factor_sizes)


def test_frame_store_round_trip(tmp_path, ds):
    frames, factors = sample_observations(ds, 10, np.random.default_rng(2))
    store = FrameStore(frames, factors, ds.factor_names, ds.factor_sizes)
    p = store.save(tmp_path / "f.npz")
    back = FrameStore.load(p)
    assert (back.frames == frames).all() and (back.factors == factors).all()
    assert back.factor_names == ds.factor_names and back.factor_sizes == ds.factor_sizes
    plain = FrameStore.load(FrameStore(frames).save(tmp_path / "g.npz"))
    assert plain.factors is None and len(plain) == 10


def test_frame_store_errors(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        FrameStore(np.zeros((2, 8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="rows"):
        FrameStore(np.zeros((2, 8, 8, 3), dtype=np.uint8), np.zeros((3, 1), dtype=np.int64), ("a",), (1,))
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        FrameStore.load(tmp_path / "nope.npz")
    (tmp_path / "x.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="x.npz"):
        FrameStore.load(tmp_path / "x.npz")
