"""Do the simulated blends look like the sky? The checks of ``python -m deblendkit.cli.validate``.

Computes, for a data file and/or a freshly simulated big field, the statistics a
survey scientist checks first, each next to its published value with the
tolerance and PASS / FAIL (or INFO where the comparison does not apply or the
sample is too small to judge), and makes the plots (:func:`make_plots`). The
command line (:mod:`deblendkit.cli.validate`) prints the report and exits 0
when nothing fails, 1 when a line fails, 2 on an error.

Published values
----------------
* Cumulative counts ``N(<i) = 46 x 10^(0.31 (i - 25))`` per arcmin^2
  (LSST Science Book, arXiv:0912.0201, eq. 3.7): slope ``d log10 N / d i``
  0.31 +- 0.05, fitted over 21 < i < 25.
* Density at i < 25.3: 54 per arcmin^2 (LSST CatSim) +- 20% (eq. 3.7 gives 57.0).
* Sizes: median disk scale length ``ln(r_d / arcsec) = -1.145 - 0.269 (i - 23)``
  (Miller et al. 2013, arXiv:1210.8201, eq. B1); the statistic is the median
  *disk* half-light radius (``hlr_disk = 1.678 r_d``, the quantity the relation
  describes, before PSF) in 0.5-mag bins over 22 < i < 25, +- 20% of the
  relation at the bin's median magnitude.
* Blend fraction: 62% +- 10% of galaxies receive >= 1% of the flux in their
  own pixels from neighbours (Sanchez et al. 2021, arXiv:2103.02078); measured
  on galaxies brighter than the label limit (i < 25.3), r band, with the
  footprint defined in :mod:`deblendkit.sim.sample` (``contamination`` column).

What each source can tell
-------------------------
* **Big field** (``--sky``): the reference measurement, no selection, no stamp
  edges (:func:`deblendkit.sim.sky.simulate_sky`, 0.05 deg^2 by default).
* **Field-mode file**: galaxies centred in the stamps. Scenes were kept only
  with >= ``field_min_labelled`` labelled galaxies, so the density at
  i < 25.3 is corrected with the maximum-likelihood mean of a Poisson
  truncated below that number (the raw value is shown too); the count slope and
  sizes are unaffected by the selection. The blend fraction is that of the
  kept scenes, footprints cut by the stamp edges: reported, compared, and
  expected above the field's (denser scenes were kept).
* **Blend-mode file**: the counts' slope (shape of the magnitude distribution)
  and the sizes apply; the density and the blend fraction are imposed by the
  mode's placement, shown as INFO.
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from dataclasses import field as dc_field

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.optimize import brentq
from scipy.stats import poisson

from deblendkit.config import SimConfig
from deblendkit.errors import ConfigError, DataFileError
from deblendkit.sim.field_mode import draws_needed, mean_count
from deblendkit.storage import read_dataset

__all__ = [
    "COUNT_SLOPE", "COUNT_SLOPE_TOL", "GOLD_DENSITY", "GOLD_DENSITY_TOL", "GOLD_LIMIT",
    "SIZE_TOL", "BLEND_FRACTION", "BLEND_FRACTION_TOL", "miller_hlr", "published_density",
    "Check", "Sample", "judge", "count_slope", "truncated_poisson_mean", "median_in_bins",
    "blend_fraction", "sample_from_file", "sample_from_sky", "run_checks", "format_report",
    "counts_figure", "size_figure", "blendedness_figure", "blend_fraction_figure", "make_plots",
]

log = logging.getLogger(__name__)

#: LSST Science Book eq. 3.7: d log10 N(<i) / d i, and the tolerance of the check.
COUNT_SLOPE, COUNT_SLOPE_TOL = 0.31, 0.05
#: Magnitude range of the slope fit.
SLOPE_RANGE = (21.0, 25.0)
#: LSST CatSim density at i < 25.3 (gold sample), per arcmin^2, and relative tolerance.
GOLD_DENSITY, GOLD_DENSITY_TOL, GOLD_LIMIT = 54.0, 0.20, 25.3
#: Miller et al. 2013 eq. B1 and the exponential disk's hlr / r_d.
MILLER_ZERO, MILLER_SLOPE, MILLER_PIVOT, HLR_PER_RD = -1.145, -0.269, 23.0, 1.678
#: Size bins (i) and relative tolerance of the median disk hlr.
SIZE_BINS, SIZE_TOL = (22.0, 22.5, 23.0, 23.5, 24.0, 24.5, 25.0), 0.20
#: Fewer galaxies in a size bin than this: the line is INFO (no verdict).
MIN_PER_BIN = 10
#: Sanchez et al. 2021: fraction of blended galaxies at full LSST depth, and tolerance.
BLEND_FRACTION, BLEND_FRACTION_TOL = 0.62, 0.10
#: Contamination at and above which a galaxy is blended (Sanchez et al. 2021).
BLENDED_AT = 0.01


def published_density(mag) -> np.ndarray:
    """LSST Science Book eq. 3.7: galaxies per arcmin^2 brighter than ``mag`` (i band)."""
    return 46.0 * 10.0 ** (COUNT_SLOPE * (np.asarray(mag, float) - 25.0))


def miller_hlr(mag) -> np.ndarray:
    """Median disk half-light radius (arcsec) at i = ``mag``: 1.678 x Miller et al. 2013 r_d."""
    return HLR_PER_RD * np.exp(MILLER_ZERO + MILLER_SLOPE * (np.asarray(mag, float) - MILLER_PIVOT))


# --------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------
def count_slope(mag, lo: float = SLOPE_RANGE[0], hi: float = SLOPE_RANGE[1], step: float = 0.25) -> float:
    """Least-squares slope of ``log10 N(<m)`` on a grid ``lo, lo + step, ..., hi``.

    The slope does not depend on the area, only on the shape of the magnitude
    distribution; NaN when a grid point has no galaxy brighter than it.
    """
    mag = np.sort(np.asarray(mag, float)[np.isfinite(mag)])
    grid = np.arange(lo, hi + step / 2, step)
    n = np.searchsorted(mag, grid, side="left")
    if np.any(n == 0):
        return math.nan
    return float(np.polyfit(grid, np.log10(n), 1)[0])


def truncated_poisson_mean(counts, minimum: int) -> float:
    """Maximum-likelihood Poisson mean from counts observed only when ``>= minimum``.

    Solves ``mean(counts) = mu P(N >= minimum - 1) / P(N >= minimum)`` (the mean
    of a Poisson(mu) truncated below ``minimum``). ``minimum <= 0``: the plain mean.
    """
    counts = np.asarray(counts, float)
    target = float(counts.mean())
    if minimum <= 0:
        return target
    if np.any(counts < minimum):
        raise ConfigError(f"counts below the truncation {minimum} were given: {counts[counts < minimum][:5]}")

    def excess(mu: float) -> float:
        return mu * poisson.sf(minimum - 2, mu) / poisson.sf(minimum - 1, mu) - target

    if target <= minimum:  # all counts at the truncation: the MLE is mu -> 0
        return 0.0
    return float(brentq(excess, 1e-9, max(10.0, 10.0 * target)))


def median_in_bins(mag, value, edges) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin of ``mag``: (median magnitude, median value, count); NaN in empty bins."""
    mag, value = np.asarray(mag, float), np.asarray(value, float)
    med_m, med_v, cnt = [], [], []
    for a, b in zip(edges[:-1], edges[1:]):
        sel = (mag >= a) & (mag < b) & np.isfinite(value)
        cnt.append(int(sel.sum()))
        med_m.append(float(np.median(mag[sel])) if sel.any() else math.nan)
        med_v.append(float(np.median(value[sel])) if sel.any() else math.nan)
    return np.array(med_m), np.array(med_v), np.array(cnt)


