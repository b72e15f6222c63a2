"""Out-of-core scoring (deblendkit.scoring.out_of_core, deblendkit.ramp.stream, the CLI deblendkit.cli.score)
and the file-backed labels (storage.lazy.LazyRows)."""
from __future__ import annotations

import pickle
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deblendkit.cli.score import main
from deblendkit.config import SimConfig
from deblendkit.deblend.blendset import BlendSet, load_split
from deblendkit.errors import ConfigError, PredictionError
from deblendkit.ramp import problem as ramp_problem
from deblendkit.ramp.stream import score_submission
from deblendkit.ramp.workflow import DeblenderWorkflow
from deblendkit.scoring.out_of_core import score_file
from deblendkit.scoring.table import galaxy_table, summarize
from deblendkit.storage import DatasetWriter, H5Source, LazyRows, truth_dtype

SMALL = dict(stamp_size=20, psf_size=9, bands=("g", "r", "i"), max_galaxies=3, edge_margin=3)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """data/train.h5 (8 blends) and data/test.h5 (10 blends) from the simulator, small stamps."""
    from deblendkit.generation.split import generate_split

    root = tmp_path_factory.mktemp("stream") / "data"
    root.mkdir()
    config = SimConfig(**SMALL)
    for split, n in (("train", 8), ("test", 10)):
        generate_split(config, path=root / f"{split}.h5", split=split, n_blends=n, seed=3, chunk_size=5,
                       progress=False)
    return root


