"""Tests of the ``prepare_data.py`` command line (deblendkit.cli.prepare_data)."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from deblendkit.cli.prepare_data import SPLIT_FILES, main
from deblendkit.config import SimConfig
from deblendkit.storage import read_dataset

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "prepare_data.py"
# Small and fast: one band, 32-pixel stamps (the default 25-pixel PSF stamp fits).
TINY = ["--stamp-size", "32", "--bands", "r", "--max-galaxies", "3", "--n-jobs", "1", "--quiet"]


def run_script(*args, timeout=120):
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def raw_datasets(path):
    with h5py.File(path, "r") as f:
        return {name: f[name][()] for name in f}


def assert_same_data(a, b):
    da, db = raw_datasets(a), raw_datasets(b)
    assert set(da) == set(db)
    for name in da:
        assert da[name].tobytes() == db[name].tobytes(), name


# --------------------------------------------------------------------------
# The files it writes
# --------------------------------------------------------------------------
def test_small_data_dir_has_the_four_files(small_data_dir):
    expected = {"train": 24, "test": 12, "train_mini": 8, "test_mini": 4}  # test_mini: half of --n-mini
    blends = {}
    for split, n in expected.items():
        ds = read_dataset(small_data_dir / SPLIT_FILES[split])
        assert len(ds) == n
        assert ds.attrs["split"] == split and ds.attrs["seed"] == 0
        assert SimConfig.from_dict(ds.attrs["config"]) == SimConfig()
        blends[split] = ds.blend
    # Each split is its own seed stream: no blend appears in two files.
    for a in blends:
        for b in blends:
            if a < b:
                assert not np.array_equal(blends[a][:4], blends[b][:4]), (a, b)


def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--n-train", "--n-test", "--n-mini", "--seed", "--n-jobs", "--output-dir", "--config",
                   "--survey", "--bands", "--stamp-size", "--max-galaxies", "--overwrite"):
        assert option in out
    proc = run_script("--help")
    assert proc.returncode == 0 and "usage: prepare_data.py" in proc.stdout


def test_summary_prints_histogram_and_totals(tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["--output-dir", str(out), "--n-train", "3", "--n-test", "2", "--n-mini", "2", *TINY]) == 0
    text = capsys.readouterr().out
    n_gal = sum(int(read_dataset(out / f).n_galaxies.sum()) for f in SPLIT_FILES.values())
    size_mb = sum((out / f).stat().st_size for f in SPLIT_FILES.values()) / 1e6
    assert re.search(rf"Blendedness of all {n_gal} galaxies", text)
    bins = re.findall(r"^\s+\[(\d\.\d\d), (\d\.\d\d)\)\s+(\d+)", text, flags=re.M)
    assert len(bins) >= 4 and bins[0][0] == "0.00" and bins[-1][1] == "1.00"
    assert sum(int(n) for _, _, n in bins) == n_gal
    total = re.search(r"Total: (\d+) blends in [\d.]+ s, ([\d.]+) MB", text)
    assert total and int(total.group(1)) == 3 + 2 + 2 + 1
    assert float(total.group(2)) == pytest.approx(size_mb, abs=0.05)
    for name in SPLIT_FILES.values():
        assert name in text


def test_config_file_and_options_combine(tmp_path):
    cfg = tmp_path / "sim.json"
    cfg.write_text(json.dumps({"stamp_size": 40, "max_galaxies": 3, "psf_model": "moffat"}))
    out = tmp_path / "data"
    rc = main(["--config", str(cfg), "--stamp-size", "32", "--survey", "HSC", "--output-dir", str(out),
               "--n-mini", "2", "--splits", "train_mini", "--n-jobs", "1", "--quiet"])
    assert rc == 0
    ds = read_dataset(out / "train_mini.h5")
    config = SimConfig.from_dict(ds.attrs["config"])
    # Command line > config file > defaults.
    assert (config.stamp_size, config.max_galaxies, config.psf_model, config.survey) == (32, 3, "moffat", "HSC")
    assert ds.bands == ("g", "r", "i", "z", "y") and ds.pixel_scale == pytest.approx(0.168)
    assert ds.blend.shape == (2, 5, 32, 32)
    assert sorted(p.name for p in out.iterdir()) == ["train_mini.h5"]


# --------------------------------------------------------------------------
# Bad input: one line, exit code 2, no traceback, nothing written
# --------------------------------------------------------------------------
def _expect_error(capsys, argv, message):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("prepare_data.py: error: ")
    assert message in err, err
    assert "Traceback" not in err and err.count("\n") == 1
    return err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--n-train", "0"], "--n-train must be >= 1, got 0"),
        (["--n-test", "-5"], "--n-test must be >= 1, got -5"),
        (["--n-mini", "0"], "--n-mini must be >= 1, got 0"),
        (["--stamp-size", "-4"], "stamp_size must be > 0, got -4"),
        (["--stamp-size", "0"], "stamp_size must be > 0, got 0"),
        (["--max-galaxies", "1"], "max_galaxies must be >= 2 (a blend has 2 or more galaxies), got 1"),
        (["--max-galaxies", "-2"], "max_galaxies must be > 0, got -2"),
        (["--survey", "Hubble"], "unknown survey 'Hubble'; allowed: "),
        (["--bands", "g,q"], "unknown band 'q' for survey LSST; allowed: ['u', 'g', 'r', 'i', 'z', 'y']"),
        (["--survey", "HSC", "--bands", "u"], "unknown band 'u' for survey HSC"),
        (["--stamp-size", "20"], "stamp_size (20 pixels) is smaller than the PSF image (psf_size=25)"),
        (["--n-jobs", "0"], "--n-jobs must be >= 1, got 0"),
        (["--chunk-size", "0"], "--chunk-size must be >= 1, got 0"),
        (["--seed", "-1"], "--seed must be >= 0, got -1"),
        (["--splits", "train,valid"], "--splits has unknown split(s) ['valid']"),
        (["--size-scale", "0"], "--size-scale must be > 0, got 0.0"),
        (["--mag-range", "25", "19"], "mag_range must satisfy 10.0 <= low <= high <= 35.0, got (25.0, 19.0)"),
        (["--exposure-fraction", "0"], "exposure_fraction must be > 0, got 0.0"),
        (["--min-galaxies", "9"], "min_galaxies must be in [1, max_galaxies=6], got 9"),
    ],
)
def test_bad_option(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    _expect_error(capsys, ["--output-dir", str(out), "--quiet", *args], message)
    assert not out.exists()  # refused before anything was created


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"stamp_size": 32,', "could not be parsed"),
        ('{"stamp": 32}', "unknown config option(s) ['stamp']; allowed:"),
        ('{"max_galaxies": 1, "min_galaxies": 1}', "max_galaxies must be >= 2"),
        (None, "does not exist"),
    ],
)
def test_bad_config_file(tmp_path, capsys, content, message):
    cfg = tmp_path / "sim.json"
    if content is not None:
        cfg.write_text(content)
    out = tmp_path / "out"
    err = _expect_error(capsys, ["--config", str(cfg), "--output-dir", str(out), "--quiet"], message)
    if content is None or "could not be parsed" in message:
        assert str(cfg) in err  # file-level problems name the file
    assert not out.exists()


def test_output_dir_under_a_regular_file(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    out = blocker / "data"
    _expect_error(capsys, ["--output-dir", str(out), "--n-train", "1", "--quiet"],
                  f"cannot create output directory {str(out)!r}")
    _expect_error(capsys, ["--output-dir", str(blocker), "--n-train", "1", "--quiet"],
                  f"cannot create output directory {str(blocker)!r}")


def test_read_only_output_dir(tmp_path, capsys):
    out = tmp_path / "readonly"
    out.mkdir()
    out.chmod(0o500)
    try:
        probe = out / "probe"
        try:
            probe.write_text("x")
        except PermissionError:
            pass
        else:  # root ignores permission bits; the regular-file case above covers it
            probe.unlink()
            pytest.skip("running as root: chmod 0o500 does not stop writes")
        _expect_error(capsys, ["--output-dir", str(out), "--n-train", "1", "--quiet"],
                      f"output directory {str(out)!r} is not writable")
    finally:
        out.chmod(0o700)


def test_existing_files_need_overwrite(tmp_path, capsys):
    out = tmp_path / "data"
    out.mkdir()
    (out / "train.h5").write_bytes(b"keep me")
    args = ["--output-dir", str(out), "--n-train", "2", "--n-test", "1", "--n-mini", "2", *TINY]
    _expect_error(capsys, args, f"{out / 'train.h5'} already exist(s); pass --overwrite to replace")
    # Refused before any work: nothing else was written, the file is intact.
    assert sorted(p.name for p in out.iterdir()) == ["train.h5"]
    assert (out / "train.h5").read_bytes() == b"keep me"
    assert main([*args, "--overwrite"]) == 0
    assert len(read_dataset(out / "train.h5")) == 2


def test_errors_in_a_subprocess_have_no_traceback(tmp_path):
    proc = run_script("--n-train", "0", "--output-dir", str(tmp_path / "out"), "--quiet")
    assert proc.returncode == 2
    assert proc.stderr == "prepare_data.py: error: --n-train must be >= 1, got 0\n"
    proc = run_script("--n-train", "many")  # argparse's own error: usage, exit 2
    assert proc.returncode == 2 and "invalid int value: 'many'" in proc.stderr
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------
# Interrupted runs leave no partial file
# --------------------------------------------------------------------------
INTERRUPT_ARGS = ["--n-train", "80", "--chunk-size", "4", "--splits", "train", "--seed", "3", *TINY]


def _work_in_progress(out):
    """Files showing that the run is writing: the final file's temporary, or chunk files."""
    if not out.exists():
        return []
    return list(out.glob(".train.h5.*.tmp")) + list(out.glob("_chunks/**/*.h5"))