def blend_fraction(contamination) -> float:
    """Fraction of the finite ``contamination`` values >= 1% (Sanchez et al. 2021)."""
    c = np.asarray(contamination, float)
    c = c[np.isfinite(c)]
    return float(np.mean(c >= BLENDED_AT)) if c.size else math.nan


# --------------------------------------------------------------------------
# Samples
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    """The galaxies a report is made of.

    Attributes
    ----------
    name : str
        Short name (file stem or ``"sky"``), used for the plot file names.
    description : str
    mode : {"field", "blend", "sky"}
    mag : (n,) reference-band magnitudes of the galaxies centred in the area
    hlr_disk : (n,) arcsec
    area_arcmin2 : float or None
        Area the galaxies were counted on (None: not a sky density, blend mode).
    labelled_mag : (m,) magnitudes of the galaxies whose blending is measured
    contamination : (m,) their footprint contamination (NaN where not measured)
    blendedness : (m,) their ``blendedness`` column, or None
    scene_counts : (n_scenes,) galaxies brighter than the label limit per stamp, or None
    min_labelled : int, the selection of field-mode scenes (0: none)
    stamp_area : float or None, arcmin^2
    rejected : float or None, fraction of scene draws rejected by the selection
    rejected_expected : float or None, the Poisson expectation of that fraction
    notes : list of str
    """

    name: str
    description: str
    mode: str
    mag: np.ndarray
    hlr_disk: np.ndarray
    area_arcmin2: float | None
    labelled_mag: np.ndarray
    contamination: np.ndarray
    blendedness: np.ndarray | None = None
    scene_counts: np.ndarray | None = None
    min_labelled: int = 0
    stamp_area: float | None = None
    rejected: float | None = None
    rejected_expected: float | None = None
    notes: list = dc_field(default_factory=list)


