"""Pictures of blends and of scores: colour composites, galleries, score breakdowns.

Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot, no
global backend change): they render with the Agg canvas to PNG
(:func:`figure_png`) for the leaderboard and display as they are in a notebook.

Colour composites follow Lupton et al. (2004) through
:func:`astropy.visualization.make_lupton_rgb`: an asinh stretch of the summed
intensity that keeps the colours of bright cores. Every panel of one blend uses
the same stretch (set from the blend's background noise), so a deblended galaxy
can be compared by eye with the truth and with the blend.
"""
from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from astropy.visualization import make_lupton_rgb
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from deblendkit.errors import ConfigError
from deblendkit.report.results import Gallery, rgb_bands

__all__ = [
    "LUPTON_Q",
    "NOISE_STRETCH",
    "BLENDEDNESS_BINS",
    "lupton_stretch",
    "rgb_composite",
    "deblend_figure",
    "gallery_figure",
    "binned_score",
    "magnitude_column",
    "score_vs_figure",
    "figure_png",
    "png_data_uri",
]

LUPTON_Q = 8.0
"""Asinh softening of the composites: the linear part spans ``stretch``, the
display saturates near ``stretch * sinh(Q) / Q`` (186 ``stretch`` for Q = 8)."""
NOISE_STRETCH = 5.0
"""Linear range of the composites, in units of the mean background noise."""
BLENDEDNESS_BINS = (0.0, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0)
"""Default blendedness bins (those of ``prepare_data.py``'s histogram)."""


def lupton_stretch(noise_sigma) -> float:
    """Linear range (ADU) of the composites of a blend: ``NOISE_STRETCH`` x mean noise.

    Parameters
    ----------
    noise_sigma : array_like (C,)
        Background noise of the composite's bands, ADU per pixel.
    """
    sigma = np.asarray(noise_sigma, dtype=np.float64)
    sigma = sigma[np.isfinite(sigma) & (sigma > 0)]
    if sigma.size == 0:
        raise ConfigError(f"noise_sigma must hold a positive finite value, got {noise_sigma!r}")
    return float(NOISE_STRETCH * sigma.mean())


def rgb_composite(images, *, bands: Sequence[str], stretch: float, q: float = LUPTON_Q) -> np.ndarray:
    """Lupton RGB composite of a multi-band image.

    Parameters
    ----------
    images : array_like (C, H, W)
        One image per band of ``bands``, ADU (negative pixels display black).
    bands : sequence of str
        Band names of axis 0; red, green, blue are :func:`~deblendkit.report.results.rgb_bands`.
    stretch : float
        Linear range, ADU (e.g. :func:`lupton_stretch`).
    q : float
        Asinh softening.

    Returns
    -------
    ndarray (H, W, 3) uint8
    """
    images = np.asarray(images, dtype=np.float64)
    bands = tuple(bands)
    if images.ndim != 3 or images.shape[0] != len(bands):
        raise ConfigError(
            f"images must have shape (C, H, W) with C = {len(bands)} bands {list(bands)}, "
            f"got {images.shape}"
        )
    if not (math.isfinite(stretch) and stretch > 0):
        raise ConfigError(f"stretch must be a positive number of ADU, got {stretch!r}")
    r, g, b = (images[bands.index(name)] for name in rgb_bands(bands))
    with np.errstate(invalid="ignore", divide="ignore"):  # all-zero images: astropy divides 0 by 0
        return make_lupton_rgb(r, g, b, minimum=0.0, stretch=float(stretch), Q=float(q))