def fake_file(path: Path, n: int, *, k=3, bands=("g", "r", "i"), stamp=32, psf=9, seed=0) -> None:
    """A contract-valid file of random smooth blends, written fast (no simulation)."""
    rng = np.random.default_rng(seed)
    c = len(bands)
    n_gal = rng.integers(1, k + 1, size=n).astype(np.int32)
    filled = np.arange(k)[None, :] < n_gal[:, None]
    yy, xx = np.mgrid[0:stamp, 0:stamp]
    with DatasetWriter(path, n_blends=n, bands=bands, max_galaxies=k, stamp_size=stamp, psf_size=psf,
                       attrs={"pixel_scale": 0.2}) as w:
        for a in range(0, n, 16):
            b = min(n, a + 16)
            m = b - a
            centers = rng.uniform(8, stamp - 8, size=(m, k, 2)).astype(np.float32)
            centers[~filled[a:b]] = np.nan
            r2 = (xx - np.nan_to_num(centers[..., 0])[..., None, None]) ** 2 + (
                yy - np.nan_to_num(centers[..., 1])[..., None, None]) ** 2
            iso = (1000.0 * np.exp(-r2 / 8.0))[:, :, None] * rng.uniform(0.5, 2, (m, k, c))[..., None, None]
            iso[~filled[a:b]] = 0.0
            sigma = np.full((m, c), 10.0, np.float32)
            blend = iso.sum(1) + rng.normal(0, 10.0, (m, c, stamp, stamp))
            p = np.zeros((m, c, psf, psf), np.float32)
            p[..., psf // 2, psf // 2] = 1.0
            bi, si = np.nonzero(filled[a:b])
            truth = np.zeros(bi.size, truth_dtype(bands))
            truth["blend_index"], truth["slot"], truth["labelled"] = bi + a, si, 1
            w.write(a, blend=blend.astype(np.float32), isolated=iso.astype(np.float32), psf=p,
                    noise_sigma=sigma, centers=centers, n_galaxies=n_gal[a:b], truth_rows=truth)


def predictions_for(y: np.ndarray, seed: int = 1) -> np.ndarray:
    """Imperfect predictions: truth times a per-slot factor plus noise (zeros kept in empty slots)."""
    rng = np.random.default_rng(seed)
    factor = rng.uniform(0.7, 1.3, y.shape[:3])[..., None, None]
    noise = rng.normal(0, 5.0, y.shape) * (np.abs(y).sum(axis=(2, 3, 4), keepdims=True) > 0)
    return (y * factor + noise).astype(np.float32)


# ---------------------------------------------------------------------------
# score_file
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_streaming_equals_in_memory_scoring(data_dir, batch_size):
    X, y = load_split(data_dir / "test.h5")
    y_pred = predictions_for(y)
    groups = ("deblend", "flux", "colour", "cosine", "ssim")
    expected = galaxy_table(y, y_pred, bands=X.bands, metrics=groups)
    result = score_file(data_dir / "test.h5", y_pred, batch_size=batch_size, metrics=groups)
    assert result.n_blends == 10 and result.batch_size == batch_size
    pd.testing.assert_frame_equal(result.table, expected, rtol=1e-12)
    assert result.summary == pytest.approx(summarize(expected, bands=X.bands), nan_ok=True)
    assert result.score == pytest.approx(float(expected["deblend"].mean()))


def test_max_blends_scores_the_first_blends_only(data_dir):
    X, y = load_split(data_dir / "test.h5")
    y_pred = predictions_for(y)
    full = score_file(data_dir / "test.h5", y_pred, batch_size=3, metrics=("deblend", "flux"))
    part = score_file(data_dir / "test.h5", y_pred, batch_size=3, metrics=("deblend", "flux"), max_blends=4)
    assert part.n_blends == 4 and set(part.table["blend_index"]) == {0, 1, 2, 3}
    pd.testing.assert_frame_equal(part.table, full.table[full.table["blend_index"] < 4].reset_index(drop=True))
    assert score_file(data_dir / "test.h5", y_pred, max_blends=99).n_blends == 10  # capped at the file
    with pytest.raises(ConfigError, match="max_blends must be an integer >= 1, got 0"):
        score_file(data_dir / "test.h5", y_pred, max_blends=0)


def test_prediction_sources_agree(data_dir, tmp_path):
    X, y = load_split(data_dir / "test.h5")
    y_pred = predictions_for(y)
    np.save(tmp_path / "pred.npy", y_pred)
    seen = []

    def predict(Xb):
        seen.append(len(Xb))
        return y_pred[Xb.indices]

    scores = [score_file(data_dir / "test.h5", src, batch_size=4, metrics=("deblend",)).score
              for src in (y_pred, tmp_path / "pred.npy", str(tmp_path / "pred.npy"), predict,
                          np.load(tmp_path / "pred.npy", mmap_mode="r"))]
    assert seen == [4, 4, 2]  # the callable sees one batch of blends at a time
    assert all(s == scores[0] for s in scores)


def test_truth_join(data_dir):
    X, y = load_split(data_dir / "test.h5")
    result = score_file(data_dir / "test.h5", predictions_for(y), batch_size=3, metrics=("deblend",),
                        with_truth=True)
    truth = H5Source(data_dir / "test.h5").array("truth")[...]
    assert len(result.table) == int(X.n_galaxies.sum()) == truth.size
    merged = result.table.set_index(["blend_index", "slot"])
    for row in truth:
        assert merged.loc[(row["blend_index"], row["slot"]), "blendedness"] == row["blendedness"]


def test_bad_predictions_are_named(data_dir, tmp_path):
    X, y = load_split(data_dir / "test.h5")
    y_pred = predictions_for(y)
    with pytest.raises(PredictionError, match=r"predictions have shape \(9, 3, 3, 20, 20\); expected \(10, 3, 3, 20, 20\)"):
        score_file(data_dir / "test.h5", y_pred[:9])
    bad = y_pred.copy()
    bad[7, 0, 1, 3, 3] = np.nan
    with pytest.raises(PredictionError, match=r"1 NaN and 0 inf values in 1 blend\(s\) \(blend indexes 7\)"):
        score_file(data_dir / "test.h5", bad, batch_size=3)
    with pytest.raises(PredictionError, match=r"for blends \[8, 10\) have shape \(1, 3, 3, 20, 20\)"):
        score_file(data_dir / "test.h5", lambda Xb: y_pred[Xb.indices][: 1 if Xb.indices[0] == 8 else None],
                   batch_size=4)
    with pytest.raises(PredictionError, match="predictions must be an array"):
        score_file(data_dir / "test.h5", 3.0)
    with pytest.raises(ConfigError, match="must be a .npy array"):
        score_file(data_dir / "test.h5", str(tmp_path / "pred.csv"))
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1, got 0"):
        score_file(data_dir / "test.h5", y_pred, batch_size=0)


def test_peak_memory_grows_with_the_batch_not_the_file(tmp_path):
    """tracemalloc peak of score_file for 24 and 96 blends, batches of 4: about the same."""
    peaks = {}
    for n in (24, 96):
        path = tmp_path / f"f{n}.h5"
        fake_file(path, n)
        iso = H5Source(path).array("isolated")
        predict = lambda Xb: predictions_for(iso.take(Xb.indices))  # noqa: E731
        score_file(path, predict, batch_size=4, metrics=("deblend", "flux"))  # warm caches
        tracemalloc.start()
        score_file(path, predict, batch_size=4, metrics=("deblend", "flux"))
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    data_bytes = 96 * 3 * 3 * 32 * 32 * 4  # the labels of the large file: 3.5 MB
    assert peaks[96] < 1.3 * peaks[24], peaks
    assert peaks[96] < data_bytes / 2, peaks


# ---------------------------------------------------------------------------
# A submission, out of core
# ---------------------------------------------------------------------------
RECORDING = """
import numpy as np

class Deblender:
    def fit(self, X, y):
        # A submission that trains batch by batch on file-backed data.
        self.y_type = type(y).__name__
        self.total = sum(float(b.sum()) for b in y.batches(3))
        self.n = len(X)
        return self

    def predict(self, X):
        blend = np.asarray(X.blend)
        out = np.zeros((len(X), X.max_galaxies) + blend.shape[1:], np.float32)
        for i, m in enumerate(np.asarray(X.n_galaxies)):
            out[i, :m] = blend[i] / m
        return out
"""


def test_score_submission_fits_on_lazy_labels(data_dir, tmp_path):
    sub = tmp_path / "submissions" / "recording"
    sub.mkdir(parents=True)
    (sub / "deblender.py").write_text(RECORDING)
    captured = {}
    wf = DeblenderWorkflow()
    real_train = wf.train_submission

    def train(*a, **kw):
        model = real_train(*a, **kw)
        captured["model"] = model
        return model

    wf.train_submission = train
    result = score_submission(sub, data_dir / "test.h5", batch_size=4, metrics=("deblend",), workflow=wf)
    model = captured["model"]
    _, y_train = load_split(data_dir / "train.h5")
    assert model.y_type == "LazyRows" and model.n == 8
    assert model.total == pytest.approx(float(y_train.sum(dtype=np.float64)), rel=1e-5)
    X, y = load_split(data_dir / "test.h5")
    expected = wf.predict(model, X)
    assert result.score == pytest.approx(score_file(data_dir / "test.h5", expected).score)


def test_cli(data_dir, tmp_path, capsys):
    sub = tmp_path / "submissions" / "recording"
    sub.mkdir(parents=True)
    (sub / "deblender.py").write_text(RECORDING)
    out_csv = tmp_path / "table.csv"
    rc = main(["--submission", "recording", "--kit-dir", str(tmp_path), "--data", str(data_dir / "test.h5"),
               "--batch-size", "4", "--metrics", "deblend,flux", "--output", str(out_csv), "--with-truth"])
    assert rc == 0
    text = capsys.readouterr().out
    assert text.startswith("recording on ") and "10 blends" in text and "deblend" in text
    assert "  fit " in text and " s per blend" in text
    table = pd.read_csv(out_csv)
    assert {"deblend", "flux_err_r", "blendedness"} <= set(table.columns)
    (sub / "deblender.py").write_text(RECORDING.replace("return out", "return out[:, :1]"))
    rc = main(["--submission", str(sub), "--data", str(data_dir / "test.h5"), "--metrics", "deblend"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("deblendkit.cli.score: error: submission 'recording', predict: predictions have shape")
    assert err.count("\n") == 1
    assert main(["--submission", str(sub), "--data", str(data_dir / "test.h5"), "--metrics", "nope"]) == 2
    assert "unknown group(s) ['nope']" in capsys.readouterr().err
    assert main(["--submission", str(sub), "--data", str(data_dir / "test.h5"), "--max-blends", "-1"]) == 2
    assert "max_blends must be an integer >= 1, got -1" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# DEBLEND_OUT_OF_CORE and LazyRows
# ---------------------------------------------------------------------------
def test_problem_out_of_core_returns_file_backed_data(data_dir, monkeypatch):
    kit = data_dir.parent
    monkeypatch.setenv("DEBLEND_OUT_OF_CORE", "1")
    X, y = ramp_problem.get_train_data(str(kit))
    X_mem, y_mem = load_split(data_dir / "train.h5")
    assert isinstance(X, BlendSet) and "from train.h5" in repr(X)
    assert isinstance(y, LazyRows) and y.shape == y_mem.shape and y.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(y), y_mem)
    np.testing.assert_array_equal(X.blend, X_mem.blend)
    # rampwf's path still works on it: CV folds, and the workflow keeps y lazy for fit.
    folds = list(ramp_problem.get_cv(X, y))
    train_is, _ = folds[0]
    seen = {}

    class Recorder:
        def fit(self, X, y):
            seen["y"] = y
            return self

        def predict(self, X):
            return np.zeros((len(X), X.max_galaxies, X.n_bands, X.stamp_size, X.stamp_size), np.float32)

    wf = DeblenderWorkflow()
    wf._load = lambda path: ("recorder", Recorder)
    wf.train_submission("recorder", X, y, train_is)
    assert isinstance(seen["y"], LazyRows) and len(seen["y"]) == len(train_is)
    np.testing.assert_array_equal(seen["y"][:], y_mem[train_is])


def test_lazy_rows_index_like_numpy(data_dir):
    y_mem = load_split(data_dir / "train.h5")[1]
    y = LazyRows.from_file(data_dir / "train.h5")
    idx = np.array([5, 1, 1, 7, 0])
    mask = np.arange(8) % 3 == 0
    for key in (3, -1, slice(2, 6), slice(None, None, 2), idx, mask, [2, 4], (slice(1, 3), 0, 2), (4, 1), ...):
        np.testing.assert_array_equal(y[key], y_mem[key], err_msg=repr(key))
    sub = y.subset(idx).subset(slice(1, 4))
    np.testing.assert_array_equal(sub[:], y_mem[idx][1:4])
    assert len(sub) == 3 and sub.shape == (3,) + y_mem.shape[1:] and sub.nbytes == y_mem[idx][1:4].nbytes
    np.testing.assert_array_equal(np.concatenate(list(y.batches(3))), y_mem)
    again = pickle.loads(pickle.dumps(sub))
    np.testing.assert_array_equal(again[:], sub[:])
    assert len(pickle.dumps(y)) < 4096  # the path and indices, not the data
    with pytest.raises(IndexError, match="out of range"):
        y[8]
    with pytest.raises(IndexError, match="boolean mask"):
        y[np.ones(3, bool)]
    with pytest.raises(ConfigError, match="not a per-blend dataset"):
        LazyRows.from_file(data_dir / "train.h5", "truth")