def sample_from_sky(sky) -> Sample:
    """A :class:`Sample` of a :class:`deblendkit.sim.sky.Sky`: galaxies centred in its inner area."""
    m = sky.inner & (sky.hlr_disk > 0)  # galaxies: only stars have zero radii
    lab = sky.inner & sky.bright
    c = sky.config
    return Sample(
        name="sky",
        description=(f"simulated field of {sky.area_arcmin2:.1f} arcmin^2, {c.survey} {sky.band} band, "
                     f"i < {c.field_faint_limit:g} rendered, measured i < {c.label_limit:g}"),
        mode="sky", mag=sky.mag[m], hlr_disk=sky.hlr_disk[m], area_arcmin2=sky.area_arcmin2,
        labelled_mag=sky.mag[lab], contamination=sky.contamination[lab],
    )


def _file_config(attrs: dict) -> dict:
    raw = attrs.get("config", "{}")
    try:
        cfg = json.loads(raw) if isinstance(raw, str) else dict(raw)
    except (json.JSONDecodeError, TypeError, ValueError):
        cfg = {}
    return cfg if isinstance(cfg, dict) else {}


def sample_from_file(path: str | os.PathLike) -> Sample:
    """A :class:`Sample` of a data file's truth table (see the module docstring).

    Raises
    ------
    DataFileError
        The file is not a readable data file, or its truth table has no
        magnitude in the reference band.
    """
    ds = read_dataset(path, in_memory=False)
    try:
        n_blends, size = len(ds), ds.stamp_size
        truth, attrs, bands = ds.truth, ds.attrs, ds.bands
    finally:
        ds.close()
    cfg = _file_config(attrs)
    mode = cfg.get("mode", "blend")
    ref = cfg.get("reference_band") or ("i" if "i" in bands else bands[-1])
    col = f"mag_{ref}"
    if col not in truth.columns:
        raise DataFileError(f"{path}: its truth table has no {col!r} column (reference band {ref!r})")
    x, y = truth["x"].to_numpy(), truth["y"].to_numpy()
    inside = (x >= -0.5) & (x < size - 0.5) & (y >= -0.5) & (y < size - 0.5)
    if "kind" in truth.columns:  # counts and sizes are the galaxies' (stars: morphology checks)
        inside &= truth["kind"].to_numpy() == 0
    mag = truth[col].to_numpy(float)
    labelled = truth["labelled"].to_numpy() != 0
    scale = float(attrs["pixel_scale"])
    stamp_area = (size * scale) ** 2 / 3600.0
    name = os.path.splitext(os.path.basename(str(path)))[0]
    notes: list[str] = []
    contam = truth["contamination"].to_numpy(float) if "contamination" in truth.columns else np.full(len(truth), np.nan)
    common = dict(
        name=name, mag=mag[inside], hlr_disk=truth["hlr_disk"].to_numpy(float)[inside],
        labelled_mag=mag[labelled], contamination=contam[labelled],
        blendedness=truth["blendedness"].to_numpy(float)[labelled], stamp_area=stamp_area,
    )
    if mode != "field":
        return Sample(description=f"{path}: {n_blends} blends, blend mode", mode="blend",
                      area_arcmin2=None, notes=notes, **common)
    limit = float(cfg.get("label_limit", GOLD_LIMIT))
    min_lab = int(cfg.get("field_min_labelled", 2))
    index = truth["blend_index"].to_numpy()
    bright = inside & (mag < limit)
    counts = np.bincount(index[bright], minlength=n_blends)
    rejected = expected = None
    try:
        config = SimConfig.from_dict(cfg)
    except ConfigError as exc:
        notes.append(f"the file's config could not be rebuilt ({exc}); rejected fraction not replayed")
    else:
        first = int(attrs.get("first_index", 0))
        draws = sum(draws_needed(config, seed=int(attrs["seed"]), split=str(attrs["split"]), index=first + i)
                    for i in range(n_blends))
        rejected = 1.0 - n_blends / draws
        mu = mean_count(config, stamp_area, faint=limit)
        expected = float(poisson.cdf(min_lab - 1, mu))
    return Sample(
        description=f"{path}: {n_blends} blends, field mode, stamps of {stamp_area:.4f} arcmin^2",
        mode="field", area_arcmin2=n_blends * stamp_area, scene_counts=counts,
        min_labelled=min_lab, rejected=rejected, rejected_expected=expected, notes=notes, **common,
    )


