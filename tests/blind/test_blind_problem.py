"""The blind track's data, output checks, prediction type and workflow (deblendkit.ramp.blind_*)."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from deblendkit.errors import PredictionError
from deblendkit.ramp.blind_prediction import (
    check_output,
    empty_output,
    make_blind_predictions_type,
    pack_catalogues,
    truth_dtype,
)
from deblendkit.ramp.blind_problem import BlindSet, load_blind
from deblendkit.ramp.blind_score_types import make_blind_score_types
from deblendkit.ramp.blind_workflow import BlindWorkflow

ROOT = Path(__file__).resolve().parents[2]
N, K, C, S = 3, 4, 2, 8


def output(n=N, k=K):
    c, i = empty_output(n, k_out=k, n_bands=C, stamp_size=S)
    c[0, 0] = (3.0, 4.0)
    i[0, 0] = 1.0
    return c, i


def check(out, **kw):
    return check_output(out, **{"n_blends": N, "k_out": K, "n_bands": C, "stamp_size": S, **kw})


def test_a_valid_output_becomes_a_structured_array():
    y = check(output())
    assert y.shape == (N,) and y["centers"].shape == (N, K, 2) and y["images"].shape == (N, K, C, S, S)
    assert np.isnan(y["centers"][1]).all()
    c, i = output()
    assert np.array_equal(check({"centers": c, "images": i})["images"], y["images"])


def test_wrong_shape():
    c, i = output()
    with pytest.raises(PredictionError, match=r"images must have shape \(3, 4, 2, 8, 8\), got \(3, 4, 2, 8, 7\)"):
        check((c, i[..., :7]))
    with pytest.raises(PredictionError, match=r"centers must have shape \(3, 4, 2\), got \(2, 4, 2\)"):
        check((c[:2], i))


def test_more_than_k_out_detections():
    with pytest.raises(PredictionError, match="centers has 6 detection slots per blend, more than K_out = 4"):
        check(output(k=6))
    with pytest.raises(PredictionError, match="blend 1 has 5 detections, more than K_out = 4"):
        pack_catalogues([(np.zeros((1, 2)), np.zeros((1, C, S, S))), (np.zeros((5, 2)), np.zeros((5, C, S, S)))],
                        k_out=K, n_bands=C, stamp_size=S)


def test_nan_centre_in_a_filled_slot():
    c, i = output()
    i[2, 1] = 0.5
    with pytest.raises(PredictionError, match=r"blend 2, slot 1: NaN centre in a filled slot"):
        check((c, i))


def test_half_nan_centre_inf_centre_nan_image():
    c, i = output()
    c[1, 2, 0] = 5.0
    with pytest.raises(PredictionError, match="blend 1, slot 2: a centre has one NaN coordinate"):
        check((c, i))
    c, i = output()
    c[0, 0, 1] = np.inf
    with pytest.raises(PredictionError, match="blend 0, slot 0: infinite centre"):
        check((c, i))
    c, i = output()
    i[0, 3, 1, 2, 2] = np.nan
    with pytest.raises(PredictionError, match=r"images hold NaN or inf values \(first in blend 0, slot 3\)"):
        check((c, i))


def test_not_a_catalogue():
    with pytest.raises(PredictionError, match=r"predict must return \(centers, images\)"):
        check(np.zeros((N, K, C, S, S)))
    with pytest.raises(PredictionError, match=r"the output dict lacks \['images'\]"):
        check({"centers": output()[0]})


def test_predictions_type_containers_and_combine():
    P = make_blind_predictions_type(k_out=K, n_bands=C, stamp_size=S)
    empty = P(n_samples=N)
    assert not empty.valid_indexes.any()
    full = P(y_pred=check(output()))
    assert full.valid_indexes.all()
    part = P(y_pred=check(output())[:2])
    empty.set_valid_in_train(part, np.array([0, 2]))
    assert empty.valid_indexes.tolist() == [True, False, True]
    other = P(y_pred=check(output()))
    other.y_pred["centers"][:, 0] = (1.0, 1.0)
    combined = P.combine([empty, other])  # first member that predicts each blend
    # rows 0, 2 from `empty` (row 2 holds part's empty catalogue of blend 1), row 1 from `other`
    np.testing.assert_array_equal(combined.y_pred["centers"][:, 0, 0], [3.0, 1.0, np.nan])
    assert copy.deepcopy(full).y_pred is full.y_pred  # shared: rampwf deep-copies per fold and score
    assert not empty.y_pred["images"][1].any(where=~np.isnan(empty.y_pred["images"][1]))  # only the marker


def test_blindset_hides_centres_and_counts():
    X = BlindSet(blend=np.zeros((N, C, S, S)), psf=np.ones((N, C, 5, 5)), noise_sigma=np.ones((N, C)),
                 bands=("g", "r"), pixel_scale=0.2, k_out=K)
    for name in ("centers", "n_galaxies", "max_galaxies", "isolated", "truth"):
        assert not hasattr(X, name)
    with pytest.raises(AttributeError):
        X.centers = np.zeros((N, 1, 2))  # __slots__: nothing can be attached either
    with pytest.raises(ValueError, match="read-only"):
        X.blend[0, 0, 0, 0] = 1.0
    assert len(X[1:]) == 2 and len(X[0]) == 1 and [len(b) for b in X.batches(2)] == [2, 1]


def test_truth_from_the_mini_file_and_perfect_scores(small_data_dir):
    X, y = load_blind(small_data_dir / "test_mini.h5")
    assert y.dtype == truth_dtype(y["centers"].shape[1], X.n_bands, X.stamp_size)
    assert X.k_out == 2 * y["centers"].shape[1]
    n = y["n_galaxies"]
    assert all(np.isfinite(y["centers"][i, :n[i]]).all() and np.isnan(y["centers"][i, n[i]:]).all()
               for i in range(len(y)))
    assert all(np.isfinite(y["mag"][i, :n[i]]).all() for i in range(len(y)))
    assert ((y["match_radius"] >= 2.0) & (y["match_radius"] < 10.0)).all()
    assert np.isnan(y["faint_centers"]).all()  # blend mode: every galaxy is labelled
    c, im = pack_catalogues([(y["centers"][i, :n[i]], y["isolated"][i, :n[i]]) for i in range(len(y))],
                            k_out=X.k_out, n_bands=X.n_bands, stamp_size=X.stamp_size)
    pred = check_output((c, im), n_blends=len(X), k_out=X.k_out, n_bands=X.n_bands, stamp_size=X.stamp_size)
    scores = {s.name: s(y, pred) for s in make_blind_score_types(X.bands)}
    assert scores["blind"] == 1.0 and scores["recall"] == 1.0 and scores["unrecognised"] == 0.0


def test_workflow_runs_sep_detect_and_checks_its_output(small_data_dir, tmp_path):
    X, y = load_blind(small_data_dir / "test_mini.h5")
    wf = BlindWorkflow()
    model = wf.train_submission(str(ROOT / "blind" / "submissions" / "sep_detect"), X, y)
    out = wf.test_submission(model, X, fold=(np.arange(2), np.arange(2, 4)))
    P = make_blind_predictions_type(k_out=X.k_out, n_bands=X.n_bands, stamp_size=X.stamp_size)
    assert P(y_pred=out).valid_indexes.tolist() == [True] * 4 + [False] * (len(X) - 4)
    (tmp_path / "detector.py").write_text("class Detector:\n    def fit(self, X, y):\n        return self\n"
                                          "    def predict(self, X):\n        return 3\n")
    bad = wf.train_submission(str(tmp_path), X, y)
    with pytest.raises(PredictionError, match=r"predict must return \(centers, images\)"):
        wf.predict(bad, X)
