"""RAMP prediction type of the blind track: fixed-size detection catalogues.

A submission's ``predict(X)`` returns, for ``n`` blends, ``C`` bands, stamps of
``S x S`` pixels and at most ``K_out`` detections per blend, either a tuple
``(centers, images)`` or a dict with those keys:

* ``centers`` (n, K_out, 2) float: (x, y) of each detection, pixels, 0-based
  (the data's convention); **NaN (both coordinates) marks an empty slot**;
* ``images`` (n, K_out, C, S, S) float: the detection's isolated image, ADU;
  empty slots must be all zeros.

Slots may be filled in any order. :func:`check_output` turns that into one
structured array of dtype :func:`prediction_dtype` (fields ``centers``,
``images``), which rampwf holds in :class:`BlindPredictions`.

The ground truth rampwf holds in the same class is a structured array of
dtype :func:`truth_dtype` (made by :mod:`deblendkit.ramp.blind_problem`):
``centers`` (K, 2) NaN in empty slots, ``isolated`` (K, C, S, S), ``n_galaxies``,
``mag`` (K,) reference-band AB magnitude, ``blendedness`` (K,),
``match_radius`` (pixels) and ``faint_centers`` (8 K, 2): the centres of
unlabelled galaxies (field mode; in the stamp or its margin, the brightest
first, NaN padded), near which a detection is ignored rather than counted spurious.

A row of predictions is *valid* (predicted) unless its first image pixel
(``images[i, 0, 0, 0, 0]``) is NaN, which :func:`check_output` never lets
through: that is how rampwf's empty containers and the rows of training blends
the workflow does not predict are marked (:func:`mark_not_predicted`). Only
that pixel is written, so such rows of a ``np.zeros`` array stay unmapped zero
pages (a row is 663 kB at the default sizes); ``copy.deepcopy`` shares the
arrays (rampwf deep-copies the ground truth once per fold and score), since
every method here replaces ``y_pred`` instead of writing into it. ``combine`` (CV bagging) cannot average
catalogues slot by slot, so it keeps, for each blend, the prediction of the
first member that holds one.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rampwf.prediction_types.base import BasePrediction

from deblendkit.errors import ConfigError, PredictionError

__all__ = ["prediction_dtype", "truth_dtype", "check_output", "empty_output", "pack_catalogues",
           "predicted_rows", "mark_not_predicted", "not_predicted", "BlindPredictions",
           "make_blind_predictions_type"]


def prediction_dtype(k_out: int, n_bands: int, stamp_size: int) -> np.dtype:
    """Structured dtype of one blend's catalogue (fields ``centers``, ``images``)."""
    return np.dtype([("centers", np.float32, (k_out, 2)),
                     ("images", np.float32, (k_out, n_bands, stamp_size, stamp_size))])


#: Slots for the centres of unlabelled galaxies in the truth, per labelled slot.
FAINT_PER_SLOT = 8


def truth_dtype(max_galaxies: int, n_bands: int, stamp_size: int) -> np.dtype:
    """Structured dtype of one blend's truth (see the module doc)."""
    k = max_galaxies
    return np.dtype([("centers", np.float32, (k, 2)),
                     ("isolated", np.float32, (k, n_bands, stamp_size, stamp_size)),
                     ("n_galaxies", np.int32),
                     ("mag", np.float32, (k,)),
                     ("blendedness", np.float32, (k,)),
                     ("match_radius", np.float32),
                     ("faint_centers", np.float32, (FAINT_PER_SLOT * k, 2))])