# --------------------------------------------------------------------------
# Checks and report
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """One line of the report: ``status`` is "PASS", "FAIL" or "INFO"."""

    name: str
    value: float
    reference: float
    tolerance: str
    status: str
    note: str = ""


def judge(ok: bool | None) -> str:
    """The status of a check: "INFO" for None (no verdict), else "PASS" or "FAIL"."""
    return "INFO" if ok is None else ("PASS" if ok else "FAIL")


def run_checks(sample: Sample) -> list[Check]:
    """The statistics of ``sample`` against the published values."""
    out: list[Check] = []
    slope = count_slope(sample.mag)
    n_slope = int(np.sum(sample.mag < SLOPE_RANGE[1]))
    out.append(Check("count slope dlog10N/di, 21<i<25", slope, COUNT_SLOPE, f"+-{COUNT_SLOPE_TOL}",
                     judge(bool(abs(slope - COUNT_SLOPE) <= COUNT_SLOPE_TOL) if math.isfinite(slope) else None),
                     f"{n_slope} galaxies" if math.isfinite(slope) else
                     f"too few galaxies: none brighter than i={SLOPE_RANGE[0]:g}"))

    n_gold = int(np.sum(sample.mag < GOLD_LIMIT))
    if sample.area_arcmin2 is None:
        out.append(Check(f"density i<{GOLD_LIMIT} /arcmin^2", math.nan, GOLD_DENSITY,
                         f"+-{GOLD_DENSITY_TOL:.0%}", "INFO", "blend mode: galaxies per scene are imposed"))
    else:
        raw = n_gold / sample.area_arcmin2
        value, note = raw, f"{n_gold} galaxies on {sample.area_arcmin2:.1f} arcmin^2"
        if sample.scene_counts is not None and sample.min_labelled > 0 and sample.stamp_area:
            mu = truncated_poisson_mean(sample.scene_counts, sample.min_labelled)
            value = mu / sample.stamp_area
            note = (f"corrected for the >= {sample.min_labelled} selection (truncated-Poisson MLE); "
                    f"raw {raw:.1f}")
        ok = abs(value / GOLD_DENSITY - 1) <= GOLD_DENSITY_TOL
        out.append(Check(f"density i<{GOLD_LIMIT} /arcmin^2", value, GOLD_DENSITY,
                         f"+-{GOLD_DENSITY_TOL:.0%}", judge(bool(ok)), note))

    med_m, med_h, cnt = median_in_bins(sample.mag, sample.hlr_disk, SIZE_BINS)
    for a, b, m, h, k in zip(SIZE_BINS[:-1], SIZE_BINS[1:], med_m, med_h, cnt):
        ref = float(miller_hlr(m)) if math.isfinite(m) else float(miller_hlr((a + b) / 2))
        ok = bool(abs(h / ref - 1) <= SIZE_TOL) if k >= MIN_PER_BIN else None
        out.append(Check(f"median disk hlr {a:g}<i<{b:g} arcsec", h, ref, f"+-{SIZE_TOL:.0%}", judge(ok),
                         f"{k} galaxies, Miller at i={m:.2f}" if k >= MIN_PER_BIN else
                         f"too few galaxies ({k} < {MIN_PER_BIN})"))

    frac = blend_fraction(sample.contamination)
    n_meas = int(np.isfinite(sample.contamination).sum())
    if sample.mode == "sky":
        status, note = judge(abs(frac - BLEND_FRACTION) <= BLEND_FRACTION_TOL), f"{n_meas} galaxies"
    elif sample.mode == "field":
        status = judge(bool(abs(frac - BLEND_FRACTION) <= BLEND_FRACTION_TOL))
        note = f"{n_meas} labelled galaxies, kept scenes (>= {sample.min_labelled} labelled), stamp-cut footprints"
    else:
        status, note = "INFO", f"{n_meas} galaxies; blend mode imposes its overlaps"
    out.append(Check("blend fraction (>=1% flux from others)", frac, BLEND_FRACTION,
                     f"+-{BLEND_FRACTION_TOL:.2f}", status, note))
    if sample.rejected is not None:
        out.append(Check(f"scene draws rejected (< {sample.min_labelled} labelled)", sample.rejected,
                         sample.rejected_expected if sample.rejected_expected is not None else math.nan,
                         "-", "INFO", "reference = Poisson expectation of the config"))
    return out


