"""Blind baseline: ``sep_detect`` with its detection thresholds chosen in ``fit``.

The same detection image, SEP and starting-kit templates as ``sep_detect``
(loaded from ``../sep_detect/detector.py`` by path), but ``fit`` picks
DETECT_THRESH and DEBLEND_MINCONT from a small grid by the blind score
(:mod:`deblendkit.scoring.blind_metrics`) on up to :data:`N_FIT` training
blends: what a survey pipeline's tuning on simulations does. DEBLEND_NTHRESH
stays 32 and DETECT_MINAREA 5.
"""
import importlib.util
import itertools
from pathlib import Path

import numpy as np
import sep

from deblendkit.ramp.blind_prediction import check_output
from deblendkit.scoring.blind_metrics import blind_evaluate, blind_summary

#: Grid searched in fit.
THRESHOLDS = (1.0, 1.5, 2.5)
MINCONTS = (0.005, 1e-3, 1e-4, 1e-5)
#: Training blends used to choose.
N_FIT = 200


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Detector:
    """SEP detection at thresholds tuned on the training set + starting-kit templates."""

    def __init__(self):
        self.base = _load(Path(__file__).resolve().parents[1] / "sep_detect" / "detector.py",
                          "blind_sep_detect_base")
        self.templates = self.base.load_first_track("starting_kit")
        self.thresh_ = self.base.DETECT_THRESH
        self.mincont_ = self.base.DEBLEND_MINCONT

    def _detect(self, blend, noise, k_out, thresh, mincont):
        image = np.ascontiguousarray(self.base.detection_image(blend, noise))
        try:
            obj = sep.extract(image, thresh, err=1.0, minarea=self.base.DETECT_MINAREA,
                              deblend_nthresh=self.base.DEBLEND_NTHRESH, deblend_cont=mincont)
        except Exception:  # SEP's pixel-stack or deblending overflow
            return np.zeros((0, 2))
        order = np.argsort(-obj["flux"], kind="stable")[:k_out]
        return np.stack([obj["x"][order], obj["y"][order]], axis=1).astype(np.float64)

    def _predict(self, X, thresh, mincont):
        n, k = len(X), X.k_out
        centers = np.full((n, k, 2), np.nan, np.float32)
        images = np.zeros((n, k, X.n_bands, X.stamp_size, X.stamp_size), np.float32)
        blend, noise = np.asarray(X.blend), np.asarray(X.noise_sigma)
        for i in range(n):
            xy = self._detect(blend[i], noise[i], k, thresh, mincont)
            if len(xy):
                centers[i, :len(xy)] = xy
                images[i, :len(xy)] = self.templates.deblend(blend[i], xy, noise[i].astype(np.float64))
        return centers, images

    def fit(self, X, y):
        """Choose (DETECT_THRESH, DEBLEND_MINCONT) by the blind score on training blends."""
        n = min(len(X), N_FIT)
        if n == 0:
            return self
        Xs, ys = X[:n], y[:n]
        best = -1.0
        for thresh, mincont in itertools.product(THRESHOLDS, MINCONTS):
            out = check_output(self._predict(Xs, thresh, mincont), n_blends=n, k_out=X.k_out,
                               n_bands=X.n_bands, stamp_size=X.stamp_size)
            score = blind_summary(blind_evaluate(ys, out))["blind"]
            if np.isfinite(score) and score > best:
                best, self.thresh_, self.mincont_ = score, thresh, mincont
        return self

    def predict(self, X):
        """Catalogues at the chosen thresholds (see ``sep_detect``)."""
        return self._predict(X, self.thresh_, self.mincont_)
