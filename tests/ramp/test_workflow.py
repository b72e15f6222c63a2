"""The Deblender workflow and problem.py as rampwf drives them."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from deblendkit.deblend.blendset import load_split
from deblendkit.errors import SubmissionError
from deblendkit.ramp.prediction import make_predictions_type
from deblendkit.ramp.score_types import make_score_types
from deblendkit.ramp.workflow import DeblenderWorkflow, train_score_rows
from deblendkit.scoring.metrics import deblend_scores

ROOT = Path(__file__).resolve().parents[2]

PERFECT = """
import numpy as np
class Deblender:
    def fit(self, X, y):
        self.y = {int(i): np.array(y[k]) for k, i in enumerate(X.indices)}
        return self
    def predict(self, X):
        return np.stack([self.y.get(int(i), np.zeros_like(next(iter(self.y.values()))))
                         for i in X.indices]).astype(np.float32)
"""


def _submission(tmp_path: Path, name: str, code: str) -> str:
    d = tmp_path / "submissions" / name
    d.mkdir(parents=True)
    (d / "deblender.py").write_text(textwrap.dedent(code))
    return str(d)


@pytest.fixture(scope="module")
def train(small_data_dir):
    return load_split(os.path.join(small_data_dir, "train.h5"))


def test_train_score_rows_is_deterministic_and_covers_valid():
    train_is = np.arange(0, 300, 2)
    valid_is = np.arange(1, 300, 2)
    rows = train_score_rows(train_is, valid_is, 10)
    assert np.array_equal(rows, train_score_rows(train_is, valid_is, 10))
    assert set(valid_is) <= set(rows)
    assert len(set(rows) & set(train_is)) == 10
    assert np.array_equal(train_score_rows(train_is, valid_is, None), np.arange(300))


def test_fold_predictions_have_nan_rows_skipped_by_scores(tmp_path, train, monkeypatch):
    X, y = train
    monkeypatch.setenv("DEBLEND_TRAIN_SCORE_BLENDS", "3")
    wf = DeblenderWorkflow()
    path = _submission(tmp_path, "zeros", """
        import numpy as np
        class Deblender:
            def fit(self, X, y):
                return self
            def predict(self, X):
                return np.zeros((len(X), X.max_galaxies, X.n_bands, X.stamp_size, X.stamp_size), np.float32)
    """)
    train_is, valid_is = np.arange(0, 16), np.arange(16, len(X))
    model = wf.train_submission(path, X, y, train_is)
    y_pred = wf.test_submission(model, X, (train_is, valid_is))
    predicted = ~np.isnan(y_pred.reshape(len(X), -1)).all(axis=1)
    assert predicted.sum() == 3 + len(valid_is)
    assert predicted[valid_is].all()

    Predictions = make_predictions_type(max_galaxies=X.max_galaxies, n_bands=X.n_bands,
                                        stamp_size=X.stamp_size)
    score = make_score_types(X.bands)[0]
    got = score.score_function(Predictions(y_true=y, fold_is=train_is),
                               Predictions(y_pred=y_pred, fold_is=train_is))
    assert got == 0.0  # zeros score 0 on the 3 predicted training blends, NaN rows ignored


def test_perfect_submission_scores_one_through_the_workflow(tmp_path, train):
    X, y = train
    wf = DeblenderWorkflow()
    path = _submission(tmp_path, "perfect", PERFECT)
    model = wf.train_submission(path, X, y)
    y_pred = wf.test_submission(model, X)
    assert y_pred.shape == y.shape and y_pred.dtype == np.float32
    real, scores = deblend_scores(y, y_pred)
    assert np.allclose(scores, 1.0)


def test_fit_failure_is_one_submission_error(tmp_path, train):
    X, y = train
    path = _submission(tmp_path, "broken", """
        class Deblender:
            def fit(self, X, y):
                raise RuntimeError("boom")
            def predict(self, X):
                return None
    """)
    with pytest.raises(SubmissionError, match=r"submission 'broken' failed in fit on \d+ blends: RuntimeError: boom"):
        DeblenderWorkflow().train_submission(path, X, y)


def test_wrong_shape_names_submission_step_and_expected_shape(tmp_path, train):
    X, y = train
    path = _submission(tmp_path, "badshape", """
        import numpy as np
        class Deblender:
            def fit(self, X, y):
                return self
            def predict(self, X):
                return np.zeros((len(X), 2, 2), np.float32)
    """)
    wf = DeblenderWorkflow()
    model = wf.train_submission(path, X, y)
    with pytest.raises(SubmissionError, match=r"submission 'badshape', predict: .*expected \(\d+, 6, 6, 48, 48\)"):
        wf.test_submission(model, X)


def test_missing_class_is_reported(tmp_path, train):
    X, y = train
    path = _submission(tmp_path, "noclass", "x = 1\n")
    with pytest.raises(SubmissionError, match="defines no class 'Deblender'"):
        DeblenderWorkflow().train_submission(path, X, y)


def _load_problem(kit_dir: Path):
    spec = importlib.util.spec_from_file_location("problem_under_test", kit_dir / "problem.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_problem_reads_mini_files_in_test_mode_and_cv_is_fixed(tmp_path, small_data_dir, monkeypatch):
    kit = tmp_path / "kit"
    kit.mkdir()
    shutil.copy(ROOT / "problem.py", kit / "problem.py")
    shutil.copytree(small_data_dir, kit / "data")
    problem = _load_problem(kit)
    X, y = problem.get_train_data(str(kit))
    assert len(X) == 24 and y.shape[0] == 24
    folds = [(a.tolist(), b.tolist()) for a, b in problem.get_cv(X, y)]
    assert len(folds) == 3
    assert folds == [(a.tolist(), b.tolist()) for a, b in problem.get_cv(X, y)]
    monkeypatch.setenv("RAMP_TEST_MODE", "1")
    Xm, _ = problem.get_train_data(str(kit))
    assert len(Xm) == 8
    assert len(list(problem.get_cv(Xm, None))) == 2
    assert not hasattr(Xm, "isolated") and not hasattr(Xm, "truth")
    assert [s.name for s in problem.score_types][0] == "deblend"


def test_problem_attributes_come_from_the_data_in_use(tmp_path, small_data_dir, monkeypatch):
    """Predictions and score_types: built at first use, from the data get_train_data loaded."""
    from deblendkit.errors import DataFileError
    from deblendkit.ramp import problem as P

    monkeypatch.delenv("RAMP_TEST_MODE", raising=False)
    monkeypatch.setattr(P._DataDirInUse, "path", None)  # a fresh process: nothing loaded yet
    # a kit whose own data/ is stale (not readable by this kit) ...
    kit = tmp_path / "kit"
    (kit / "data").mkdir(parents=True)
    (kit / "data" / "train.h5").write_bytes(b"an older file")
    with pytest.raises(DataFileError, match="train.h5 is not a readable HDF5 file"):
        P.problem_attribute("Predictions", str(kit))
    with pytest.raises(AttributeError, match="module 'problem' has no attribute 'predictions'"):
        P.problem_attribute("predictions", str(kit))
    # ... is not read once the data were loaded from elsewhere (ramp-test --ramp-data-dir)
    hosted = tmp_path / "hosted"
    hosted.mkdir()
    (hosted / "data").symlink_to(small_data_dir, target_is_directory=True)
    X, _ = P.get_train_data(str(hosted))
    assert P.data_dir_in_use() == str(hosted)
    Predictions = P.problem_attribute("Predictions", str(kit))
    assert Predictions.max_galaxies == X.max_galaxies
    assert (Predictions.n_bands, Predictions.stamp_size) == (X.n_bands, X.stamp_size)
    assert P.problem_attribute("Predictions", str(kit)) is Predictions  # cached: one class
    names = [st.name for st in P.problem_attribute("score_types", str(kit))]
    assert names[0] == "deblend" and "ssim" in names
    assert P.data_meta(str(hosted)).bands == tuple(X.bands)
    # with no data file anywhere: the simulator's defaults
    assert P.data_meta(str(tmp_path / "empty")).stamp_size == 48


@pytest.mark.slow
def test_ramp_test_reads_data_outside_a_kit_with_stale_data(tmp_path, small_data_dir):
    """`ramp-test --ramp-data-dir X`: X outside the kit, the kit's own data/ stale; no sys.argv parsing."""
    kit = tmp_path / "kit"
    (kit / "data").mkdir(parents=True)
    for name in ("train_mini.h5", "test_mini.h5", "train.h5", "test.h5"):
        (kit / "data" / name).write_bytes(b"made by an older kit")
    shutil.copy(ROOT / "problem.py", kit / "problem.py")
    shutil.copytree(ROOT / "submissions" / "starting_kit", kit / "submissions" / "starting_kit")
    elsewhere = tmp_path / "hosted"
    elsewhere.mkdir()
    (elsewhere / "data").symlink_to(small_data_dir, target_is_directory=True)
    ramp_test = Path(sys.executable).with_name("ramp-test")
    out = subprocess.run(
        [str(ramp_test), "--submission", "starting_kit", "--quick-test", "--ramp-kit-dir", str(kit),
         "--ramp-data-dir", str(elsewhere)],
        capture_output=True, text=True, timeout=600, cwd=kit, env={**os.environ, "NO_COLOR": "1"},
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Bagged scores" in out.stdout and "ssim" in out.stdout


def test_missing_data_says_how_to_make_it(tmp_path):
    from deblendkit.errors import DataFileError
    from deblendkit.ramp.problem import get_train_data

    with pytest.raises(DataFileError, match=r"train.h5 does not exist; make the data first with `python prepare_data.py`"):
        get_train_data(str(tmp_path))


@pytest.mark.slow
def test_ramp_test_quick_prints_the_package_score(tmp_path, small_data_dir):
    """`ramp-test --quick-test` runs the starting kit and prints the score deblendkit computes."""
    kit = tmp_path / "kit"
    kit.mkdir()
    shutil.copy(ROOT / "problem.py", kit / "problem.py")
    shutil.copytree(ROOT / "submissions" / "starting_kit", kit / "submissions" / "starting_kit")
    shutil.copytree(small_data_dir, kit / "data")
    ramp_test = Path(sys.executable).with_name("ramp-test")
    out = subprocess.run(
        [str(ramp_test), "--submission", "starting_kit", "--quick-test", "--ramp-kit-dir", str(kit),
         "--ramp-data-dir", str(kit)],
        capture_output=True, text=True, timeout=600, cwd=kit, env={**os.environ, "NO_COLOR": "1"},
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert "Bagged scores" in text

    # Recompute the bagged test score with the package: the test predictions of each fold
    # are the same model class on the same data, so compute from a fresh fit of fold models.
    sys.path.insert(0, str(kit / "submissions" / "starting_kit"))
    problem = _load_problem(kit)
    os.environ["RAMP_TEST_MODE"] = "1"
    try:
        X, y = problem.get_train_data(str(kit))
        Xt, yt = problem.get_test_data(str(kit))
        preds = []
        for train_is, _ in problem.get_cv(X, y):
            model = problem.workflow.train_submission(str(kit / "submissions" / "starting_kit"), X, y, train_is)
            preds.append(problem.workflow.test_submission(model, Xt))
    finally:
        del os.environ["RAMP_TEST_MODE"]
        sys.path.pop(0)
    _, scores = deblend_scores(yt, np.mean(preds, axis=0))
    import re

    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    bagged = plain.split("Bagged scores", 1)[1]
    test_line = next(line for line in bagged.splitlines() if line.strip().startswith("test"))
    printed = float(test_line.split()[1])
    assert printed == pytest.approx(float(np.mean(scores)), abs=1e-4)
