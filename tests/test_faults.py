"""Faults and bad input: a killed prepare_data, damaged data files, broken submissions.

Each case checks what the user sees: one error of the project's family whose
message names the file (or the submission and the step) and what was expected.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from deblendkit.cli.prepare_data import main
from deblendkit.config import SimConfig
from deblendkit.deblend.blendset import load_split
from deblendkit.errors import ConfigError, DataFileError, SubmissionError
from deblendkit.generation import generate_split
from deblendkit.ramp import problem as ramp_problem
from deblendkit.ramp.workflow import DeblenderWorkflow
from deblendkit.storage import PER_BLEND_DATASETS, read_dataset

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(stamp_size=20, psf_size=9, bands=("g", "r", "i"), max_galaxies=3, edge_margin=3)
EPOCH = "1700000000"


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> Path:
    """A kit directory with data/train.h5 (8 blends) and data/test.h5 (4 blends), small stamps."""
    root = tmp_path_factory.mktemp("kit")
    (root / "data").mkdir()
    config = SimConfig(**SMALL)
    for split, n in (("train", 8), ("test", 4)):
        generate_split(config, path=root / "data" / f"{split}.h5", split=split, n_blends=n, seed=5,
                       chunk_size=4, progress=False)
    return root


@pytest.fixture
def damaged_kit(kit, tmp_path) -> Path:
    """A private copy of the kit whose data files a test may damage."""
    shutil.copytree(kit / "data", tmp_path / "data")
    return tmp_path


# ---------------------------------------------------------------------------
# prepare_data killed mid-run
# ---------------------------------------------------------------------------
@pytest.mark.slow
def test_prepare_data_killed_mid_run_resumes_to_the_same_bytes(tmp_path, monkeypatch, caplog):
    cfg = tmp_path / "small.json"
    cfg.write_text(SimConfig(**SMALL).to_json())
    # 50 chunks: enough that a loaded machine cannot finish them all before the kill lands
    args = ["--config", str(cfg), "--n-train", "200", "--splits", "train", "--seed", "11",
            "--chunk-size", "4", "--n-jobs", "1", "--quiet"]
    out = tmp_path / "killed"
    env = dict(os.environ, SOURCE_DATE_EPOCH=EPOCH)
    proc = subprocess.Popen([sys.executable, str(ROOT / "prepare_data.py"), *args, "--output-dir", str(out)],
                            cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    chunks = out / "_chunks" / "train"
    deadline = time.monotonic() + 120
    try:
        while len(list(chunks.glob("*.sha256"))) < 2:  # two chunks complete: kill it now
            assert proc.poll() is None, "prepare_data.py ended before it could be killed"
            assert time.monotonic() < deadline, "prepare_data.py made no chunk in 120 s"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "train.h5").exists()  # no half-written final file
    assert not list(out.glob("*.h5"))
    done = len(list(chunks.glob("*.sha256")))
    assert 2 <= done < 50

    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    with caplog.at_level(logging.INFO, logger="deblendkit.generation.split"):
        assert main(args + ["--output-dir", str(out)]) == 0
    assert f"resuming, {done} of 50 chunks already complete" in caplog.text
    assert sorted(p.name for p in out.iterdir()) == ["train.h5"]  # no chunks, no temporary files left
    assert main(args + ["--output-dir", str(tmp_path / "clean")]) == 0  # uninterrupted
    assert sha256(out / "train.h5") == sha256(tmp_path / "clean" / "train.h5")


def test_sigterm_is_a_clean_interrupt(tmp_path):
    cfg = tmp_path / "small.json"
    cfg.write_text(SimConfig(**SMALL).to_json())
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "prepare_data.py"), "--config", str(cfg), "--n-train", "400",
         "--splits", "train", "--chunk-size", "2", "--n-jobs", "1", "--quiet", "--output-dir", str(tmp_path / "d")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    chunks = tmp_path / "d" / "_chunks" / "train"
    deadline = time.monotonic() + 120
    while not list(chunks.glob("*.sha256")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted; no partial .h5 file was left; complete chunks are kept" in err
    assert not list((tmp_path / "d").glob("*.h5")) and not list((tmp_path / "d").glob(".*.tmp"))


# ---------------------------------------------------------------------------
# Damaged data files, through get_train_data (in memory and out of core)
# ---------------------------------------------------------------------------
def _flip_in_isolated(path: Path, row: int) -> None:
    with h5py.File(path, "r") as f:
        info = f["isolated"].id.get_chunk_info_by_coord((row, 0, 0, 0, 0))
    data = bytearray(path.read_bytes())
    data[info.byte_offset + info.size // 2] ^= 0x20
    path.write_bytes(bytes(data))


def _damage(path: Path, how: str) -> str:
    """Damage ``path``; return a regex of the expected message."""
    name = path.name.replace(".", r"\.")
    if how == "truncated":
        with open(path, "r+b") as fh:
            fh.truncate(path.stat().st_size // 2)
        return rf"{name} is not a readable HDF5 file \(truncated or not HDF5\)"
    if how == "bit_flip_data":
        _flip_in_isolated(path, 2)
        return rf"{name} is corrupt: reading dataset 'isolated' failed"
    if how == "other_schema":
        with h5py.File(path, "a") as f:
            f.attrs["schema_version"] = 99
        return rf"{name} has schema_version 99; this kit reads \d+; regenerate it"
    if how == "missing_dataset":
        with h5py.File(path, "a") as f:
            del f["psf"]
        return rf"{name} has no dataset 'psf'; expected blend, isolated, psf"
    if how == "edited_attribute":
        with h5py.File(path, "a") as f:
            f.attrs["pixel_scale"] = 0.25
        return rf"{name} is corrupt: its root attributes do not match their checksum"
    if how == "not_hdf5":
        path.write_text("not a data file\n" * 50)
        return rf"{name} is not a readable HDF5 file"
    if how == "missing":
        path.unlink()
        return rf"data file .*{name} does not exist; make the data first with `python prepare_data.py`"
    raise AssertionError(how)


FILE_FAULTS = ["truncated", "bit_flip_data", "other_schema", "missing_dataset", "edited_attribute",
               "not_hdf5", "missing"]


@pytest.mark.parametrize("how", FILE_FAULTS)
@pytest.mark.parametrize("out_of_core", [False, True])
def test_damaged_data_file_is_one_clear_error(damaged_kit, monkeypatch, how, out_of_core):
    monkeypatch.setenv("DEBLEND_OUT_OF_CORE", "1" if out_of_core else "0")
    expected = _damage(damaged_kit / "data" / "train.h5", how)
    with pytest.raises(DataFileError, match=expected):
        X, y = ramp_problem.get_train_data(str(damaged_kit))
        # Out of core nothing is read up front: a damaged chunk shows when it is read.
        np.asarray(y)
        np.asarray(X.blend)


def test_flipped_chunk_out_of_core_only_its_rows_fail(damaged_kit, monkeypatch):
    monkeypatch.setenv("DEBLEND_OUT_OF_CORE", "1")
    _flip_in_isolated(damaged_kit / "data" / "train.h5", 5)
    X, y = ramp_problem.get_train_data(str(damaged_kit))
    reference = load_split(damaged_kit / "data" / "test.h5")  # untouched file still loads
    assert len(reference[0]) == 4
    assert np.isfinite(y[0:5]).all()  # rows before the damaged one read fine
    with pytest.raises(DataFileError, match=r"train\.h5 is corrupt: reading dataset 'isolated' failed"):
        y[4:6]


def test_random_bit_flips_are_caught_or_harmless(kit, tmp_path):
    """Flip one random bit at 150 places: every read raises DataFileError or returns the original."""
    original = kit / "data" / "test.h5"
    ref = read_dataset(original)
    data = original.read_bytes()
    rng = np.random.default_rng(2024)
    caught = harmless = 0
    for pos in rng.choice(len(data), size=150, replace=False):
        damaged = bytearray(data)
        damaged[pos] ^= 1 << int(rng.integers(8))
        path = tmp_path / "test.h5"
        path.write_bytes(bytes(damaged))
        try:
            got = read_dataset(path)
        except DataFileError:
            caught += 1
            continue
        for name in PER_BLEND_DATASETS:
            assert np.array_equal(getattr(got, name), getattr(ref, name), equal_nan=True), (pos, name)
        assert got.truth.equals(ref.truth), pos
        assert json.dumps(got.attrs, sort_keys=True) == json.dumps(ref.attrs, sort_keys=True), pos
        harmless += 1
    assert caught + harmless == 150 and caught > 100


def test_no_global_heap_in_data_files(kit):
    """No variable-length data, so no HDF5 global heap: it has no checksum, and one flipped bit in an
    object length there made the HDF5 library loop forever reading the attribute (a hang, not an error)."""
    for name in ("train.h5", "test.h5"):
        assert b"GCOL" not in (kit / "data" / name).read_bytes()
    with h5py.File(kit / "data" / "test.h5", "r") as f:
        assert all(not h5py.check_string_dtype(f.attrs.get_id(k).dtype) or
                   h5py.check_string_dtype(f.attrs.get_id(k).dtype).length for k in f.attrs)
    ds = read_dataset(kit / "data" / "test.h5")
    assert isinstance(ds.attrs["split"], str) and isinstance(ds.attrs["config"], dict)


def test_bad_out_of_core_setting(kit, monkeypatch):
    monkeypatch.setenv("DEBLEND_OUT_OF_CORE", "maybe")
    with pytest.raises(ConfigError, match=re.escape(
            "DEBLEND_OUT_OF_CORE must be 1 or 0 (true/false, yes/no, on/off) or auto, got 'maybe'")):
        ramp_problem.get_train_data(str(kit))


# ---------------------------------------------------------------------------
# Broken submissions
# ---------------------------------------------------------------------------
GOOD = """
import numpy as np

