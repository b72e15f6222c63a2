"""The static leaderboard (deblendkit.report: collect, table, page, leaderboard.build; deblendkit.cli.leaderboard).

Unit tests build ``training_output`` folders by hand, the way rampwf 0.7 lays
them out; the end-to-end test runs ``ramp-test --quick-test --save-output`` on
real submissions, builds the page and opens it in headless Chromium.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deblendkit import report as L
from deblendkit.cli import leaderboard as cli_leaderboard
from deblendkit.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SCORES = ["deblend", "flux_scatter_r"]  # one higher-better, one lower-better


# ---------------------------------------------------------------------------
# Hand-made results
# ---------------------------------------------------------------------------
def _write_fold(sub: Path, fold: int, *, t: int, state: str = "scored", scores=None, times=(1.0, 0.5, 0.25),
                n_blends: int | None = 10, error: str | None = None) -> Path:
    d = sub / "training_output" / f"fold_{fold}"
    d.mkdir(parents=True, exist_ok=True)
    if scores is not None:
        df = pd.DataFrame(scores, index=["train", "valid", "test"], columns=SCORES)
        df.index.name = "step"
        df["time"] = times
        df.to_csv(d / "scores.csv")
    for name, v in zip(("train_time", "valid_time", "test_time"), times):
        (d / name).write_text(str(v))
    if n_blends is not None:
        (d / "results.json").write_text(json.dumps({"data_file": "test.h5", "n_blends": n_blends,
                                                    "bands": list("ugrizy")}))
    if error is not None:
        (d / "error.txt").write_text(f"Traceback (most recent call last):\n  ...\n{error}\n")
    (d / "state.txt").write_text(state)
    for p in d.iterdir():
        os.utime(p, ns=(t * 10**9, t * 10**9))
    return d


def _write_bagged(sub: Path, *, t: int, valid=(0.5, 0.2), test=(0.4, 0.3)) -> None:
    rows = [("valid", 0, 0.0, 0.0), ("valid", 1, *valid), ("test", 0, 0.0, 0.0), ("test", 1, *test)]
    p = sub / "training_output" / "bagged_scores.csv"
    pd.DataFrame(rows, columns=["step", "n_bag", *SCORES]).to_csv(p, index=False)
    os.utime(p, ns=(t * 10**9, t * 10**9))


def _scores(v):
    """train/valid/test rows of (deblend, flux_scatter_r)."""
    return [[v[0] + 0.1, v[1]], [v[0], v[1]], [v[0] - 0.1, v[1] + 0.05]]


@pytest.fixture()
def subs(tmp_path):
    root = tmp_path / "submissions"
    good = root / "good"
    _write_fold(good, 0, t=100, scores=_scores((0.6, 0.2)), times=(2.0, 1.0, 0.5))
    _write_fold(good, 1, t=101, scores=_scores((0.8, 0.1)), times=(4.0, 1.0, 1.5))
    _write_bagged(good, t=102, valid=(0.75, 0.12), test=(0.65, 0.18))
    (good / "deblender.py").write_text("")
    ok2 = root / "also_good"
    _write_fold(ok2, 0, t=100, scores=_scores((0.85, 0.3)))
    _write_fold(ok2, 1, t=101, scores=_scores((0.45, 0.3)))
    _write_bagged(ok2, t=102, valid=(0.6, 0.3), test=(0.9, 0.3))  # bagging helps it a lot
    bad = root / "broken"
    _write_fold(bad, 0, t=100, state="training_error", n_blends=None,
                error="RuntimeError: this submission is broken on purpose")
    (root / "never_run").mkdir()
    (root / "never_run" / "deblender.py").write_text("")
    (root / "not_a_submission").mkdir()
    (root / ".hidden").mkdir()
    return root


def test_load_submission_statuses(subs):
    got = {r.name: r for r in L.collect(subs)}
    assert sorted(got) == ["also_good", "broken", "good", "never_run"]
    assert got["good"].status == L.STATUS_SCORED and got["good"].detail == ""
    assert [f.fold for f in got["good"].folds] == [0, 1]
    assert got["good"].bagged.loc["test", "deblend"] == 0.65
    assert got["broken"].status == L.STATUS_FAILED
    assert got["broken"].detail == "training_error in fold 0: RuntimeError: this submission is broken on purpose"
    assert got["never_run"].status == L.STATUS_NOT_RUN
    assert "ramp-test --submission never_run --save-output" in got["never_run"].detail


def test_interrupted_runs_are_incomplete(tmp_path):
    a = tmp_path / "a"
    _write_fold(a, 0, t=100, scores=_scores((0.5, 0.1)))
    _write_fold(a, 1, t=101, state="trained")
    r = L.load_submission(a)
    assert r.status == L.STATUS_INCOMPLETE
    assert r.detail == "fold 1 stopped at state 'trained' (run interrupted?)"
    b = tmp_path / "b"
    _write_fold(b, 0, t=100, scores=_scores((0.5, 0.1)))
    r = L.load_submission(b)
    assert r.status == L.STATUS_INCOMPLETE and "no bagged scores" in r.detail


def test_stale_folds_and_bagged_scores_are_ignored(tmp_path):
    s = tmp_path / "s"
    # A full 3-fold run at t=10..12, then a 2-fold quick run at t=100, 101 that failed before bagging.
    _write_fold(s, 2, t=12, scores=_scores((0.1, 0.9)))
    _write_bagged(s, t=13)
    _write_fold(s, 0, t=100, scores=_scores((0.5, 0.1)))
    _write_fold(s, 1, t=101, scores=_scores((0.7, 0.1)))
    r = L.load_submission(s)
    assert [f.fold for f in r.folds] == [0, 1]
    assert r.bagged is None and r.status == L.STATUS_INCOMPLETE
    assert r.notes == ("ignored fold_2 (left by an earlier run)", "ignored bagged_scores.csv (older than the folds)")
    # A failure in fold 0 of the latest run hides the older scored folds after it.
    f = tmp_path / "f"
    _write_fold(f, 1, t=50, scores=_scores((0.5, 0.1)))
    _write_fold(f, 0, t=100, state="testing_error", error="ValueError: bad")
    r = L.load_submission(f)
    assert [x.fold for x in r.folds] == [0] and r.status == L.STATUS_FAILED


def test_leaderboard_table_statistics_and_ranking(subs):
    results = L.collect(subs)
    t = L.leaderboard_table(results)
    assert list(t["submission"]) == ["good", "also_good", "broken", "never_run"]
    assert list(t["rank"][:2]) == [1, 2] and t["rank"][2:].isna().all()
    good = t.set_index("submission").loc["good"]
    # Mean and ddof=0 standard deviation over folds, as ramp-test prints them.
    assert good["deblend_valid_mean"] == pytest.approx(np.mean([0.6, 0.8]))
    assert good["deblend_valid_std"] == pytest.approx(np.std([0.6, 0.8]))
    assert good["deblend_test_mean"] == pytest.approx(np.mean([0.5, 0.7]))
    assert good["flux_scatter_r_test_mean"] == pytest.approx(np.mean([0.25, 0.15]))
    assert good["deblend_bagged_test"] == 0.65 and good["flux_scatter_r_bagged_valid"] == 0.12
    assert good["train_time_mean"] == pytest.approx(3.0) and good["train_time_std"] == pytest.approx(1.0)
    assert good["test_seconds_per_blend"] == pytest.approx(np.mean([0.5 / 10, 1.5 / 10]))
    assert good["n_folds"] == 2 and good["data_file"] == "test.h5"
    broken = t.set_index("submission").loc["broken"]
    assert broken["n_folds"] == 0 and np.isnan(broken["deblend_valid_mean"])
    # Mean valid: good 0.7 > also_good 0.65; bagged test: also_good 0.9 > good 0.65.
    assert list(L.leaderboard_table(results, rank_by="test")["submission"][:2]) == ["good", "also_good"]
    assert list(L.leaderboard_table(results, rank_by="bagged_test")["submission"][:2]) == ["also_good", "good"]
    # flux_scatter_r is lower-is-better: good (0.15 mean valid) ranks before also_good (0.3).
    by_flux = L.leaderboard_table(results, score="flux_scatter_r")
    assert list(by_flux["submission"][:2]) == ["good", "also_good"]
    with pytest.raises(ConfigError, match=r"rank_by must be one of \['valid', 'test', 'bagged_valid', 'bagged_test'\]"):
        L.leaderboard_table(results, rank_by="train")
    with pytest.raises(ConfigError, match="score 'ssim' is not among the scores found"):
        L.leaderboard_table(results, score="ssim")


def test_markdown_and_files(subs, tmp_path):
    paths = L.build(subs, tmp_path / "lb", images=False)
    md = paths["md"].read_text()
    lines = md.splitlines()
    assert lines[0].startswith("| # | submission | status | data | folds | deblend valid | deblend test |")
    assert lines[2].startswith("| 1 | good | scored | test.h5 | 2 | 0.7000 ± 0.1000 | 0.6000 ± 0.1000 | 0.6500 |")
    assert "| broken | failed (training_error in fold 0: RuntimeError: this submission is broken on purpose)" in md
    csv = pd.read_csv(paths["csv"])
    assert list(csv["submission"]) == ["good", "also_good", "broken", "never_run"]
    page = paths["html"].read_text()
    assert page.count('<tr class="status-') == 4
    assert "http://" not in page and "https://" not in page  # nothing fetched from outside


def test_cli(subs, tmp_path, capsys):
    assert cli_leaderboard.main(["--submissions", str(subs), "--data", str(tmp_path / "nodata"),
                                 "--out", str(tmp_path / "o"), "--no-images"]) == 0
    assert (tmp_path / "o" / "index.html").is_file()
    assert "leaderboard: " in capsys.readouterr().out
    assert cli_leaderboard.main(["--submissions", str(tmp_path / "missing"), "--out", str(tmp_path / "o2")]) == 2
    assert "error: submissions directory" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# End to end: ramp-test, the page, a browser
# ---------------------------------------------------------------------------
ZEROS = '''import numpy as np


class Deblender:
    """Predicts nothing: every galaxy scores 0."""

    def fit(self, X, y):
        return self

    def predict(self, X):
        return np.zeros((len(X), X.max_galaxies, X.n_bands, X.stamp_size, X.stamp_size), np.float32)
'''
BROKEN = '''class Deblender:
    def fit(self, X, y):
        raise RuntimeError("this submission is broken on purpose")

    def predict(self, X):
        raise RuntimeError("unreachable")
'''

CHECK_SCRIPT = """<script>
window.addEventListener('load', function () {
  var out = {images: [], orders: {}};
  Array.prototype.forEach.call(document.images, function (im) {
    out.images.push({alt: im.alt, w: im.naturalWidth, h: im.naturalHeight, complete: im.complete});
  });
  function order() {
    return Array.prototype.map.call(document.querySelectorAll('#leaderboard tbody tr'),
      function (r) { return r.getAttribute('data-submission') || 'ref:' + r.getAttribute('data-reference'); });
  }
  out.orders.initial = order();
  var th = document.querySelector('th[data-col="deblend_test_mean"]');
  th.click(); out.orders.first_click = order();
  th.click(); out.orders.second_click = order();
  document.querySelector('th[data-col="submission"]').click(); out.orders.by_name = order();
  var pre = document.createElement('pre'); pre.id = 'page-check';
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
});
</script>"""


class _Rows(HTMLParser):
    """Rows of the leaderboard table: {submission: {col: (data-value, text)}}, the same of the reference
    rows (``refs``) and the page-check JSON."""

    def __init__(self):
        super().__init__()
        self.rows, self.refs, self.check = {}, {}, None
        self._row = self._col = None
        self._text, self._pre = [], False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-submission" in a:
            self._row = self.rows.setdefault(a["data-submission"], {})
        elif tag == "tr" and "data-reference" in a:
            self._row = self.refs.setdefault(a["data-reference"], {})
        elif tag == "td" and self._row is not None and "data-col" in a:
            self._col, self._value, self._text = a["data-col"], a.get("data-value", ""), []
        elif tag == "pre" and a.get("id") == "page-check":
            self._pre, self._text = True, []

    def handle_endtag(self, tag):
        if tag == "td" and self._col is not None:
            self._row[self._col] = (self._value, " ".join(" ".join(self._text).split()))
            self._col = None
        elif tag == "tr":
            self._row = None
        elif tag == "pre" and self._pre:
            self.check, self._pre = json.loads("".join(self._text)), False

    def handle_data(self, data):
        if self._col is not None or self._pre:
            self._text.append(data)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium_cmd(exe: str, profile: Path) -> list[str]:
    return [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}"]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow
def test_leaderboard_in_a_browser(small_data_dir, tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium is not installed (Debian package `chromium`); CI installs it")
    kit = tmp_path / "kit"
    (kit / "submissions").mkdir(parents=True)
    shutil.copy(REPO / "problem.py", kit / "problem.py")
    (kit / "data").symlink_to(small_data_dir, target_is_directory=True)
    shutil.copytree(REPO / "submissions" / "starting_kit", kit / "submissions" / "starting_kit",
                    ignore=shutil.ignore_patterns("training_output", "__pycache__"))
    for name, code in (("zeros", ZEROS), ("broken", BROKEN), ("never_run", ZEROS)):
        (kit / "submissions" / name).mkdir()
        (kit / "submissions" / name / "deblender.py").write_text(code)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("RAMP_TEST_MODE", None)
    ramp_test = Path(sys.executable).with_name("ramp-test")
    for name, expect_ok in (("starting_kit", True), ("zeros", True), ("broken", False)):
        run = subprocess.run([str(ramp_test), "--submission", name, "--quick-test", "--save-output"],
                             cwd=kit, env=env, capture_output=True, text=True, timeout=600)
        assert (run.returncode == 0) == expect_ok, f"ramp-test {name}: rc {run.returncode}\n{run.stdout}\n{run.stderr}"

    out = tmp_path / "leaderboard"
    run = subprocess.run([sys.executable, "-m", "deblendkit.cli.leaderboard", "--submissions", "submissions",
                          "--data", "data", "--out", str(out)], cwd=kit, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    page = (out / "index.html").read_text()

    # Self-contained: every image is an embedded PNG, nothing is fetched.
    srcs = re.findall(r'<img [^>]*src="([^"]*)"', page)
    assert len(srcs) == 1 + 2 * 2  # overall plot; per scored submission: score plot and gallery
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        w, h = _png_size(base64.b64decode(src.split(",", 1)[1]))
        assert w > 100 and h > 100
    assert not re.findall(r'(?:src|href)="(?!data:|#)', page)

    # The numbers on the page are rampwf's, from the fold score files.
    expected = {}
    for name in ("starting_kit", "zeros"):
        folds = sorted((kit / "submissions" / name / "training_output").glob("fold_*"))
        assert len(folds) == 2  # --quick-test: 2 folds
        frames = [pd.read_csv(f / "scores.csv", index_col=0) for f in folds]
        expected[name] = {step: np.mean([f.loc[step, "deblend"] for f in frames]) for step in ("valid", "test")}
    assert expected["zeros"] == {"valid": 0.0, "test": 0.0}
    assert 0.2 < expected["starting_kit"]["test"] < 1.0

    # Open it as a person would, after the page's script ran.
    check = tmp_path / "check.html"
    check.write_text(page.replace("</body>", CHECK_SCRIPT + "</body>"))
    dom = subprocess.run(_chromium_cmd(exe, tmp_path / "profile") + ["--virtual-time-budget=5000", "--dump-dom",
                                                                      check.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    parsed = _Rows()
    parsed.feed(dom.stdout)
    rows = parsed.rows
    assert sorted(rows) == ["broken", "never_run", "starting_kit", "zeros"]
    for name, exp in expected.items():
        assert rows[name]["status"][1] == "scored"
        assert rows[name]["data_file"][1] == "test_mini.h5"
        for step in ("valid", "test"):
            value, text = rows[name][f"deblend_{step}_mean"]
            assert float(value) == pytest.approx(exp[step], abs=1e-12)
            assert text.startswith(f"{exp[step]:.4f} ± ")
        assert rows[name]["deblend_bagged_test"][1] != ""
        assert float(rows[name]["test_seconds_per_blend"][0]) > 0
    assert rows["starting_kit"]["rank"][1] == "1" and rows["zeros"]["rank"][1] == "2"
    assert rows["broken"]["status"][1].startswith("failed training_error in fold 0")
    assert "this submission is broken on purpose" in rows["broken"]["status"][1]
    assert rows["never_run"]["status"][1].startswith("not run")

    info = parsed.check
    assert info is not None, "the page check script did not run"
    assert len(info["images"]) == len(srcs)
    for im in info["images"]:
        assert im["complete"] and im["w"] > 100 and im["h"] > 100, im
    scored = ["starting_kit", "zeros"]
    ref_names = ["ref:" + n for n in parsed.refs]
    subs_only = {k: [n for n in v if not n.startswith("ref:")] for k, v in info["orders"].items()}
    assert subs_only["initial"][:2] == scored
    assert info["orders"]["initial"][len(rows):] == ref_names  # references after the submissions
    # Sorting by the test score: best first, then reversed; unscored rows stay last.
    assert subs_only["first_click"] == scored + subs_only["first_click"][2:]
    assert subs_only["second_click"][:2] == scored[::-1]
    assert set(subs_only["second_click"][2:]) == {"broken", "never_run"}
    assert info["orders"]["by_name"] == sorted(info["orders"]["initial"],
                                               key=lambda n: n[4:] if n.startswith("ref:") else n)

    # Reference rows (#19), computed on the file the submissions were scored on: marked, not ranked,
    # best first; predicting zeros scores 0 there as the zeros submission does on every fold.
    assert list(parsed.refs) == ["known morphology", "oracle apportioning", "zeros"]
    for name, cells in parsed.refs.items():
        assert cells["rank"] == ("", "ref") and cells["status"][1].startswith("reference")
        assert cells["data_file"][1] == "test_mini.h5"
    values = [float(c["deblend_test_mean"][0]) for c in parsed.refs.values()]
    assert values == sorted(values, reverse=True) and values[-1] == 0.0
    assert values[0] > expected["starting_kit"]["test"]

    # A screenshot for a person to look at.
    artifacts = Path(os.environ.get("DEBLEND_TEST_ARTIFACTS", tmp_path / "artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "leaderboard.png"
    run = subprocess.run(_chromium_cmd(exe, tmp_path / "profile2") + [f"--screenshot={shot}", "--window-size=1400,2000",
                                                                      (out / "index.html").as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    assert _png_size(shot.read_bytes()) == (1400, 2000)
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels[..., :3].std() > 0.05  # not a blank page
    print(f"leaderboard screenshot: {shot}")
