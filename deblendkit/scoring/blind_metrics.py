"""Scores of the blind track: detection and deblending together, through matching.

Inputs are the structured arrays of :mod:`deblendkit.ramp.blind_prediction`
(plain numpy: this module does not import rampwf): the truth ``y_true``
(fields ``centers`` (K, 2), ``isolated`` (K, C, S, S), ``n_galaxies``, ``mag``,
``blendedness``, ``match_radius``) and a submission's catalogues ``y_pred``
(fields ``centers`` (K_out, 2), NaN in empty slots, and ``images``
(K_out, C, S, S)).

Per blend, the true sources (slots ``0 .. n_galaxies - 1`` whose image is not
all zeros) are matched to the detections (slots with finite centres) by
:func:`deblendkit.scoring.matching.match_catalogue` within the blend's
``match_radius`` (pixels). Then, with ``deblend`` the first track's per-galaxy
score ``1 - min(1, ||y_hat - y|| / ||y||)`` of the matched detection's image
(0 for a missed source: an all-zero prediction scores 0)::

    blind = sum over true sources of deblend / (n_true + n_spurious)

over the whole set (an unmatched detection within the match radius of an
unlabelled field-mode galaxy, ``faint_centers``, is ignored: neither matched
nor spurious): 1 is perfect, each missed or invented source costs. With
the true centres as detections and the true images it is 1, and with the true
centres and any images it equals the first track's score of those images.

Beside it (:func:`blind_summary`): ``precision`` = matched / detections,
``recall`` = matched / true, ``f1``, ``unrecognised`` (fraction of true
sources missed while a detection within the radius went to a neighbour),
``deblend_matched`` (first-track score over matched sources only), and the
first track's flux (and optionally shape) metrics on matched sources, keys as
in :func:`deblendkit.scoring.summarize` prefixed by nothing (``flux_scatter_r``,
...). :func:`breakdown` bins the per-source table by magnitude or blendedness.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from deblendkit.errors import ConfigError, PredictionError
from deblendkit.scoring import galaxy_table, summarize
from deblendkit.scoring.matching import match_catalogue, near_any

__all__ = ["BlindResult", "blind_evaluate", "blind_summary", "breakdown", "MAG_BINS",
           "BLENDEDNESS_BINS"]

#: Default magnitude bins (reference band, AB) of :func:`breakdown`.
MAG_BINS = (15.0, 22.0, 23.0, 24.0, 25.0, 26.0, 30.0)
#: Default blendedness bins of :func:`breakdown`.
BLENDEDNESS_BINS = (0.0, 0.01, 0.1, 0.25, 0.5, 1.0)
_CHUNK = 32  # blends per chunk of aligned images (memory bound)


class BlindResult:
    """Per-source table and per-blend counts of a matched data set.

    Attributes
    ----------
    sources : pandas.DataFrame
        One row per true source: ``blend_index``, ``slot``, ``mag``,
        ``blendedness``, ``matched`` (bool), ``detection`` (slot of the matched
        detection, -1), ``distance`` (pixels, NaN when missed),
        ``unrecognised`` (bool), ``deblend`` (0 when missed), and the columns
        of the first track's table for the metric groups asked for
        (``flux_err_<band>``, ...; computed on the matched image, meaningful
        only where ``matched``).
    n_detections, n_spurious : ndarray of int, (n_blends,)
        Both without the ignored detections (unmatched, within the match
        radius of an unlabelled galaxy's centre, ``faint_centers``).
    """

    def __init__(self, sources: pd.DataFrame, n_detections: np.ndarray, n_spurious: np.ndarray):
        self.sources = sources
        self.n_detections = n_detections
        self.n_spurious = n_spurious


def _fields(arr, names: Sequence[str], what: str) -> np.ndarray:
    arr = np.asarray(arr)
    missing = [n for n in names if n not in (arr.dtype.names or ())]
    if missing:
        raise PredictionError(f"{what} lacks the fields {missing} (dtype {arr.dtype})",
                              value=arr.dtype.names, allowed=list(names))
    return arr


def _match_chunk(yt: np.ndarray, yp: np.ndarray, offset: int):
    """Matched images aligned with the truth slots, and the per-source rows, of one chunk."""
    iso = yt["isolated"]
    aligned = np.zeros_like(iso)
    rows = []
    n_det = np.zeros(len(yt), np.int64)
    n_spur = np.zeros(len(yt), np.int64)
    energy = np.einsum("nkchw,nkchw->nk", iso, iso, dtype=np.float64)
    for i in range(len(yt)):
        slots = np.flatnonzero((np.arange(iso.shape[1]) < int(yt["n_galaxies"][i])) & (energy[i] > 0))
        det = np.flatnonzero(np.isfinite(yp["centers"][i, :, 0]))
        m = match_catalogue(yt["centers"][i, slots], yp["centers"][i, det],
                            radius=float(yt["match_radius"][i]))
        # A spurious detection near an unlabelled (field-mode) galaxy is ignored.
        faint = yt["faint_centers"][i]
        faint = faint[np.isfinite(faint[:, 0])]
        ignored = m.spurious & near_any(yp["centers"][i, det], faint, radius=float(yt["match_radius"][i]))
        n_det[i], n_spur[i] = len(det) - int(ignored.sum()), m.n_spurious - int(ignored.sum())
        for j, k in enumerate(slots):
            d = int(m.detection_of[j])
            if d >= 0:
                aligned[i, k] = yp["images"][i, det[d]]
            rows.append((offset + i, int(k), d >= 0, int(det[d]) if d >= 0 else -1,
                         m.distance[j], bool(m.unrecognised[j])))
    return aligned, rows, n_det, n_spur


def blind_evaluate(y_true, y_pred, *, bands: Sequence[str] | None = None,
                   metrics: Sequence[str] = ()) -> BlindResult:
    """Match every blend and score every true source.

    Parameters
    ----------
    y_true : structured ndarray, (n,)
        Truth (see the module doc).
    y_pred : structured ndarray, (n,)
        Catalogues, as :func:`deblendkit.ramp.blind_prediction.check_output` returns.
    bands : sequence of str, optional
        Band names (needed for ``metrics``); default ``C`` placeholders.
    metrics : sequence of str
        Extra first-track metric groups on matched sources (``"flux"``,
        ``"shape"``, ...); the ``deblend`` score is always computed.

    Raises
    ------
    PredictionError
        Missing fields, different numbers of blends, or non-finite images.
    """
    yt = _fields(y_true, ("centers", "isolated", "n_galaxies", "mag", "blendedness", "match_radius",
                  "faint_centers"),
                 "the ground truth")
    yp = _fields(y_pred, ("centers", "images"), "the predictions")
    if len(yt) != len(yp):
        raise PredictionError(f"{len(yp)} predicted blends for {len(yt)} true ones",
                              value=len(yp), allowed=len(yt))
    n_bands = yt["isolated"].shape[2] if yt["isolated"].ndim == 5 else 0
    bands = tuple(bands) if bands is not None else tuple(f"b{c}" for c in range(n_bands))
    tables, rows, n_det, n_spur = [], [], [], []
    for lo in range(0, len(yt), _CHUNK):
        ct, cp = yt[lo:lo + _CHUNK], yp[lo:lo + _CHUNK]
        aligned, r, d, s = _match_chunk(ct, cp, lo)
        tab = galaxy_table(ct["isolated"], aligned, bands=bands, metrics=tuple(metrics))
        tab["blend_index"] += lo
        tables.append(tab)
        rows += r
        n_det.append(d)
        n_spur.append(s)
    cols = ["blend_index", "slot", "matched", "detection", "distance", "unrecognised"]
    match = pd.DataFrame.from_records(rows, columns=cols) if rows else pd.DataFrame(
        {c: pd.Series(dtype=t) for c, t in zip(cols, ("int64", "int64", bool, "int64", float, bool))})
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(
        {"blend_index": pd.Series(dtype="int64"), "slot": pd.Series(dtype="int64"),
         "deblend": pd.Series(dtype=float)})
    sources = match.merge(table, on=["blend_index", "slot"], how="left", validate="one_to_one")
    bi, sl = sources["blend_index"].to_numpy(), sources["slot"].to_numpy()
    sources.insert(2, "mag", yt["mag"][bi, sl].astype(np.float64) if len(bi) else np.zeros(0))
    sources.insert(3, "blendedness", yt["blendedness"][bi, sl].astype(np.float64) if len(bi) else np.zeros(0))
    cat = (lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int64))
    return BlindResult(sources, cat(n_det), cat(n_spur))


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def blind_summary(result: BlindResult, *, bands: Sequence[str] | None = None) -> dict[str, float]:
    """Aggregate scores of a :class:`BlindResult` (keys in the module doc).

    ``blind`` is NaN when there are no true sources and no spurious
    detections; ``precision`` NaN without detections; ``recall`` and
    ``unrecognised`` NaN without true sources.
    """
    s = result.sources
    n_true, n_det = len(s), int(result.n_detections.sum())
    n_match, n_spur = int(s["matched"].sum()), int(result.n_spurious.sum())
    precision, recall = _ratio(n_match, n_det), _ratio(n_match, n_true)
    f1 = (2 * precision * recall / (precision + recall)
          if np.isfinite(precision) and np.isfinite(recall) and precision + recall > 0
          else (0.0 if n_true + n_det else math.nan))
    out = {"blind": _ratio(float(s["deblend"].sum()), n_true + n_spur),
           "precision": precision, "recall": recall, "f1": f1,
           "unrecognised": _ratio(int(s["unrecognised"].sum()), n_true),
           "n_true": float(n_true), "n_detections": float(n_det), "n_matched": float(n_match),
           "n_spurious": float(n_spur)}
    matched = s[s["matched"].to_numpy(dtype=bool)]
    first = summarize(matched.drop(columns=["mag", "blendedness", "matched", "detection",
                                            "distance", "unrecognised"]),
                      bands=tuple(bands) if bands is not None else ())
    out["deblend_matched"] = first.get("deblend", math.nan)
    for key, value in first.items():
        if key not in ("n_galaxies", "deblend"):
            out[key] = value
    return out


def breakdown(result: BlindResult, *, by: str = "mag", bins: Sequence[float] | None = None) -> pd.DataFrame:
    """Recall, unrecognised fraction and scores of the true sources, by bins of ``by``.

    Parameters
    ----------
    result : BlindResult
    by : {"mag", "blendedness"}
        Column to bin (reference-band AB magnitude, or blendedness).
    bins : sequence of float, optional
        Bin edges (default :data:`MAG_BINS` / :data:`BLENDEDNESS_BINS`); values
        outside them are left out.

    Returns
    -------
    pandas.DataFrame
        One row per bin: ``bin`` (interval), ``n_true``, ``recall``,
        ``unrecognised``, ``deblend`` (mean, missed sources 0),
        ``deblend_matched``. Precision is not binned: a spurious detection
        has no true magnitude.
    """
    if by not in ("mag", "blendedness"):
        raise ConfigError(f"by must be 'mag' or 'blendedness', got {by!r}", value=by,
                          allowed=["mag", "blendedness"])
    edges = list(bins if bins is not None else (MAG_BINS if by == "mag" else BLENDEDNESS_BINS))
    s = result.sources
    cut = pd.cut(s[by], edges, include_lowest=True)
    rows = []
    for interval, g in s.groupby(cut, observed=False):
        m = g[g["matched"].to_numpy(dtype=bool)]
        rows.append({"bin": str(interval), "n_true": len(g),
                     "recall": _ratio(float(g["matched"].sum()), len(g)),
                     "unrecognised": _ratio(float(g["unrecognised"].sum()), len(g)),
                     "deblend": float(g["deblend"].mean()) if len(g) else math.nan,
                     "deblend_matched": float(m["deblend"].mean()) if len(m) else math.nan})
    return pd.DataFrame(rows)
