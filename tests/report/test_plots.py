"""Colour composites, figures and binned scores (deblendkit.report.plots)."""
from __future__ import annotations

import base64
import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from deblendkit.errors import ConfigError
from deblendkit.report import plots as P
from deblendkit.report.results import Gallery

BANDS = ("u", "g", "r", "i", "z", "y")


def _gaussian(h, w, x0, y0, sigma, amp):
    y, x = np.mgrid[:h, :w]
    return amp * np.exp(-0.5 * ((x - x0) ** 2 + (y - y0) ** 2) / sigma**2)


def test_lupton_stretch_is_noise_multiple():
    assert P.lupton_stretch([100.0, 300.0]) == pytest.approx(P.NOISE_STRETCH * 200.0)
    assert P.lupton_stretch([np.nan, 0.0, 50.0]) == pytest.approx(P.NOISE_STRETCH * 50.0)
    with pytest.raises(ConfigError, match="noise_sigma must hold a positive finite value"):
        P.lupton_stretch([0.0, np.nan])


def test_rgb_composite_channels_follow_bands():
    img = np.zeros((6, 20, 20))
    img[BANDS.index("i")] = _gaussian(20, 20, 10, 10, 3, 5000.0)  # i only -> red only
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0/0 warning from astropy on empty pixels
        rgb = P.rgb_composite(img, bands=BANDS, stretch=500.0)
    assert rgb.shape == (20, 20, 3) and rgb.dtype == np.uint8
    assert rgb[10, 10, 0] > 200 and rgb[..., 1].max() == 0 and rgb[..., 2].max() == 0
    # Brighter towards the centre, black far away.
    assert rgb[10, 10, 0] >= rgb[10, 14, 0] >= rgb[10, 18, 0]
    assert rgb[0, 0].tolist() == [0, 0, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert P.rgb_composite(np.zeros((6, 4, 4)), bands=BANDS, stretch=1.0).max() == 0


def test_rgb_composite_rejects_bad_input():
    with pytest.raises(ConfigError, match=r"images must have shape \(C, H, W\) with C = 6 bands"):
        P.rgb_composite(np.zeros((3, 4, 4)), bands=BANDS, stretch=1.0)
    with pytest.raises(ConfigError, match="stretch must be a positive number of ADU, got 0"):
        P.rgb_composite(np.zeros((6, 4, 4)), bands=BANDS, stretch=0)


def _scene(m=2, k=3, c=3, s=24, seed=0):
    rng = np.random.default_rng(seed)
    iso = np.zeros((m, k, c, s, s), np.float32)
    n_gal = np.array([k, k - 1][:m])
    centers = np.full((m, k, 2), np.nan, np.float32)
    for i in range(m):
        for j in range(n_gal[i]):
            x, y = rng.uniform(6, s - 6, 2)
            centers[i, j] = x, y
            for b in range(c):
                iso[i, j, b] = _gaussian(s, s, x, y, 2.0, 1000.0 * (b + 1))
    blend = iso.sum(1) + rng.normal(0, 50, (m, c, s, s)).astype(np.float32)
    return blend, iso, n_gal, centers


def _texts(fig):
    return [t.get_text() for t in fig.axes[0].texts]


def test_deblend_figure_layout():
    blend, iso, n_gal, centers = _scene()
    fig = P.deblend_figure(blend, iso, bands=("g", "r", "i"), noise_sigma=np.full((2, 3), 50.0),
                           predicted=0.9 * iso, centers=centers, scores=np.full((2, 3), 0.9),
                           blendedness=np.full((2, 3), 0.1), row_labels=["first", "second"])
    assert isinstance(fig, Figure) and len(fig.axes) == 1  # one mosaic
    texts = _texts(fig)
    assert texts.count("blend") == 2 and texts.count("sum of predicted") == 2
    # Blend 0 has 3 galaxies, blend 1 has 2: one truth and one prediction panel each.
    assert texts.count("true 1  b=0.10") == 2 and texts.count("true 3  b=0.10") == 1
    assert texts.count("pred 2  s=0.90") == 2 and texts.count("pred 3  s=0.90") == 1
    assert "first" in texts and "second" in texts
    # Centre numbers drawn on the blends: 1, 2, 3 then 1, 2.
    assert [t for t in texts if t.isdigit()] == ["1", "2", "3", "1", "2"]
    # The mosaic: 4 rows of panels (truth + prediction per blend) x (1 + 3) columns of 24-pixel panels.
    (img,) = fig.axes[0].get_images()
    h, w, _ = img.get_array().shape
    assert w > 4 * 24 and h > 4 * 24
    # Truth only: half the rows; galaxies counted from the non-empty slots.
    fig2 = P.deblend_figure(blend, iso, bands=("g", "r", "i"), noise_sigma=np.full((2, 3), 50.0))
    assert _texts(fig2).count("true 3") == 1 and "sum of predicted" not in _texts(fig2)
    assert fig2.axes[0].get_images()[0].get_array().shape[0] < h
    png = P.figure_png(fig2)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_deblend_figure_rejects_mismatched_shapes():
    blend, iso, _, _ = _scene()
    with pytest.raises(ConfigError, match="predicted must have the shape of isolated"):
        P.deblend_figure(blend, iso, bands=("g", "r", "i"), noise_sigma=np.ones((2, 3)), predicted=iso[:, :2])
    with pytest.raises(ConfigError, match=r"blend must be \(m, C, H, W\) and isolated \(m, K, C, H, W\)"):
        P.deblend_figure(blend[:1], iso, bands=("g", "r", "i"), noise_sigma=np.ones((2, 3)))


def test_gallery_figure_uses_every_blend():
    blend, iso, n_gal, centers = _scene()
    g = Gallery(blend_index=np.array([4, 9]), blend=blend, isolated=iso, predicted=iso, centers=centers,
                n_galaxies=n_gal, noise_sigma=np.full((2, 3), 50.0, np.float32), deblend=np.ones((2, 3)),
                blendedness=np.zeros((2, 3)), bands=("g", "r", "i"))
    texts = _texts(P.gallery_figure(g))
    assert [t for t in texts if t.startswith("blend ")] == ["blend 4", "blend 9"]
    assert texts.count("pred 1  s=1.00") == 2
    one = _texts(P.gallery_figure(g, max_blends=1))
    assert [t for t in one if t.startswith("blend ")] == ["blend 4"] and one.count("pred 1  s=1.00") == 1
    with pytest.raises(ConfigError, match="gallery field 'isolated' has 1 rows, expected 2"):
        Gallery(blend_index=np.array([4, 9]), blend=blend, isolated=iso[:1], predicted=iso, centers=centers,
                n_galaxies=n_gal, noise_sigma=np.ones((2, 3)), deblend=np.ones((2, 3)),
                blendedness=np.zeros((2, 3)), bands=("g", "r", "i"))


def test_binned_score_means_and_spread():
    t1 = pd.DataFrame({"blendedness": [0.005, 0.02, 0.03, 0.3, 0.6, 1.0], "deblend": [1.0, 0.8, 0.6, 0.5, 0.2, 0.0]})
    t2 = t1.assign(deblend=t1["deblend"] - 0.1)
    b = P.binned_score([t1, t2], by="blendedness")
    np.testing.assert_array_equal(b["lo"], P.BLENDEDNESS_BINS[:-1])
    np.testing.assert_array_equal(b["n"], [2, 4, 0, 0, 2, 4])  # pooled over both tables; 1.0 in the last bin
    np.testing.assert_allclose(b["mean"], [0.95, 0.65, np.nan, np.nan, 0.45, 0.05])
    np.testing.assert_allclose(b["spread"], [np.std([1.0, 0.9], ddof=1), np.std([0.7, 0.6], ddof=1),
                                             np.nan, np.nan, np.std([0.5, 0.4], ddof=1), np.std([0.1, 0.0], ddof=1)])
    np.testing.assert_allclose(b["x"][:2], [0.005, 0.025])
    one = P.binned_score(t1, by="blendedness", bins=[0.0, 0.1, 0.5])  # 0.6 and 1.0 outside: left out
    np.testing.assert_allclose(one["mean"], [0.8, 0.5])
    assert one["spread"].isna().all()


def test_binned_score_magnitude_default_bins():
    t = pd.DataFrame({"mag_r": [20.2, 21.9, 24.1], "deblend": [0.9, 0.7, 0.3]})
    b = P.binned_score(t, by="mag_r")
    assert b["lo"].iloc[0] == 20.0 and b["hi"].iloc[-1] == 24.5
    assert np.all(np.diff(b["lo"]) == 0.5)
    assert b["n"].sum() == 3


def test_binned_score_errors():
    t = pd.DataFrame({"blendedness": [0.1], "deblend": [0.5]})
    with pytest.raises(ConfigError, match="galaxy table has no column 'mag_r'"):
        P.binned_score(t, by="mag_r")
    with pytest.raises(ConfigError, match="bins must be at least two increasing edges"):
        P.binned_score(t, by="blendedness", bins=[0.5, 0.1])
    with pytest.raises(ConfigError, match="tables must hold at least one galaxy table"):
        P.binned_score([], by="blendedness")


def test_magnitude_column():
    assert P.magnitude_column(pd.DataFrame(columns=["mag_g", "mag_r"])) == "mag_r"
    assert P.magnitude_column(pd.DataFrame(columns=["mag_VIS"]), ref_band="r") == "mag_VIS"
    with pytest.raises(ConfigError, match=r"no magnitude column \(mag_<band>\)"):
        P.magnitude_column(pd.DataFrame(columns=["deblend"]))


def test_score_vs_figure_one_line_per_submission():
    rng = np.random.default_rng(1)
    t = pd.DataFrame({"blendedness": rng.uniform(0, 1, 50), "mag_r": rng.uniform(20, 26, 50),
                      "deblend": rng.uniform(0, 1, 50)})
    fig = P.score_vs_figure({"a": [t, t], "b": [t]}, show_points=False)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert [x.get_text() for x in ax.get_legend().get_texts()] == ["a", "b"]
    assert fig.axes[0].get_xlabel() == "blendedness" and fig.axes[1].get_xlabel() == "mag_r (AB mag)"


def test_png_data_uri_round_trip():
    fig = Figure(figsize=(1, 1))
    png = P.figure_png(fig, dpi=20)
    uri = P.png_data_uri(png)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]) == png
    with pytest.raises(ConfigError, match="png must be PNG bytes"):
        P.png_data_uri(b"GIF89a")
