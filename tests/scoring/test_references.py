"""Reference predictions and their scores (deblendkit.scoring.references, deblend-score --references)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deblendkit.cli.score import main
from deblendkit.errors import ConfigError, DataFileError
from deblendkit.scoring.references import (
    REFERENCES,
    known_morphology,
    oracle_apportioning,
    reference_scores,
)
from deblendkit.scoring.table import galaxy_table, summarize
from deblendkit.storage import DatasetWriter, truth_dtype

BANDS = ("g", "r", "i")


def blends_file(path: Path, n: int, *, noise: float, k=3, stamp=32, seed=0) -> np.ndarray:
    """A contract-valid file of overlapping Gaussian galaxies; ``blend = sum of isolated + N(0, noise)``."""
    rng = np.random.default_rng(seed)
    c = len(BANDS)
    n_gal = rng.integers(2, k + 1, size=n).astype(np.int32)
    filled = np.arange(k)[None, :] < n_gal[:, None]
    yy, xx = np.mgrid[0:stamp, 0:stamp]
    centers = rng.uniform(11, stamp - 11, size=(n, k, 2)).astype(np.float32)
    centers[~filled] = np.nan
    r2 = (xx - np.nan_to_num(centers[..., 0])[..., None, None]) ** 2 + (
        yy - np.nan_to_num(centers[..., 1])[..., None, None]) ** 2
    width = rng.uniform(4.0, 12.0, (n, k))[..., None, None]
    iso = (1000.0 * np.exp(-r2 / width))[:, :, None] * rng.uniform(0.5, 2, (n, k, c))[..., None, None]
    iso[~filled] = 0.0
    iso = iso.astype(np.float32)
    blend = iso.sum(1) + (rng.normal(0, noise, (n, c, stamp, stamp)) if noise else 0.0)
    psf = np.zeros((n, c, 9, 9), np.float32)
    psf[..., 4, 4] = 1.0
    bi, si = np.nonzero(filled)
    truth = np.zeros(bi.size, truth_dtype(BANDS))
    truth["blend_index"], truth["slot"], truth["labelled"] = bi, si, 1
    with DatasetWriter(path, n_blends=n, bands=BANDS, max_galaxies=k, stamp_size=stamp, psf_size=9,
                       attrs={"pixel_scale": 0.2}) as w:
        w.write(0, blend=blend.astype(np.float32), isolated=iso, psf=psf,
                noise_sigma=np.full((n, c), max(noise, 1e-3), np.float32), centers=centers,
                n_galaxies=n_gal, truth_rows=truth)
    return iso


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("refs")
    blends_file(root / "noiseless.h5", 12, noise=0.0)
    blends_file(root / "noisy.h5", 12, noise=30.0)
    return root


def test_zeros_score_exactly_zero(files):
    refs = reference_scores(files / "noisy.h5")
    zeros = refs["zeros"]
    assert zeros.score == 0.0 and zeros.scores["deblend"] == 0.0
    assert zeros.scores["cosine"] == 0.0 and zeros.scores["flux_catastrophic_r"] == 1.0
    assert zeros.scores["ssim"] < 0.04  # the footprint SSIM does not flatter an empty prediction


def test_noiseless_blends_oracle_and_known_morphology_are_exact(files):
    refs = reference_scores(files / "noiseless.h5")
    assert [r.name for r in refs.rows] == list(REFERENCES) == ["zeros", "oracle apportioning", "known morphology"]
    for name in ("oracle apportioning", "known morphology"):
        s = refs[name].scores
        assert s["deblend"] == pytest.approx(1.0, abs=1e-5), name
        assert s["cosine"] == pytest.approx(1.0, abs=1e-6) and s["ssim"] == pytest.approx(1.0, abs=1e-5)
        assert s["flux_scatter_r"] == pytest.approx(0.0, abs=1e-5) and s["flux_catastrophic_r"] == 0.0
        assert s["de_median"] == pytest.approx(0.0, abs=1e-4)


def test_noisy_blends_known_morphology_beats_oracle_apportioning(files):
    refs = reference_scores(files / "noisy.h5")
    oracle, known = refs["oracle apportioning"].score, refs["known morphology"].score
    assert 0.0 < oracle < known < 1.0
    frame = refs.frame()
    assert list(frame.index) == list(REFERENCES)
    assert list(frame.columns)[:4] == ["deblend", "flux_scatter_r", "abs_flux_bias_r", "flux_catastrophic_r"]
    assert frame.loc["known morphology", "deblend"] == known


def test_the_predictions_by_hand():
    """Two galaxies, one band: the oracle splits each pixel by the true ratio; the fit scales each image."""
    rng = np.random.default_rng(4)
    iso = rng.uniform(0.0, 10.0, (1, 2, 1, 6, 6))
    blend = 2.0 * iso[:, 0] + 0.5 * iso[:, 1]  # true images scaled per galaxy: the fit recovers 2 and 0.5
    np.testing.assert_allclose(known_morphology(blend, iso)[0, 0], 2.0 * iso[0, 0], rtol=1e-5)
    np.testing.assert_allclose(known_morphology(blend, iso)[0, 1], 0.5 * iso[0, 1], rtol=1e-5)
    oracle = oracle_apportioning(blend, iso)
    np.testing.assert_allclose(oracle[0, 0], iso[0, 0] / iso[0].sum(0) * blend[0], rtol=1e-5)
    np.testing.assert_allclose(oracle.sum(1), blend, rtol=1e-5)  # flux is conserved pixel by pixel


def test_max_blends_and_same_scores_as_galaxy_table(files):
    iso = blends_file(files / "again.h5", 12, noise=30.0)
    refs = reference_scores(files / "again.h5", max_blends=5, batch_size=2)
    assert refs.n_blends == 5 and refs["zeros"].table["blend_index"].max() <= 4
    table = galaxy_table(iso[:5], np.zeros_like(iso[:5]), bands=BANDS)
    assert refs["zeros"].summary == pytest.approx(summarize(table, bands=BANDS), nan_ok=True)
    with pytest.raises(ConfigError, match="max_blends must be an integer >= 1, got 0"):
        reference_scores(files / "again.h5", max_blends=0)
    with pytest.raises(DataFileError):
        reference_scores(files / "missing.h5")


def test_cli_references(files, tmp_path, capsys):
    out = tmp_path / "refs.csv"
    assert main(["--references", str(files / "noisy.h5"), "--max-blends", "6", "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"references on {files / 'noisy.h5'}: 6 blends,")
    assert "oracle apportioning" in text and "known morphology" in text
    assert out.read_text().startswith("reference,deblend,")
    assert main(["--references", str(files / "missing.h5")]) == 2
    assert capsys.readouterr().err.startswith("deblendkit.cli.score: error: ")
    with pytest.raises(SystemExit):
        main(["--submission", "starting_kit"])  # --data is required with --submission
    assert "--data is required with --submission" in capsys.readouterr().err


def test_python_dash_m_runs_the_command(files):
    out = subprocess.run([sys.executable, "-m", "deblendkit.cli.score", "--references", str(files / "noisy.h5"),
                          "--max-blends", "3", "--metrics", "deblend,flux"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "known morphology" in out.stdout and "flux_scatter_r" in out.stdout