def deblend_figure(
    blend,
    isolated,
    *,
    bands: Sequence[str],
    noise_sigma,
    n_galaxies=None,
    predicted=None,
    centers=None,
    scores=None,
    blendedness=None,
    row_labels: Sequence[str] | None = None,
    panel_size: float = 1.25,
) -> Figure:
    """Blends next to their isolated galaxies (and predictions), as colour composites.

    One row per blend: the blend, then galaxy 1..n alone (the truth). With
    ``predicted``, a second row per blend: the sum of the predicted galaxies,
    then each predicted galaxy, titled with its score. All panels of a blend
    share one stretch (:func:`lupton_stretch` of its noise). The panels are
    laid out as one mosaic image on a single axes (fast for many panels);
    their titles are the axes' texts.

    Parameters
    ----------
    blend : array_like (m, C, H, W)
        Observed scenes, ADU.
    isolated : array_like (m, K, C, H, W)
        True isolated galaxies, ADU.
    bands : sequence of str
        Names of the C bands.
    noise_sigma : array_like (m, C)
        Background noise, ADU per pixel.
    n_galaxies : array_like (m,), optional
        Galaxies per blend (default: slots whose truth is not all zero).
    predicted : array_like (m, K, C, H, W), optional
        Predicted isolated galaxies, ADU.
    centers : array_like (m, K, 2), optional
        (x, y) pixel centres, marked and numbered on the blend.
    scores, blendedness : array_like (m, K), optional
        Per-galaxy primary score (titles of the predictions, ``s=``) and
        blendedness (titles of the truth, ``b=``).
    row_labels : sequence of str, optional
        One label per blend (left of its first row).
    panel_size : float
        Inches per panel.
    """
    blend, isolated, predicted, n_galaxies = _figure_arrays(blend, isolated, predicted, n_galaxies)
    noise_sigma = np.asarray(noise_sigma, dtype=np.float64)
    m = isolated.shape[0]
    mosaic = _Mosaic(n_blends=m, n_cols=1 + max(1, int(n_galaxies.max()) if m else 1),
                     rows_per=2 if predicted is not None else 1, size=blend.shape[-1],
                     labelled=row_labels is not None, panel_size=panel_size)
    for i in range(m):
        stretch = lupton_stretch(noise_sigma[i])
        r0 = mosaic.rows_per * i
        n_i = int(n_galaxies[i])
        mosaic.put(r0, 0, rgb_composite(blend[i], bands=bands, stretch=stretch), "blend")
        if row_labels is not None and row_labels[i]:
            mosaic.label(r0, row_labels[i])
        if centers is not None and n_i:
            mosaic.mark_centres(r0, np.asarray(centers[i], dtype=np.float64)[:n_i])
        for k in range(n_i):
            title = f"true {k + 1}"
            if blendedness is not None and np.isfinite(blendedness[i][k]):
                title += f"  b={blendedness[i][k]:.2f}"
            mosaic.put(r0, k + 1, rgb_composite(isolated[i, k], bands=bands, stretch=stretch), title)
        if predicted is not None:
            total = predicted[i, :n_i].sum(axis=0)
            mosaic.put(r0 + 1, 0, rgb_composite(total, bands=bands, stretch=stretch), "sum of predicted")
            for k in range(n_i):
                title = f"pred {k + 1}"
                if scores is not None and np.isfinite(scores[i][k]):
                    title += f"  s={scores[i][k]:.2f}"
                mosaic.put(r0 + 1, k + 1, rgb_composite(predicted[i, k], bands=bands, stretch=stretch), title)
    return mosaic.finish()


def _figure_arrays(blend, isolated, predicted, n_galaxies):
    """:func:`deblend_figure`'s arrays checked: ``(blend, isolated, predicted or None, n_galaxies)``."""
    blend = np.asarray(blend, dtype=np.float32)
    isolated = np.asarray(isolated, dtype=np.float32)
    if blend.ndim != 4 or isolated.ndim != 5 or isolated.shape[0] != blend.shape[0] \
            or isolated.shape[2:] != blend.shape[1:]:
        raise ConfigError(
            f"blend must be (m, C, H, W) and isolated (m, K, C, H, W) with the same m, C, H, W; "
            f"got {blend.shape} and {isolated.shape}"
        )
    m, k_max = isolated.shape[:2]
    if predicted is not None:
        predicted = np.asarray(predicted, dtype=np.float32)
        if predicted.shape != isolated.shape:
            raise ConfigError(f"predicted must have the shape of isolated {isolated.shape}, got {predicted.shape}")
    if n_galaxies is None:
        n_galaxies = (np.abs(isolated).reshape(m, k_max, -1).max(axis=2) > 0).sum(axis=1)
    return blend, isolated, predicted, np.asarray(n_galaxies, dtype=np.int64)