class Deblender:
    def fit(self, X, y):
        return self

    def predict(self, X):
        blend = np.asarray(X.blend)
        n, c, h, w = blend.shape
        out = np.zeros((n, X.max_galaxies, c, h, w), np.float32)
        for i, m in enumerate(np.asarray(X.n_galaxies)):
            out[i, :m] = blend[i] / max(int(m), 1)
        return out
"""


def _variant(predict_tail: str = "", fit_body: str = "return self") -> str:
    """GOOD with lines spliced into fit and at the end of predict (``out`` in scope)."""
    src = GOOD.replace("        return self\n", textwrap.indent(fit_body, " " * 8) + "\n", 1)
    return src.replace("        return out\n", textwrap.indent(predict_tail or "return out", " " * 8) + "\n")


# name -> (source, step, regex of the message after "submission '<name>'")
CASES = {
    "raises_in_fit": (_variant(fit_body="raise ValueError('boom in fit')"), "fit",
                      r" failed in fit on 8 blends: ValueError: boom in fit$"),
    "raises_in_predict": (_variant("raise RuntimeError('boom in predict')"), "predict",
                          r" failed in predict on 4 blends: RuntimeError: boom in predict$"),
    "exits_in_fit": (_variant(fit_body="import sys; sys.exit(3)"), "fit",
                     r" called exit\(3\) in fit; expected fit to return"),
    "nan": (_variant("out[1, 0, 0, 0, 0] = np.nan\nreturn out"), "predict",
            r", predict: predictions contain 1 NaN and 0 inf values in 1 blend\(s\) \(blend indexes 1\); "
            r"expected finite values everywhere"),
    "inf": (_variant("out[2] = np.inf\nreturn out"), "predict",
            r", predict: predictions contain 0 NaN and \d+ inf values in 1 blend\(s\) \(blend indexes 2\)"),
    "float64_overflow": (_variant("return out.astype(np.float64) * 1e300"), "predict",
                         r", predict: after conversion from float64 to float32 \(values beyond \+-3.4e38 "
                         r"overflow\): predictions contain 0 NaN and \d+ inf"),
    "wrong_shape": (_variant("return out[:, :2]"), "predict",
                    r", predict: predictions have shape \(4, 2, 3, 20, 20\); expected \(4, 3, 3, 20, 20\)"),
    "missing_blend": (_variant("return out[:-1]"), "predict",
                      r", predict: predictions have shape \(3, 3, 3, 20, 20\); expected \(4, 3, 3, 20, 20\)"),
    "complex_dtype": (_variant("return out.astype(np.complex64)"), "predict",
                      r", predict: predictions have non-numeric dtype complex64; expected real numbers"),
    "bool_dtype": (_variant("return out > 0"), "predict",
                   r", predict: predictions have non-numeric dtype bool; expected real numbers"),
    "object_dtype": (_variant("o = np.empty(out.shape[0], dtype=object)\n"
                              "o[:] = [x for x in out]\nreturn o"), "predict",
                     r", predict: predictions are an object array \(dtype object"),
    "list": (_variant("return [x for x in out]"), "predict",
             r", predict: returned a list \(np.stack the list\); expected a numpy.ndarray of shape "
             r"\(4, 3, 3, 20, 20\)"),
    "none": (_variant("return None"), "predict", r", predict: returned a NoneType; expected a numpy.ndarray"),
    "negative_flux": (_variant("return -out - 1000.0"), "predict",
                      r", predict: blend 0 slot 0 band 'g' has total flux -\S+ ADU, below -5 x the noise "
                      r"of the stamp sum \(-\S+ ADU\); expected a galaxy's \(positive\) flux"),
    "no_class": ("import numpy as np\n", "import",
                 r": deblender.py defines no class 'Deblender'; expected a class with fit\(X, y\) and predict\(X\)"),
    "syntax_error": ("class Deblender(:\n", "import", r" failed on import of deblender.py: SyntaxError"),
    "no_predict": ("class Deblender:\n    def fit(self, X, y):\n        return self\n", "import",
                   r": class Deblender has no method predict\(\); expected fit\(X, y\) and predict\(X\)"),
    "constructor_args": (GOOD.replace("class Deblender:", "class Deblender:\n    def __init__(self, lr):\n"
                                      "        self.lr = lr\n"), "init",
                         r" failed when creating Deblender\(\): TypeError: .*; expected a constructor that "
                         r"takes no arguments"),
}

ACCEPTED = {
    "int_dtype": _variant("return np.rint(out).astype(np.int32)"),
    "float64": _variant("return out.astype(np.float64)"),
    "negative_pixels": _variant("out[:, :, :, 0, 0] = -50.0\nreturn out"),
    "garbage_in_empty_slots": _variant("out[:, 2] = 7.0\nreturn out"),
}


def _write_submission(root: Path, name: str, source: str) -> str:
    folder = root / "submissions" / name
    folder.mkdir(parents=True)
    (folder / "deblender.py").write_text(source)
    return str(folder)


def _run(kit, sub, *, budget=None):
    wf = DeblenderWorkflow(time_budget_s=budget)
    X_train, y_train = load_split(kit / "data" / "train.h5")
    X_test, _ = load_split(kit / "data" / "test.h5")
    model = wf.train_submission(sub, X_train, y_train)
    return wf.test_submission(model, X_test)


@pytest.mark.parametrize("name", sorted(CASES))
def test_broken_submission_gets_one_clear_message(kit, tmp_path, name):
    source, step, expected = CASES[name]
    sub = _write_submission(tmp_path, name, source)
    with pytest.raises(SubmissionError) as info:
        _run(kit, sub)
    message = str(info.value)
    assert "\n" not in message  # one line
    assert message.startswith(f"submission {name!r}")
    assert re.search("^submission " + re.escape(repr(name)) + expected, message), message
    if step in ("fit", "predict"):
        assert step in message


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_acceptable_outputs_pass_as_float32(kit, tmp_path, name):
    sub = _write_submission(tmp_path, name, ACCEPTED[name])
    y_pred = _run(kit, sub)
    assert y_pred.dtype == np.float32 and y_pred.shape == (4, 3, 3, 20, 20)


@pytest.mark.parametrize("step", ["fit", "predict"])
def test_time_budget_interrupts_the_step(kit, tmp_path, monkeypatch, step):
    slow = "import time\ntime.sleep(30)"
    source = _variant(fit_body=slow + "\nreturn self") if step == "fit" else _variant(slow + "\nreturn out")
    sub = _write_submission(tmp_path, "slow", source)
    monkeypatch.setenv("DEBLEND_TIME_BUDGET_S", "0.5")
    t0 = time.perf_counter()
    with pytest.raises(SubmissionError, match=(
        rf"^submission 'slow' ran out of time in {step} on \d+ blends: the budget is 0.5 s per step "
        r"\(DEBLEND_TIME_BUDGET_S\), it was stopped after 0.\d s; expected " + step
    )):
        _run(kit, sub)
    assert time.perf_counter() - t0 < 10  # interrupted, not waited for
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # timer cleared
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.default_int_handler, None)


def test_time_budget_holds_when_the_submission_swallows_the_interrupt(kit, tmp_path):
    source = _variant(fit_body=(
        "import time\nt = time.monotonic()\n"
        "while time.monotonic() - t < 1.0:\n    try:\n        time.sleep(0.05)\n"
        "    except BaseException:\n        pass\nreturn self"))
    sub = _write_submission(tmp_path, "stubborn", source)
    with pytest.raises(SubmissionError, match=r"^submission 'stubborn' ran out of time in fit"):
        _run(kit, sub, budget=0.3)


def test_time_budget_off_thread_is_checked_after_the_step(kit, tmp_path):
    sub = _write_submission(tmp_path, "slowish", _variant(fit_body="import time\ntime.sleep(0.6)\nreturn self"))
    errors = []

    def target():
        try:
            _run(kit, sub, budget=0.2)
        except SubmissionError as exc:
            errors.append(str(exc))

    t = threading.Thread(target=target)
    t.start()
    t.join(60)
    assert len(errors) == 1 and errors[0].startswith("submission 'slowish' ran out of time in fit")


def test_within_budget_and_nested_timers_are_untouched(kit, tmp_path):
    sub = _write_submission(tmp_path, "good", GOOD)
    signal.setitimer(signal.ITIMER_REAL, 100.0)
    try:
        _run(kit, sub, budget=30.0)
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 50.0 < left <= 100.0  # the outer timer is given back
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


@pytest.mark.parametrize("raw", ["abc", "-1", "0", "nan", "inf"])
def test_bad_time_budget_setting(kit, tmp_path, monkeypatch, raw):
    sub = _write_submission(tmp_path, "good", GOOD)
    monkeypatch.setenv("DEBLEND_TIME_BUDGET_S", raw)
    with pytest.raises(ConfigError, match=rf"DEBLEND_TIME_BUDGET_S must be a positive number of seconds, got '{raw}'"):
        _run(kit, sub)
    with pytest.raises(ConfigError, match="time_budget_s must be a positive number"):
        DeblenderWorkflow(time_budget_s=-1)