def format_report(sample: Sample, checks: list[Check]) -> str:
    """The report of one sample as text (one line per check)."""
    lines = [f"== {sample.description}"]
    lines += [f"   note: {n}" for n in sample.notes]
    head = f"{'statistic':<50} {'value':>9} {'published':>10} {'tolerance':>10}  status  note"
    lines += [head, "-" * len(head)]
    for c in checks:
        lines.append(f"{c.name:<50} {c.value:>9.3f} {c.reference:>10.3f} {c.tolerance:>10}  {c.status:<6}  {c.note}")
    n_fail = sum(c.status == "FAIL" for c in checks)
    lines.append(f"{sum(c.status == 'PASS' for c in checks)} PASS, {n_fail} FAIL, "
                 f"{sum(c.status == 'INFO' for c in checks)} INFO")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------
def _save(fig: Figure, outdir: str | os.PathLike, name: str) -> str:
    """Write ``fig`` as ``<outdir>/<name>.png`` (110 dpi); returns the path."""
    path = os.path.join(str(outdir), f"{name}.png")
    fig.tight_layout()
    FigureCanvasAgg(fig)
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise DataFileError(f"cannot write plot {path}: {exc.strerror or exc}") from None
    return path


def counts_figure(sample: Sample) -> Figure:
    """Cumulative counts ``N(<i)`` of ``sample`` against eq. 3.7 and the CatSim density.

    Blend mode (no area): the shape only, normalised to eq. 3.7 at i = 25.
    """
    grid = np.arange(18.0, 27.01, 0.1)
    mag = np.sort(sample.mag[np.isfinite(sample.mag)])
    n = np.searchsorted(mag, grid)
    fig = Figure(figsize=(5.5, 4))
    ax = fig.subplots()
    if sample.area_arcmin2:
        dens, label = n / sample.area_arcmin2, "this sample"
    else:
        ref = max(int(np.searchsorted(mag, 25.0)), 1)
        dens, label = n * float(published_density(25.0)) / ref, "this sample (normalised at i=25)"
    ok = n > 0
    ax.semilogy(grid[ok], dens[ok], "o", ms=3, label=label)
    ax.semilogy(grid, published_density(grid), "-", label="LSST Science Book eq. 3.7")
    ax.errorbar([GOLD_LIMIT], [GOLD_DENSITY], yerr=[[GOLD_DENSITY * GOLD_DENSITY_TOL]] * 2, fmt="s",
                color="k", label="CatSim, i<25.3 (+-20%)")
    ax.set(xlabel="i (AB)", ylabel="N(<i) per arcmin$^2$", title="cumulative counts")
    ax.legend(fontsize=8)
    return fig