class _Mosaic:
    """Panels of side ``size`` (mosaic pixels) on one image and one axes, with their titles.

    Gaps between columns, a title band above every row, blends two gaps apart,
    a label column on the left when ``labelled``.
    """

    def __init__(self, *, n_blends: int, n_cols: int, rows_per: int, size: int, labelled: bool,
                 panel_size: float):
        s = self.size = size
        self.rows_per, self.panel_size = rows_per, panel_size
        n_rows = rows_per * n_blends
        gap, title_h = max(2, s // 8), max(6, (s * 3) // 10)
        self.left = max(6, s // 4) if labelled else 0
        self.col_x = [self.left + j * (s + gap) for j in range(n_cols)]
        self.row_y = [i * (s + title_h) + title_h + (i // rows_per) * 2 * gap for i in range(n_rows)]
        self.width = self.col_x[-1] + s
        self.height = max(self.row_y[-1] + s, 1) if n_rows else title_h
        self.canvas = np.full((self.height, self.width, 3), 255, dtype=np.uint8)
        self.fig = Figure(figsize=(panel_size * self.width / s, panel_size * self.height / s))
        FigureCanvasAgg(self.fig)
        self.ax = self.fig.add_axes((0.0, 0.0, 1.0, 1.0))
        self.ax.set_axis_off()
        self.fontsize = 6.5 * panel_size / 1.25

    def put(self, i_row: int, j: int, rgb: np.ndarray, title: str) -> None:
        """Panel ``j`` of mosaic row ``i_row``: an (H, W, 3) image (y up) and its title above it."""
        y0, x0, s = self.row_y[i_row], self.col_x[j], self.size
        self.canvas[y0:y0 + s, x0:x0 + s] = rgb[::-1]  # pixel y runs up in the data, down in the mosaic
        self.ax.text(x0 + s / 2, y0 - 1.5, title, ha="center", va="bottom", fontsize=self.fontsize)

    def label(self, i_row: int, text: str) -> None:
        """A label left of mosaic row ``i_row``."""
        self.ax.text(self.left / 2, self.row_y[i_row] + self.size / 2, text, rotation=90, ha="center",
                     va="center", fontsize=self.fontsize)

    def mark_centres(self, i_row: int, centres: np.ndarray) -> None:
        """Crosses, numbered from 1, at the (x, y) pixel ``centres`` of the first panel of row ``i_row``."""
        xs, ys = self.col_x[0] + centres[:, 0], self.row_y[i_row] + (self.size - 1 - centres[:, 1])
        self.ax.plot(xs, ys, "+", color="cyan", ms=5 * self.panel_size / 1.25, mew=0.8)
        for k, (x, y) in enumerate(zip(xs, ys)):
            self.ax.text(x + 1, y - 1, str(k + 1), color="cyan", fontsize=self.fontsize * 0.9)

    def finish(self) -> Figure:
        """The figure with the mosaic drawn."""
        w, h = self.width, self.height
        self.ax.imshow(self.canvas, origin="upper", interpolation="nearest", extent=(-0.5, w - 0.5, h - 0.5, -0.5))
        self.ax.set_xlim(-0.5, w - 0.5)
        self.ax.set_ylim(h - 0.5, -0.5)
        return self.fig


def gallery_figure(gallery: Gallery, *, max_blends: int | None = None, panel_size: float = 1.25) -> Figure:
    """:func:`deblend_figure` of a :class:`~deblendkit.report.results.Gallery` (truth and predictions)."""
    n = len(gallery) if max_blends is None else min(len(gallery), int(max_blends))
    labels = [f"blend {int(b)}" for b in gallery.blend_index[:n]]
    return deblend_figure(
        gallery.blend[:n], gallery.isolated[:n], bands=gallery.bands,
        noise_sigma=gallery.noise_sigma[:n], n_galaxies=gallery.n_galaxies[:n],
        predicted=gallery.predicted[:n], centers=gallery.centers[:n], scores=gallery.deblend[:n],
        blendedness=gallery.blendedness[:n], row_labels=labels, panel_size=panel_size,
    )


def magnitude_column(table: pd.DataFrame, *, ref_band: str = "r") -> str:
    """Name of the magnitude column of a galaxy table: ``mag_<ref_band>``, else the first ``mag_*``.

    Raises
    ------
    ConfigError
        The table has no ``mag_*`` column (it was not joined with the truth).
    """
    if f"mag_{ref_band}" in table.columns:
        return f"mag_{ref_band}"
    mags = [c for c in table.columns if c.startswith("mag_")]
    if not mags:
        raise ConfigError(
            f"the galaxy table has no magnitude column (mag_<band>); columns: {list(table.columns)}"
        )
    return mags[0]


def _default_bins(values: np.ndarray, by: str) -> np.ndarray:
    if by == "blendedness":
        return np.asarray(BLENDEDNESS_BINS)
    v = values[np.isfinite(values)]
    if v.size == 0:
        return np.array([0.0, 1.0])
    lo, hi = math.floor(v.min() * 2) / 2, math.ceil(v.max() * 2) / 2  # half-magnitude edges
    hi = max(hi, lo + 0.5)
    return np.arange(lo, hi + 0.25, 0.5)


def binned_score(tables, *, by: str, score: str = "deblend", bins=None) -> pd.DataFrame:
    """Mean score per bin of a truth quantity, for each table and over tables.

    Parameters
    ----------
    tables : DataFrame or sequence of DataFrame
        Per-galaxy tables (:func:`deblendkit.scoring.metrics.galaxy_table` joined with
        the truth), e.g. one per CV fold.
    by : str
        Column to bin on (``"blendedness"``, ``"mag_r"``, ...).
    score : str
        Per-galaxy column averaged (default the primary score).
    bins : array_like, optional
        Bin edges (values outside are left out; the last bin includes its
        right edge). Default: :data:`BLENDEDNESS_BINS` for blendedness, else
        half-magnitude-wide bins over the data.

    Returns
    -------
    DataFrame
        One row per bin: ``lo``, ``hi``, ``x`` (median of ``by`` in the bin,
        all tables pooled), ``n`` (galaxies, pooled), ``mean`` (mean over tables
        of the per-table mean; NaN if no galaxy), ``spread`` (standard
        deviation over the tables that have galaxies in the bin, ddof=1; NaN
        with fewer than two).
    """
    if isinstance(tables, pd.DataFrame):
        tables = [tables]
    tables = list(tables)
    if not tables:
        raise ConfigError("tables must hold at least one galaxy table, got none")
    for t in tables:
        for col in (by, score):
            if col not in t.columns:
                raise ConfigError(f"galaxy table has no column {col!r}; columns: {list(t.columns)}")
    pooled = np.concatenate([t[by].to_numpy(dtype=np.float64) for t in tables])
    edges = _default_bins(pooled, by) if bins is None else np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ConfigError(f"bins must be at least two increasing edges, got {bins!r}")
    nb = edges.size - 1
    per_table = np.full((len(tables), nb), np.nan)
    for j, t in enumerate(tables):
        x = t[by].to_numpy(dtype=np.float64)
        s = t[score].to_numpy(dtype=np.float64)
        ok = np.isfinite(x) & np.isfinite(s)
        idx = np.digitize(x[ok], edges[1:-1], right=False)
        inside = (x[ok] >= edges[0]) & (x[ok] <= edges[-1])
        for b in range(nb):
            sel = inside & (idx == b)
            if sel.any():
                per_table[j, b] = s[ok][sel].mean()
    pooled_idx = np.digitize(pooled, edges[1:-1])
    pooled_inside = np.isfinite(pooled) & (pooled >= edges[0]) & (pooled <= edges[-1])
    rows = []
    for b in range(nb):
        sel = pooled_inside & (pooled_idx == b)
        vals = per_table[:, b][np.isfinite(per_table[:, b])]
        rows.append({
            "lo": edges[b], "hi": edges[b + 1],
            "x": float(np.median(pooled[sel])) if sel.any() else math.nan,
            "n": int(sel.sum()),
            "mean": float(vals.mean()) if vals.size else math.nan,
            "spread": float(vals.std(ddof=1)) if vals.size >= 2 else math.nan,
        })
    return pd.DataFrame(rows)


def score_vs_figure(
    results: Mapping[str, Sequence[pd.DataFrame]] | Sequence[pd.DataFrame] | pd.DataFrame,
    *,
    by: Sequence[str] = ("blendedness", "magnitude"),
    score: str = "deblend",
    ref_band: str = "r",
    show_points: bool = True,
    size: tuple[float, float] = (4.2, 3.0),
) -> Figure:
    """Score versus blendedness and magnitude, one panel per quantity.

    Parameters
    ----------
    results : mapping name -> tables, or tables
        Per-galaxy tables (one per CV fold) of one or several submissions;
        each submission is a line of binned means with error bars (spread over
        tables), over its galaxies as faint points (first table only).
    by : sequence of str
        Quantities: ``"blendedness"``, ``"magnitude"`` (``mag_<ref_band>``) or any column.
    score : str
        Per-galaxy score column.
    ref_band : str
        Band of the magnitude.
    show_points : bool
        Draw the individual galaxies.
    size : (float, float)
        Inches per panel.
    """
    if isinstance(results, pd.DataFrame):
        results = {"": [results]}
    elif not isinstance(results, Mapping):
        results = {"": list(results)}
    by = list(by)
    fig = Figure(figsize=(size[0] * len(by), size[1]), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(by), squeeze=False)[0]
    colours = [f"C{i}" for i in range(10)]
    for ax, what in zip(axes, by):
        for i, (name, tables) in enumerate(results.items()):
            tables = [tables] if isinstance(tables, pd.DataFrame) else list(tables)
            if not tables:
                continue
            col = magnitude_column(tables[0], ref_band=ref_band) if what == "magnitude" else what
            colour = colours[i % len(colours)]
            if show_points:
                t = tables[0]
                ax.plot(t[col], t[score], ".", color=colour, alpha=0.25, ms=3, rasterized=True)
            b = binned_score(tables, by=col, score=score)
            b = b[np.isfinite(b["mean"])]
            yerr = np.where(np.isfinite(b["spread"]), b["spread"], 0.0)
            ax.errorbar(b["x"], b["mean"], yerr=yerr, fmt="o-", color=colour, ms=4, capsize=2,
                        label=name or None)
            ax.set_xlabel(f"{col} (AB mag)" if col.startswith("mag_") else col)
        if what == "blendedness":
            ax.set_xscale("symlog", linthresh=0.01)
            ax.set_xlim(0, 1)
        ax.set_ylabel(score)
        if score == "deblend":
            ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        if any(results.keys()):
            ax.legend(fontsize=7)
    return fig


def figure_png(fig: Figure, *, dpi: int = 96) -> bytes:
    """The figure as PNG bytes (Agg)."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` URI of PNG bytes (checked by signature)."""
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ConfigError("png must be PNG bytes (signature \\x89PNG...), got something else")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
