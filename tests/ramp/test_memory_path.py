"""The file-backed (out-of-core) prediction path of ramp-test: same scores, no scratch file left (#18).

``DEBLEND_OUT_OF_CORE=1``: the workflow writes the predicted rows to unnamed
scratch files and returns :class:`~deblendkit.ramp.rows.PredictionRows`; the
prediction type slices, patches and averages them as views; the labels are
read from the data file only for the rows scored.
"""
from __future__ import annotations

import contextlib
import copy
import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from rampwf.utils.testing import assert_submission

from deblendkit.errors import ConfigError, PredictionError
from deblendkit.ramp import problem as ramp_problem
from deblendkit.ramp import rows as rows_module
from deblendkit.ramp import workflow as workflow_module
from deblendkit.ramp.prediction import make_predictions_type
from deblendkit.ramp.rows import RowStore, label_rows, scattered_rows, scratch_dir, stored_rows
from deblendkit.storage import LazyRows

ROOT = Path(__file__).resolve().parents[2]
K, C, S = 2, 3, 4
Predictions = make_predictions_type(max_galaxies=K, n_bands=C, stamp_size=S)


def arrays(n, seed=0):
    return np.random.default_rng(seed).normal(0, 100, (n, K, C, S, S)).astype(np.float32)


def stored(y, directory):
    store = RowStore((K, C, S, S), directory=str(directory))
    store.append(y[: len(y) // 2])
    store.append(y[len(y) // 2:])
    return store


def test_row_store_reads_back_what_was_written_and_leaves_no_file(tmp_path):
    y = arrays(9)
    store = stored(y, tmp_path)
    assert os.listdir(tmp_path) == []  # an unnamed file: nothing to clean up
    np.testing.assert_array_equal(store.read(np.arange(9)), y)
    np.testing.assert_array_equal(store.read(np.array([7, 2, 3, 8, 0])), y[[7, 2, 3, 8, 0]])
    with pytest.raises(PredictionError, match="row position out of range for a store of 9 rows"):
        store.read(np.array([9]))
    with pytest.raises(PredictionError, match=r"rows of shape \(2, 3, 4, 5\) given to a store of rows \(2, 3, 4, 4\)"):
        store.append(np.zeros((1, K, C, S, S + 1), np.float32))


def test_scratch_dir_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(rows_module.SCRATCH_ENV, str(tmp_path))
    assert scratch_dir() == str(tmp_path)
    monkeypatch.setenv(rows_module.SCRATCH_ENV, str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="DEBLEND_SCRATCH_DIR must be an existing directory"):
        scratch_dir()


def test_file_backed_predictions_behave_as_the_in_memory_ones(tmp_path):
    """fold_is, valid_indexes, set_slice, deepcopy: the same arrays as from an ndarray with NaN rows."""
    n, rows = 10, np.array([0, 2, 3, 7, 9])
    y = arrays(n)
    dense = np.full_like(y, np.nan)
    dense[rows] = y[rows]
    lean_all = scattered_rows(n, rows, stored(y[rows], tmp_path))
    fold = np.array([9, 1, 2, 7])
    a, b = Predictions(y_pred=dense, fold_is=fold), Predictions(y_pred=lean_all, fold_is=fold)
    assert b.is_file_backed and not a.is_file_backed
    np.testing.assert_array_equal(b.valid_indexes, a.valid_indexes)
    np.testing.assert_array_equal(np.asarray(b.y_pred), a.y_pred)  # NaN rows included
    np.testing.assert_array_equal(b.y_pred[2], a.y_pred[2])
    np.testing.assert_array_equal(b.y_pred[:, 1, 0], a.y_pred[:, 1, 0])
    clone = copy.deepcopy(b)
    clone.set_slice(clone.valid_indexes)
    a.set_slice(a.valid_indexes)
    np.testing.assert_array_equal(np.asarray(clone.y_pred), a.y_pred)
    assert len(b.y_pred) == 4  # the original is untouched
    with pytest.raises(PredictionError, match=r"file-backed rows of shape \(5, 2, 3, 4, 4\); expected \(\*, 1, 3, 4, 4\)"):
        make_predictions_type(max_galaxies=1, n_bands=C, stamp_size=S)(y_pred=stored_rows(stored(y[:5], tmp_path)))


def _containers(predictions_list, folds, n):
    """rampwf's get_score_cv_bags: each fold's rows written into an empty container of n samples."""
    out = []
    for p, fold in zip(predictions_list, folds):
        c = Predictions(n_samples=n)
        c.set_valid_in_train(p, fold)
        out.append(c)
    return out


def test_bagging_views_equal_the_in_memory_combine_bit_for_bit(tmp_path):
    """set_valid_in_train + combine (CV bagging, overlapping folds, repeats): identical float32 values."""
    n = 8
    folds = [np.array([0, 1, 2, 3]), np.array([2, 3, 4, 5]), np.array([3, 6]), np.arange(n)]
    ys = [arrays(len(f), seed=i) for i, f in enumerate(folds)]
    dense = _containers([Predictions(y_pred=y) for y in ys], folds, n)
    lean = _containers([Predictions(y_pred=stored_rows(stored(y, tmp_path))) for y in ys], folds, n)
    assert all(c.is_file_backed for c in lean) and not any(c.is_file_backed for c in dense)
    for i in range(1, len(folds) + 1):  # the prefixes bagging scores
        d, m = Predictions.combine(dense[:i]), Predictions.combine(lean[:i])
        assert m.is_file_backed
        np.testing.assert_array_equal(m.valid_indexes, d.valid_indexes)
        d.set_slice(d.valid_indexes)
        m.set_slice(m.valid_indexes)
        assert np.array_equal(np.asarray(m.y_pred), d.y_pred)  # exact, not close
    repeats = Predictions.combine(lean, [0, 0, 3])
    expected = Predictions.combine(dense, [0, 0, 3])
    assert np.array_equal(np.asarray(repeats.y_pred), expected.y_pred, equal_nan=True)
    mixed = Predictions.combine([dense[3], lean[3]])  # file-backed with in-memory: read, then combined
    assert not mixed.is_file_backed and np.array_equal(mixed.y_pred, dense[3].y_pred)


def test_scored_batches_are_the_valid_rows_in_order(tmp_path, small_data_dir):
    """Labels read from the data file per batch: the same pairs as y_true[valid], y_pred[valid]."""
    path = small_data_dir / "train.h5"
    rows_module.clear_label_caches()
    lazy = LazyRows.from_file(path)
    y_true = np.asarray(lazy)
    P = make_predictions_type(max_galaxies=y_true.shape[1], n_bands=y_true.shape[2], stamp_size=y_true.shape[3])
    n, rows = len(y_true), np.array([1, 2, 4, 11, 16, 22])
    pred = y_true[rows] * np.float32(0.5)
    store = RowStore(y_true.shape[1:], directory=str(tmp_path))
    store.append(pred)
    fold = np.arange(0, n, 2)
    gt = P(y_true=lazy, fold_is=fold)
    assert gt.is_file_backed and isinstance(gt.y_pred, type(label_rows(lazy)))
    p = P(y_pred=scattered_rows(n, rows, store), fold_is=fold)
    pairs = list(p.scored_batches(gt, batch_size=3))
    valid = p.valid_indexes
    assert valid.sum() == 4 and [len(t) for t, _ in pairs] == [3, 1]  # rows 2, 4, 16, 22 of the fold
    np.testing.assert_array_equal(np.concatenate([t for t, _ in pairs]), y_true[fold][valid])
    np.testing.assert_array_equal(np.concatenate([q for _, q in pairs]), np.asarray(p.y_pred)[valid])
    # the labels were decompressed once, whole chunks, into the process's cache: a second pass reads none
    cache = rows_module._label_cache(lazy.array)
    cached = cache.store.n_rows
    assert cached >= 4 and cached % cache.block == 0 or cached == n
    again = list(p.scored_batches(gt, batch_size=3))
    assert cache.store.n_rows == cached
    np.testing.assert_array_equal(again[0][0], pairs[0][0])
    empty = P(y_pred=scattered_rows(n, np.array([], int), RowStore(y_true.shape[1:], directory=str(tmp_path))))
    ((t, q),) = empty.scored_batches(P(y_true=lazy))
    assert t.shape == q.shape == (0, *y_true.shape[1:])


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _printed_scores(text: str) -> list[str]:
    """The score tables printed by ramp-test, without the time column (which differs run to run)."""
    out, has_time = [], False
    for line in ANSI.sub("", text).splitlines():
        words = line.split()
        if words and words[0] == "score":
            has_time = words[-1] == "time"
            out.append(" ".join(words[:-1] if has_time else words))
        elif words and words[0] in ("train", "valid", "test"):
            cut = (3 if "±" in words else 1) if has_time else 0
            out.append(" ".join(words[: len(words) - cut]))
        elif words:
            out.append(line.strip())
    return out


def _ramp_test(kit: Path) -> str:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert_submission(ramp_kit_dir=str(kit), ramp_data_dir=str(kit),
                          ramp_submission_dir=str(kit / "submissions"), submission="starting_kit")
    return buffer.getvalue()


def _kit_with_data(tmp_path, small_data_dir) -> Path:
    kit = tmp_path / "kit"
    kit.mkdir()
    (kit / "data").symlink_to(small_data_dir, target_is_directory=True)
    return kit


def test_out_of_core_is_automatic_from_the_training_set_size(tmp_path, small_data_dir, monkeypatch):
    """Unset or ``auto``: out of core from AUTO_OUT_OF_CORE_TRAIN_BLENDS training blends (24 here)."""
    kit = str(_kit_with_data(tmp_path, small_data_dir))
    monkeypatch.delenv("RAMP_TEST_MODE", raising=False)
    monkeypatch.delenv("DEBLEND_OUT_OF_CORE", raising=False)
    assert ramp_problem.AUTO_OUT_OF_CORE_TRAIN_BLENDS > 24
    assert not ramp_problem.out_of_core(kit)
    _, y = ramp_problem.get_train_data(kit)
    assert isinstance(y, np.ndarray) and y.shape[0] == 24
    monkeypatch.setattr(ramp_problem, "AUTO_OUT_OF_CORE_TRAIN_BLENDS", 24)
    for value in (None, "auto", " AUTO "):
        if value is not None:
            monkeypatch.setenv("DEBLEND_OUT_OF_CORE", value)
        assert ramp_problem.out_of_core(kit)
        X, y = ramp_problem.get_train_data(kit)
        assert isinstance(y, LazyRows) and len(y) == 24 and len(X) == 24
        assert ramp_problem.out_of_core()  # the workflow's question: the data directory in use
    monkeypatch.setenv("DEBLEND_OUT_OF_CORE", "0")  # forced off whatever the size
    assert not ramp_problem.out_of_core(kit)
    monkeypatch.setattr(ramp_problem, "AUTO_OUT_OF_CORE_TRAIN_BLENDS", 25)
    monkeypatch.setenv("DEBLEND_OUT_OF_CORE", "1")  # forced on whatever the size
    assert ramp_problem.out_of_core(kit)
    monkeypatch.setenv("DEBLEND_OUT_OF_CORE", "")
    assert not ramp_problem.out_of_core(kit)
    assert not ramp_problem.out_of_core(str(tmp_path / "no-such-kit"))  # no training file: in memory


@pytest.mark.slow
def test_ramp_test_out_of_core_prints_the_in_memory_scores(tmp_path, small_data_dir, monkeypatch):
    """A full ramp-test (3 folds, bagging) of the starting kit: identical printed scores; scratch stays empty."""
    kit = tmp_path / "kit"
    (kit / "submissions").mkdir(parents=True)
    shutil.copy(ROOT / "problem.py", kit / "problem.py")
    shutil.copytree(ROOT / "submissions" / "starting_kit", kit / "submissions" / "starting_kit")
    (kit / "data").symlink_to(small_data_dir, target_is_directory=True)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.delenv("RAMP_TEST_MODE", raising=False)
    monkeypatch.setenv("DEBLEND_SCRATCH_DIR", str(scratch))
    monkeypatch.setenv("DEBLEND_OUT_OF_CORE", "0")
    monkeypatch.setenv("DEBLEND_TRAIN_SCORE_BLENDS", "4")  # NaN rows in the training predictions
    in_memory = _ramp_test(kit)
    stores = []

    class CountedStore(RowStore):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            stores.append(self)
            assert os.listdir(scratch) == []

    monkeypatch.setattr(workflow_module, "RowStore", CountedStore)
    # automatic, as a user with a large training set gets it: no variable set
    monkeypatch.delenv("DEBLEND_OUT_OF_CORE")
    monkeypatch.setattr(ramp_problem, "AUTO_OUT_OF_CORE_TRAIN_BLENDS", 24)
    assert ramp_problem.out_of_core(str(kit))
    out_of_core = _ramp_test(kit)
    assert len(stores) == 6  # 3 folds x (training rows, test set): the file-backed path ran
    # per fold: 8 validation + 4 training rows, and the 12 test blends
    assert sorted(s.n_rows for s in stores) == [12] * 6
    scores = _printed_scores(out_of_core)
    assert scores == _printed_scores(in_memory)
    assert any(line.startswith("valid") for line in scores) and "Bagged scores" in scores
    assert os.listdir(scratch) == []
