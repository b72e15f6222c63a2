"""Blind baseline: SEP detection, then the first track's symmetric templates.

1. **Detection image.** The bands are summed with inverse-variance weights and
   normalised so that the background noise is 1 per pixel:
   ``D = sum_c (b_c / s_c^2) / sqrt(sum_c 1 / s_c^2)`` (``s_c`` the band's
   ``noise_sigma``). That is the optimal sum for a flat spectrum and
   close to it for galaxies.
2. **Detection and deblending** with SEP (Barbary 2016), Source Extractor as a
   library, at SExtractor's defaults: DETECT_THRESH 1.5 (sigma), DETECT_MINAREA
   5 pixels, the default 3x3 filter, DEBLEND_NTHRESH 32, DEBLEND_MINCONT 0.005,
   cleaning on. The images are already sky-subtracted, so no background is
   fitted. Centres are SEP's barycentres ``x, y`` (0-based, pixel centres at
   integers: the data's convention). At most ``X.k_out`` detections are kept,
   the brightest (``flux``) first.
3. **Images**: the first track's ``starting_kit`` symmetric templates and
   apportioning at the detected centres. That module is loaded from the kit's
   ``submissions/starting_kit/deblender.py`` by path (not copied), so both tracks
   run the same template code.
"""
import importlib.util
from pathlib import Path

import numpy as np
import sep

#: SExtractor's defaults (sextractor -dd).
DETECT_THRESH = 1.5
DETECT_MINAREA = 5
DEBLEND_NTHRESH = 32
DEBLEND_MINCONT = 0.005


def load_first_track(name: str):
    """The first track's submission module ``submissions/<name>/deblender.py`` of this kit."""
    path = Path(__file__).resolve().parents[3] / "submissions" / name / "deblender.py"
    if not path.is_file():
        raise FileNotFoundError(f"the first track's {name} submission is not at {path}")
    spec = importlib.util.spec_from_file_location(f"first_track_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def detection_image(blend: np.ndarray, noise_sigma: np.ndarray) -> np.ndarray:
    """Inverse-variance weighted band sum with unit background noise, (H, W) float64."""
    w = 1.0 / np.asarray(noise_sigma, dtype=np.float64) ** 2
    return np.tensordot(w, np.asarray(blend, dtype=np.float64), axes=1) / np.sqrt(w.sum())


def detect(blend: np.ndarray, noise_sigma: np.ndarray, k_out: int) -> np.ndarray:
    """SEP detections of one blend: (m, 2) centres (x, y), pixels, brightest first, m <= k_out."""
    image = np.ascontiguousarray(detection_image(blend, noise_sigma))
    try:
        objects = sep.extract(image, DETECT_THRESH, err=1.0, minarea=DETECT_MINAREA,
                              deblend_nthresh=DEBLEND_NTHRESH, deblend_cont=DEBLEND_MINCONT)
    except Exception:  # SEP's pixel-stack or deblending overflow on a pathological image
        return np.zeros((0, 2))
    order = np.argsort(-objects["flux"], kind="stable")[:k_out]
    return np.stack([objects["x"][order], objects["y"][order]], axis=1).astype(np.float64)


class Detector:
    """SEP detection + starting-kit templates."""

    def __init__(self):
        self.templates = load_first_track("starting_kit")

    def fit(self, X, y):
        """Nothing to learn."""
        return self

    def detect_all(self, X) -> list:
        """Detected centres of every blend of ``X``: a list of (m_i, 2) arrays."""
        blend, noise = np.asarray(X.blend), np.asarray(X.noise_sigma)
        return [detect(blend[i], noise[i], X.k_out) for i in range(len(X))]

    def predict(self, X):
        """``(centers (n, K_out, 2), images (n, K_out, C, S, S))``; NaN centres in empty slots."""
        n, k = len(X), X.k_out
        c, s = X.n_bands, X.stamp_size
        centers = np.full((n, k, 2), np.nan, np.float32)
        images = np.zeros((n, k, c, s, s), np.float32)
        blend, noise = np.asarray(X.blend), np.asarray(X.noise_sigma)
        for i, xy in enumerate(self.detect_all(X)):
            m = len(xy)
            if m:
                centers[i, :m] = xy
                images[i, :m] = self.templates.deblend(blend[i], xy, noise[i].astype(np.float64))
        return centers, images
