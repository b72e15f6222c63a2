"""Blind baseline: SEP detections (as ``sep_detect``) fed to the first track's forward model.

Detection is ``sep_detect``'s (loaded from ``../sep_detect/detector.py`` by
path: same image, same SExtractor default thresholds); the images come from
the first track's ``forward_model`` (``submissions/forward_model/deblender.py``
of this kit, loaded by path), fitted at the detected centres. ``fit`` measures
the gain per band from the training labels, as the forward model does.
"""
import importlib.util
from pathlib import Path

import numpy as np


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Detector:
    """SEP detection + forward-model fit at the detected centres."""

    def __init__(self):
        here = Path(__file__).resolve()
        self.detection = _load(here.parents[1] / "sep_detect" / "detector.py", "blind_sep_detect")
        self.forward = self.detection.load_first_track("forward_model")
        self.deblender = self.forward.Deblender()

    def fit(self, X, y):
        """The forward model's gain per band, from the training blends and their labels."""
        n = min(len(X), self.deblender.n_gain_blends)
        if n > 0:
            self.deblender.gain_ = self.forward.estimate_gain(
                np.asarray(X.blend[:n]), np.asarray(y["isolated"][:n]), np.asarray(X.noise_sigma[:n]))
        return self

    def predict(self, X):
        """``(centers (n, K_out, 2), images (n, K_out, C, S, S))``; NaN centres in empty slots."""
        n, k = len(X), X.k_out
        c, s = X.n_bands, X.stamp_size
        centers = np.full((n, k, 2), np.nan, np.float32)
        images = np.zeros((n, k, c, s, s), np.float32)
        blend, psf, noise = np.asarray(X.blend), np.asarray(X.psf), np.asarray(X.noise_sigma)
        for i in range(n):
            xy = self.detection.detect(blend[i], noise[i], k)
            m = len(xy)
            if m:
                res = self.forward.fit_blend(blend[i], psf[i], noise[i], xy, self.deblender.options,
                                             gain=self.deblender.gain_)
                centers[i, :m] = xy
                images[i, :m] = res.models
        return centers, images