def _start_and_wait_for_work(out):
    """Start a run in a subprocess and return it once it has written something."""
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--output-dir", str(out), *INTERRUPT_ARGS],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and len(_work_in_progress(out)) < 2:
        time.sleep(0.05)
    if proc.poll() is not None or len(_work_in_progress(out)) < 2:
        proc.kill()
        proc.communicate()
        pytest.fail("the run wrote no work files in time, or ended before it could be interrupted")
    return proc


@pytest.mark.slow
def test_sigkill_leaves_no_final_file_and_a_rerun_succeeds(tmp_path):
    out = tmp_path / "killed"
    proc = _start_and_wait_for_work(out)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    # Nothing can clean up after SIGKILL: work files may remain, never the final name.
    assert not (out / "train.h5").exists()
    rerun = run_script("--output-dir", str(out), "--overwrite", *INTERRUPT_ARGS)
    assert rerun.returncode == 0, rerun.stderr
    # The rerun cleaned up the stale work files and equals an uninterrupted run.
    assert sorted(p.name for p in out.iterdir()) == ["train.h5"]
    clean = tmp_path / "clean"
    assert main(["--output-dir", str(clean), *INTERRUPT_ARGS]) == 0
    assert_same_data(out / "train.h5", clean / "train.h5")


@pytest.mark.parametrize(
    "signum",
    [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM", marks=pytest.mark.slow)],
)
def test_interrupt_stops_cleanly(tmp_path, signum):
    out = tmp_path / "interrupted"
    proc = _start_and_wait_for_work(out)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.startswith("prepare_data.py: interrupted; no partial")
    assert "Traceback" not in err and err.count("\n") == 1
    assert not (out / "train.h5").exists()
    assert not list(out.glob(".train.h5.*.tmp"))  # nor the final file's temporary
    # (Complete chunks under _chunks/ are kept on purpose, for the rerun to resume; a chunk
    # file being written at that moment may leave its own .tmp, which the rerun removes.)
