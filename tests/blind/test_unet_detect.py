"""unet_detect's pieces (blind/submissions/unet_detect/detector.py): targets, peaks, inputs, a short fit."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

PATH = Path(__file__).resolve().parents[2] / "blind" / "submissions" / "unet_detect" / "detector.py"
_spec = importlib.util.spec_from_file_location("unet_detect_detector", PATH)
det = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(det)


def test_heat_map_peaks_at_the_centres_and_peaks_come_back():
    centers = np.array([[[10.0, 12.0], [30.4, 25.7], [np.nan, np.nan]]])
    heat = det.heat_maps(centers, 48)
    assert heat.shape == (1, 1, 48, 48) and heat.max() == pytest.approx(1.0)
    assert heat[0, 0, 12, 10] == pytest.approx(1.0)  # row y, column x
    found = det.find_peaks(heat[0, 0], 0.5, k_out=12)
    assert len(found) == 2
    # Strongest first (the centre on a pixel), each within 0.01 px of its true centre (log-parabola vertex).
    assert np.allclose(found[0], [10.0, 12.0], atol=1e-6)
    assert np.hypot(*(found[1] - [30.4, 25.7])) < 0.01
    assert len(det.find_peaks(heat[0, 0], 0.5, k_out=1)) == 1
    assert len(det.find_peaks(np.zeros((48, 48)), 0.5, k_out=12)) == 0


def test_inputs_are_in_units_of_the_noise():
    rng = np.random.default_rng(0)
    blend = rng.normal(size=(2, 3, 8, 8))
    sigma = np.array([[1.0, 2.0, 4.0], [0.5, 0.5, 0.5]])
    x = det.network_inputs(blend * sigma[:, :, None, None], sigma)
    assert x.shape == (2, 4, 8, 8)
    assert np.allclose(x[:, :3], np.arcsinh(blend / 3.0), atol=1e-5)
    # The detection channel has unit noise: the inverse-variance sum of unit-noise bands over sqrt(sum w).
    w = 1.0 / sigma ** 2
    d = (w[:, :, None, None] * blend * sigma[:, :, None, None]).sum(1) / np.sqrt(w.sum(1))[:, None, None]
    assert np.allclose(x[:, 3], np.arcsinh(d / 3.0), atol=1e-5)


def test_training_is_deterministic_and_bounded_by_epochs():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 7, 16, 16)).astype(np.float32)
    t = det.heat_maps(np.array([[[4.0, 5.0]]] * 4), 16)
    a, b = det.Detector.__new__(det.Detector), det.Detector.__new__(det.Detector)
    for m in (a, b):
        m.time_budget_s = 1e9
        m._train(x, t)
    assert a.train_log["epochs"] == det.MAX_EPOCHS and a.train_log["steps"] == det.MAX_EPOCHS
    for pa, pb in zip(a.net.parameters(), b.net.parameters()):
        assert torch.equal(pa, pb)