def size_figure(sample: Sample) -> Figure:
    """Disk half-light radius (arcsec) versus i: galaxies, medians in 0.5-mag bins, Miller et al. 2013."""
    fig = Figure(figsize=(5.5, 4))
    ax = fig.subplots()
    rng = np.random.default_rng(0)
    pick = rng.permutation(len(sample.mag))[:4000]
    ax.semilogy(sample.mag[pick], sample.hlr_disk[pick], ".", ms=1.5, alpha=0.4, label="galaxies")
    med_m, med_h, cnt = median_in_bins(sample.mag, sample.hlr_disk, np.arange(19.0, 27.01, 0.5))
    ax.semilogy(med_m[cnt >= 10], med_h[cnt >= 10], "o", color="C1", label="median in 0.5-mag bins")
    mm = np.linspace(19, 27, 50)
    ax.semilogy(mm, miller_hlr(mm), "k-", label="Miller et al. 2013 (1.678 r$_d$)")
    ax.fill_between(mm, miller_hlr(mm) * (1 - SIZE_TOL), miller_hlr(mm) * (1 + SIZE_TOL), color="k", alpha=0.1)
    ax.set(xlabel="i (AB)", ylabel="disk half-light radius (arcsec)", title="size-magnitude")
    ax.legend(fontsize=8)
    return fig


def blendedness_figure(sample: Sample) -> Figure:
    """Histograms of the footprint contamination (log10) and, when known, the blendedness."""
    axes = Figure(figsize=(9, 3.8)).subplots(1, 2 if sample.blendedness is not None else 1, squeeze=False)
    c = sample.contamination[np.isfinite(sample.contamination)]
    axes[0, 0].hist(np.log10(np.clip(c, 1e-5, 1)), bins=np.linspace(-5, 0, 41))
    axes[0, 0].axvline(np.log10(BLENDED_AT), color="k", ls="--", label="1%: blended (Sanchez+21)")
    axes[0, 0].set(xlabel="log10 contamination (footprint, r band)", ylabel="galaxies",
                   title=f"blended: {blend_fraction(c):.0%} (published 62%)")
    axes[0, 0].legend(fontsize=8)
    if sample.blendedness is not None:
        b = sample.blendedness[np.isfinite(sample.blendedness)]
        axes[0, 1].hist(b, bins=np.linspace(0, 1, 41))
        axes[0, 1].set(xlabel="blendedness 1 - <own,own>/<own,all>", ylabel="galaxies", title="blendedness")
    return axes[0, 0].figure


def blend_fraction_figure(sample: Sample) -> Figure:
    """Fraction of blended galaxies per 0.5-mag bin (bins of >= 5 galaxies) against Sanchez et al. 2021."""
    fig = Figure(figsize=(5.5, 4))
    ax = fig.subplots()
    edges = np.arange(20.0, 25.31, 0.5)
    lm, cc = sample.labelled_mag, sample.contamination
    fr, mid = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        sel = (lm >= a) & (lm < b) & np.isfinite(cc)
        if sel.sum() >= 5:
            fr.append(np.mean(cc[sel] >= BLENDED_AT))
            mid.append((a + b) / 2)
    ax.plot(mid, fr, "o-", label="this sample")
    ax.axhline(BLEND_FRACTION, color="k", label="Sanchez et al. 2021 (all galaxies)")
    ax.axhspan(BLEND_FRACTION - BLEND_FRACTION_TOL, BLEND_FRACTION + BLEND_FRACTION_TOL, color="k", alpha=0.1)
    ax.set(xlabel="i (AB)", ylabel="fraction blended", ylim=(0, 1), title="blend fraction vs magnitude")
    ax.legend(fontsize=8)
    return fig


def make_plots(sample: Sample, outdir: str | os.PathLike) -> list[str]:
    """Write ``<name>_counts.png``, ``<name>_size_magnitude.png``, ``<name>_blendedness.png``
    and ``<name>_blend_fraction.png`` into ``outdir``; returns their paths.

    Raises
    ------
    DataFileError
        ``outdir`` cannot be created or a plot cannot be written.
    """
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as exc:
        raise DataFileError(f"cannot create plot directory {str(outdir)!r}: {exc.strerror}") from None
    figures = (("counts", counts_figure), ("size_magnitude", size_figure), ("blendedness", blendedness_figure),
               ("blend_fraction", blend_fraction_figure))
    return [_save(make(sample), outdir, f"{sample.name}_{what}") for what, make in figures]
