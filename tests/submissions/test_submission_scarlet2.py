"""The scarlet2 wrapper: contract, physics of its fit, and its missing-dependency message.

scarlet2 and JAX come from ``requirements-scarlet2.txt``; ``./run_tests.sh`` (and
so CI) installs them. Elsewhere these tests skip when scarlet2 is absent, except
under ``CI=true`` where a missing install is a failure.

JAX starts threads when imported, and a process that forks afterwards (the
simulator's process pool) may deadlock; so nothing here imports it at collection
time, and the tests that do are marked ``jax`` and run last (tests/conftest.py).
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rampwf.utils.importing import import_module_from_source

from tests.helpers.synthetic_blends import make_synthetic_blends

if os.environ.get("CI") != "true" and importlib.util.find_spec("scarlet2") is None:
    pytest.skip("scarlet2 is not installed (pip install -r requirements-scarlet2.txt)", allow_module_level=True)

pytestmark = pytest.mark.jax
_PATH = Path(__file__).resolve().parents[2] / "submissions" / "scarlet2" / "deblender.py"


@pytest.fixture(scope="module")
def s2():
    """The submission module (imports scarlet2 and JAX)."""
    return import_module_from_source(str(_PATH), "deblender", sanitize=True)


def _nre(pred, true):
    return float(np.linalg.norm(pred - true) / np.linalg.norm(true))


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(max_iter=0), "max_iter must be an integer >= 1, got 0"),
        (dict(max_iter=2.5), "max_iter must be an integer >= 1, got 2.5"),
        (dict(e_rel=0), "e_rel must be a number > 0, got 0"),
        (dict(morph_step=-1.0), "morph_step must be a number > 0, got -1.0"),
        (dict(spectrum_step="x"), "spectrum_step must be a number > 0, got 'x'"),
        (dict(fallback_box=2), r"fallback_box must be an integer >= 3 \(pixels\), got 2"),
    ],
)
def test_options_are_validated(s2, options, message):
    with pytest.raises(ValueError, match=message):
        s2.Deblender(**options)


def test_without_scarlet2_the_import_error_says_how_to_install_it():
    code = (
        "import sys; sys.modules['scarlet2'] = None\n"
        "from rampwf.utils.importing import import_module_from_source\n"
        f"import_module_from_source({str(_PATH)!r}, 'deblender', sanitize=True)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert ("ImportError: the scarlet2 submission needs the scarlet2 package and JAX: "
            "pip install -r requirements-scarlet2.txt") in run.stderr


@pytest.mark.slow
def test_fit_recovers_separated_galaxies_and_models_the_blend(s2):
    X, y = make_synthetic_blends(2, seed=6, n_galaxies=2, max_galaxies=3, min_separation=16.0, spread=11.0,
                                 flux_range=(2e5, 1e6))
    pred = s2.Deblender(max_iter=200).predict(X)
    assert pred.shape == y.shape and pred.dtype == np.float32
    assert np.isfinite(pred).all()
    assert not pred[:, 2].any()  # the empty slot stays zero
    for i in range(len(y)):
        for k in range(2):
            assert _nre(pred[i, k], y[i, k]) < 0.35, (i, k, _nre(pred[i, k], y[i, k]))
        # the fitted scene explains the blend down to the noise: residual rms / sigma near 1
        resid = (X.blend[i] - pred[i].sum(axis=0)) / X.noise_sigma[i][:, None, None]
        assert 0.8 < float(np.sqrt(np.mean(resid ** 2))) < 1.6


@pytest.mark.slow
def test_a_source_without_moments_starts_from_the_fallback_gaussian(s2):
    import jax.numpy as jnp
    import scarlet2 as sc2

    blend = np.zeros((3, 32, 32), np.float32)  # no light at all: the moments are undefined
    psf = np.zeros((3, 25, 25), np.float32)
    yy, xx = np.mgrid[-12:13, -12:13]
    psf[:] = np.exp(-(xx ** 2 + yy ** 2) / (2 * 1.5 ** 2))
    psf /= psf.sum(axis=(1, 2), keepdims=True)
    obs = sc2.Observation(jnp.asarray(blend), weights=jnp.ones_like(jnp.asarray(blend)), psf=jnp.asarray(psf),
                          channels=["g", "r", "i"])
    with sc2.Scene(sc2.Frame.from_observations(obs)):
        spectrum, morph = s2.initial_source(obs, blend, (16.0, 16.0), 11)
    assert morph.shape == (11, 11)
    assert float(morph.max()) == pytest.approx(1 - 1e-6) and float(morph.min()) > 0
    assert np.all(np.asarray(spectrum) == pytest.approx(1e-6))  # the blend is zero there, kept positive


@pytest.mark.slow
def test_scarlet2s_zero_spectrum_message_is_captured_not_printed(s2, capsys):
    import jax.numpy as jnp
    import scarlet2 as sc2

    yy, xx = np.mgrid[0:32, 0:32]
    gal = 500 * np.exp(-((xx - 16) ** 2 + (yy - 16) ** 2) / (2 * 2.5 ** 2))
    blend = np.stack([gal, gal, -gal]).astype(np.float32)  # negative in the third band: scarlet2 prints
    psf = np.zeros((3, 25, 25), np.float32)
    py, px = np.mgrid[-12:13, -12:13]
    psf[:] = np.exp(-(px ** 2 + py ** 2) / (2 * 1.5 ** 2))
    psf /= psf.sum(axis=(1, 2), keepdims=True)
    obs = sc2.Observation(jnp.asarray(blend), weights=jnp.ones_like(jnp.asarray(blend)), psf=jnp.asarray(psf),
                          channels=["g", "r", "i"])
    capsys.readouterr()
    notes = []
    with sc2.Scene(sc2.Frame.from_observations(obs)):
        spectrum, _ = s2.initial_source(obs, blend, (16.0, 16.0), 11, notes)
    assert s2.ZERO_SPECTRUM_MESSAGE not in capsys.readouterr().out
    assert len(notes) == 1 and notes[0].startswith(s2.ZERO_SPECTRUM_MESSAGE)
    spectrum = np.asarray(spectrum)
    assert spectrum[2] == pytest.approx(1e-6) and np.all(spectrum[:2] > 100)  # kept positive, as before