def empty_output(n: int, *, k_out: int, n_bands: int, stamp_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(centers, images)`` of ``n`` blends with no detection (NaN centres, zero images)."""
    return (np.full((n, k_out, 2), np.nan, np.float32),
            np.zeros((n, k_out, n_bands, stamp_size, stamp_size), np.float32))


def pack_catalogues(catalogues: Sequence, *, k_out: int, n_bands: int, stamp_size: int):
    """Pack per-blend catalogues of any length into the fixed-size output.

    Parameters
    ----------
    catalogues : sequence of (centers (m_i, 2), images (m_i, C, S, S))
        One pair per blend.
    k_out, n_bands, stamp_size : int
        The output's sizes.

    Returns
    -------
    centers : ndarray, (n, k_out, 2) float32
    images : ndarray, (n, k_out, C, S, S) float32

    Raises
    ------
    PredictionError
        A blend with more than ``k_out`` detections, or mismatched lengths.
    """
    centers, images = empty_output(len(catalogues), k_out=k_out, n_bands=n_bands,
                                   stamp_size=stamp_size)
    for i, (xy, img) in enumerate(catalogues):
        xy = np.asarray(xy, dtype=np.float32).reshape(-1, 2)
        img = np.asarray(img, dtype=np.float32).reshape(-1, n_bands, stamp_size, stamp_size)
        if len(xy) != len(img):
            raise PredictionError(f"blend {i}: {len(xy)} centres but {len(img)} images",
                                  value=(len(xy), len(img)))
        if len(xy) > k_out:
            raise PredictionError(f"blend {i} has {len(xy)} detections, more than K_out = {k_out}",
                                  value=len(xy), allowed=f"<= {k_out}")
        centers[i, : len(xy)] = xy
        images[i, : len(img)] = img
    return centers, images


def _split_output(output) -> tuple[object, object]:
    if isinstance(output, dict):
        missing = {"centers", "images"} - set(output)
        if missing:
            raise PredictionError(f"the output dict lacks {sorted(missing)}",
                                  value=sorted(output), allowed=["centers", "images"])
        return output["centers"], output["images"]
    if isinstance(output, np.ndarray) and output.dtype.names:
        return output["centers"], output["images"]
    if isinstance(output, (tuple, list)) and len(output) == 2:
        return output[0], output[1]
    raise PredictionError(
        "predict must return (centers, images) or {'centers': ..., 'images': ...}, "
        f"got {type(output).__name__}", value=type(output).__name__,
        allowed="tuple (centers, images) or dict")


def _as_float(arr, name: str) -> np.ndarray:
    try:
        out = np.asarray(arr)
    except Exception as exc:  # a ragged list, an object that is not an array
        raise PredictionError(f"{name} is not an array of numbers ({exc})") from exc
    if out.dtype.kind not in "fiu":
        raise PredictionError(f"{name} must be an array of numbers, got dtype {out.dtype}",
                              value=str(out.dtype), allowed="float")
    return out.astype(np.float32, copy=False)


def check_output(output, *, n_blends: int, k_out: int, n_bands: int, stamp_size: int) -> np.ndarray:
    """Validate a submission's catalogues; return them as a structured array.

    Raises
    ------
    PredictionError
        Not ``(centers, images)``; wrong shapes (more than ``k_out`` slots named
        as such); a centre with one NaN coordinate, a NaN or inf centre in a
        slot whose image is not all zeros, non-finite image values, or an empty
        slot (NaN centre) with a nonzero image. Each message names the first
        offending blend and slot.
    """
    centers, images = (_as_float(a, n) for a, n in zip(_split_output(output), ("centers", "images")))
    want_c, want_i = (n_blends, k_out, 2), (n_blends, k_out, n_bands, stamp_size, stamp_size)
    for arr, want, name in ((centers, want_c, "centers"), (images, want_i, "images")):
        if arr.ndim == len(want) and arr.shape[0] == n_blends and arr.shape[1] > k_out \
                and arr.shape[2:] == want[2:]:
            raise PredictionError(
                f"{name} has {arr.shape[1]} detection slots per blend, more than K_out = {k_out}",
                value=arr.shape[1], allowed=f"<= {k_out}")
        if arr.shape != want:
            raise PredictionError(f"{name} must have shape {want}, got {arr.shape}",
                                  value=arr.shape, allowed=want)
    _check_slots(centers, images)
    out = np.empty(n_blends, dtype=prediction_dtype(k_out, n_bands, stamp_size))
    out["centers"] = centers
    out["images"] = images
    return out


def _first(mask: np.ndarray) -> tuple[int, int]:
    i, k = np.argwhere(mask)[0]
    return int(i), int(k)


def _check_slots(centers: np.ndarray, images: np.ndarray) -> None:
    if not np.all(np.isfinite(images)):
        i, k = _first(~np.isfinite(images).reshape(*images.shape[:2], -1).all(axis=-1))
        raise PredictionError(f"images hold NaN or inf values (first in blend {i}, slot {k})",
                              value=(i, k), allowed="finite")
    nan = np.isnan(centers)
    if np.any(nan[..., 0] != nan[..., 1]):
        i, k = _first(nan[..., 0] != nan[..., 1])
        raise PredictionError(f"blend {i}, slot {k}: a centre has one NaN coordinate "
                              "(an empty slot has both NaN)", value=centers[i, k].tolist())
    if np.any(np.isinf(centers)):
        i, k = _first(np.isinf(centers).any(axis=-1))
        raise PredictionError(f"blend {i}, slot {k}: infinite centre", value=centers[i, k].tolist(),
                              allowed="finite, or NaN for an empty slot")
    filled = np.any(images != 0, axis=(2, 3, 4))
    bad = filled & nan[..., 0]
    if bad.any():
        i, k = _first(bad)
        raise PredictionError(f"blend {i}, slot {k}: NaN centre in a filled slot (its image is "
                              "not all zeros); give its centre or zero its image",
                              value=(i, k), allowed="finite centre")


def predicted_rows(y: np.ndarray) -> np.ndarray:
    """Boolean (n,): rows holding a prediction (first image pixel not NaN; truth rows: all)."""
    if "images" not in (y.dtype.names or ()):
        return np.ones(len(y), dtype=bool)
    return ~np.isnan(y["images"][:, 0, 0, 0, 0])


def mark_not_predicted(y: np.ndarray, rows=slice(None)) -> None:
    """Mark ``rows`` of a prediction array as not predicted (in place; NaN centres too)."""
    y["centers"][rows] = np.nan
    y["images"][rows, 0, 0, 0, 0] = np.nan


def not_predicted(n: int, *, k_out: int, n_bands: int, stamp_size: int) -> np.ndarray:
    """A prediction array of ``n`` rows, none predicted (zero pages, lazily mapped)."""
    y = np.zeros(int(n), dtype=prediction_dtype(k_out, n_bands, stamp_size))
    mark_not_predicted(y)
    return y


class BlindPredictions(BasePrediction):
    """Base of the classes made by :func:`make_blind_predictions_type`.

    Holds ``y_pred``: a structured array of :func:`prediction_dtype` (a
    submission's catalogues) or of :func:`truth_dtype` (the ground truth, as
    rampwf stores ``y_true`` in ``y_pred``).
    """

    k_out: int = 0
    n_bands: int = 0
    stamp_size: int = 0

    def __init__(self, y_pred=None, y_true=None, n_samples=None, fold_is=None):
        if type(self).k_out < 1:
            raise ConfigError("BlindPredictions is a base class; use make_blind_predictions_type")
        source = y_pred if y_pred is not None else y_true
        if source is not None:
            arr = np.asarray(source)
            if not arr.dtype.names:
                raise PredictionError(f"blind predictions hold structured arrays, got dtype {arr.dtype}",
                                      value=str(arr.dtype))
            self.y_pred = arr[fold_is] if fold_is is not None else arr
        elif n_samples is not None:
            self.y_pred = not_predicted(n_samples, k_out=self.k_out, n_bands=self.n_bands,
                                        stamp_size=self.stamp_size)
        else:
            raise PredictionError("Missing init argument: y_pred, y_true, or n_samples")

    @property
    def valid_indexes(self) -> np.ndarray:
        """Boolean mask, (n,): rows holding a prediction."""
        return predicted_rows(self.y_pred)

    def set_valid_in_train(self, predictions, test_is) -> None:
        """Write one fold's predictions into rows ``test_is``."""
        self.y_pred = self.y_pred.copy()
        self.y_pred[test_is] = predictions.y_pred

    def set_slice(self, valid_indexes) -> None:
        """Keep only the rows ``valid_indexes``."""
        self.y_pred = self.y_pred[valid_indexes]

    def __deepcopy__(self, memo):
        # Share the (large) array: no method writes into y_pred in place.
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        memo[id(self)] = new
        return new

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.y_pred)} blends, {int(self.valid_indexes.sum())} valid)"

    @classmethod
    def combine(cls, predictions_list: Sequence, index_list=None):
        """Per blend, the catalogue of the first member that predicts it (no averaging)."""
        if index_list is None:
            index_list = range(len(predictions_list))
        members = [predictions_list[i] for i in index_list]
        if not members:
            raise PredictionError("combine needs at least one Predictions, got an empty list")
        n = len(members[0].y_pred)
        # Start from a lazily mapped empty array: only the predicted rows get written.
        out = not_predicted(n, k_out=cls.k_out, n_bands=cls.n_bands, stamp_size=cls.stamp_size)
        have = np.zeros(n, dtype=bool)
        for m in members:
            if len(m.y_pred) != n:
                raise PredictionError(f"cannot combine predictions of {n} and {len(m.y_pred)} blends")
            take = ~have & m.valid_indexes
            out[take] = m.y_pred[take]
            have |= take
        new = cls.__new__(cls)
        new.y_pred = out
        return new


def make_blind_predictions_type(*, k_out: int, n_bands: int, stamp_size: int) -> type:
    """The ``Predictions`` class of the blind problem for these sizes."""
    for name, value in (("k_out", k_out), ("n_bands", n_bands), ("stamp_size", stamp_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}", value=value,
                              allowed=">= 1")
    return type("Predictions", (BlindPredictions,),
                {"k_out": int(k_out), "n_bands": int(n_bands), "stamp_size": int(stamp_size),
                 "__module__": __name__,
                 "__doc__": f"Blind-track catalogues: up to {k_out} detections, {n_bands} bands, "
                            f"{stamp_size}x{stamp_size} px."})
