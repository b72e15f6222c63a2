"""Several submissions on one run: a failing one does not stop or change the others (deblendkit.ramp.runner)."""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from deblendkit.cli.run import main
from deblendkit.config import SimConfig
from deblendkit.errors import ConfigError
from deblendkit.ramp import runner
from deblendkit.ramp.runner import RunResult, list_submissions, run_submissions

SMALL = dict(stamp_size=20, psf_size=9, bands=("g", "r", "i"), max_galaxies=3, edge_margin=3)

PROBLEM = '''
import os
from deblendkit.ramp import problem as _kit
from deblendkit.ramp.prediction import make_predictions_type
from deblendkit.ramp.score_types import make_score_types
from deblendkit.ramp.workflow import DeblenderWorkflow

problem_title = _kit.PROBLEM_TITLE
_meta = _kit.data_meta(os.path.dirname(os.path.abspath(__file__)))
Predictions = make_predictions_type(max_galaxies=_meta.max_galaxies, n_bands=len(_meta.bands),
                                    stamp_size=_meta.stamp_size)
workflow = DeblenderWorkflow()
score_types = make_score_types(_meta.bands)[:2]  # deblend, flux_scatter_r: enough here, and fast
get_cv = _kit.get_cv
get_train_data = _kit.get_train_data
get_test_data = _kit.get_test_data
'''

GOOD = '''
import numpy as np

class Deblender:
    def fit(self, X, y):
        return self

    def predict(self, X):
        blend = np.asarray(X.blend)
        out = np.zeros((len(X), X.max_galaxies) + blend.shape[1:], np.float32)
        for i, m in enumerate(np.asarray(X.n_galaxies)):
            out[i, :m] = blend[i] / m
        return out
'''

SUBMISSIONS = {
    "good": GOOD,
    "raises": GOOD.replace("        return self", "        raise ValueError('no model for you')"),
    "returns_list": GOOD.replace("        return out", "        return list(out)"),
    "slow": GOOD.replace("        return self", "        import time\n        time.sleep(30)"),
    "exits": GOOD.replace("        return self", "        raise SystemExit(4)"),
}


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> Path:
    from deblendkit.cli.prepare_data import main as prepare

    root = tmp_path_factory.mktemp("kit")
    cfg = root / "small.json"
    cfg.write_text(SimConfig(**SMALL).to_json())
    rc = prepare(["--config", str(cfg), "--output-dir", str(root / "data"), "--n-train", "8", "--n-test", "4",
                  "--n-mini", "6", "--n-jobs", "1", "--chunk-size", "4", "--quiet"])
    assert rc == 0
    (root / "problem.py").write_text(PROBLEM)
    for name, source in SUBMISSIONS.items():
        (root / "submissions" / name).mkdir(parents=True)
        (root / "submissions" / name / "deblender.py").write_text(source)
    return root


def test_list_submissions(kit, tmp_path):
    (kit / "submissions" / "not_a_submission").mkdir(exist_ok=True)
    assert list_submissions(kit) == sorted(SUBMISSIONS)
    assert list_submissions(tmp_path) == []


def test_inprocess_failures_do_not_stop_or_change_the_others(kit):
    names = ["raises", "good", "returns_list", "slow", "exits"]
    results = run_submissions(names, kit_dir=kit, mode="inprocess", time_budget_s=1.0)
    assert [r.submission for r in results] == names
    by = {r.submission: r for r in results}
    assert [r.status for r in results] == ["failed", "ok", "failed", "failed", "failed"]
    assert by["raises"].message == "submission 'raises' failed in fit on 8 blends: ValueError: no model for you"
    assert by["returns_list"].message.startswith(
        "submission 'returns_list', predict: returned a list (np.stack the list); expected a numpy.ndarray")
    assert by["slow"].message.startswith("submission 'slow' ran out of time in fit on 8 blends: the budget is 1 s")
    assert by["slow"].seconds < 10
    assert by["exits"].message.startswith("submission 'exits' called exit(4) in fit")
    assert all(r.scores == {} and r.message for r in results if not r.ok)
    good = by["good"]
    assert good.message == "" and set(good.scores) == {"deblend", "flux_scatter_r"}
    assert 0.0 < good.scores["deblend"] <= 1.0
    alone = run_submissions(["good"], kit_dir=kit, mode="inprocess")[0]
    assert alone.scores == good.scores  # unaffected by its neighbours
    assert "DEBLEND_TIME_BUDGET_S" not in os.environ  # the budget does not leak


def test_quick_test_uses_the_mini_files(kit):
    r = run_submissions(["good"], kit_dir=kit, mode="inprocess", quick_test=True, score_names=["deblend"])[0]
    full = run_submissions(["good"], kit_dir=kit, mode="inprocess", score_names=["deblend"])[0]
    assert r.ok and set(r.scores) == {"deblend"} and r.scores != full.scores
    assert "RAMP_TEST_MODE" not in os.environ


def test_arguments_are_checked(kit, tmp_path):
    with pytest.raises(ConfigError, match=r"mode must be one of \['subprocess', 'inprocess'\]"):
        run_submissions(["good"], kit_dir=kit, mode="threads")
    with pytest.raises(ConfigError, match="no submissions to run"):
        run_submissions(kit_dir=tmp_path)
    with pytest.raises(ConfigError, match="timeout_s must be a positive number"):
        run_submissions(["good"], kit_dir=kit, timeout_s=0)
    with pytest.raises(ConfigError, match="time_budget_s must be a positive number"):
        run_submissions(["good"], kit_dir=kit, mode="inprocess", time_budget_s=float("nan"))
    with pytest.raises(ConfigError, match="no problem.py in"):
        run_submissions(["good"], kit_dir=tmp_path, mode="inprocess")


def test_cli_writes_statuses_and_exits_1_when_one_failed(kit, tmp_path, capsys):
    status = tmp_path / "status.json"
    rc = main(["good", "raises", "--kit-dir", str(kit), "--mode", "inprocess", "--json", str(status)])
    assert rc == 1
    out = capsys.readouterr().out
    assert "1 of 2 submissions ok" in out and "submission 'raises' failed in fit" in out
    rows = json.loads(status.read_text())
    assert [(r["submission"], r["status"]) for r in rows] == [("good", "ok"), ("raises", "failed")]
    assert main(["good", "--kit-dir", str(kit), "--mode", "inprocess"]) == 0


def test_subprocess_timeout_kills_the_whole_process_group(kit, tmp_path, monkeypatch):
    pid_file = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(120)\n"
    )
    monkeypatch.setattr(runner, "_ramp_test_command", lambda: [sys.executable, "-c", script, "--"])
    t0 = time.monotonic()
    r = runner.run_subprocess("good", kit_dir=kit, timeout_s=3.0)
    assert time.monotonic() - t0 < 30
    assert r.status == "timeout" and r.scores == {}
    assert r.message == ("submission 'good' ran past the run's time limit of 3 s and was stopped; "
                         "expected ramp-test to finish within it")
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except FileNotFoundError:
            break
        if state == "Z":
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the grandchild {pid} still runs after the timeout")


def test_error_line_extraction():
    out = (
        "Traceback (most recent call last):\n  File 'x', line 1\nValueError: boom\n\n"
        "The above exception was the direct cause of the following exception:\n\n"
        "deblendkit.errors.SubmissionError: submission 'x' failed in fit on 4 blends: ValueError: boom\n"
    )
    assert runner._error_message(out) == "submission 'x' failed in fit on 4 blends: ValueError: boom"
    assert runner._error_message("MemoryError\n") == "MemoryError"
    assert runner._error_message("plain last words\n") == "plain last words"
    assert runner._error_message("") == "no output"


def test_run_result_ok():
    assert RunResult("a", "ok", "", 1.0).ok and not RunResult("a", "failed", "x", 1.0).ok


@pytest.mark.slow
def test_subprocess_ramp_test_isolates_failures_and_reads_scores(kit):
    (kit / "submissions" / "killed").mkdir(exist_ok=True)
    (kit / "submissions" / "killed" / "deblender.py").write_text(
        GOOD.replace("        return self", "        import os, signal\n        os.kill(os.getpid(), signal.SIGKILL)"))
    try:
        results = run_submissions(["raises", "good", "killed"], kit_dir=kit, quick_test=True, timeout_s=300)
    finally:
        shutil.rmtree(kit / "submissions" / "killed")
    by = {r.submission: r for r in results}
    assert [r.status for r in results] == ["failed", "ok", "failed"]
    assert by["raises"].message == "submission 'raises' failed in fit on 3 blends: ValueError: no model for you"
    assert by["killed"].message.startswith("submission 'killed': ramp-test was killed by signal SIGKILL")
    assert "\x1b" not in by["killed"].message  # terminal colours stripped
    assert set(by["good"].scores) == {"deblend", "flux_scatter_r"}
    assert 0.0 < by["good"].scores["deblend"] <= 1.0
    assert (kit / "submissions" / "good" / "training_output" / "fold_0" / "scores.csv").exists()


@pytest.mark.slow
def test_a_killed_runner_leaves_no_ramp_test_behind(kit):
    """SIGKILL of `deblend-run` mid-run: its ramp-test child (own session) dies with it (#21)."""
    import signal
    import subprocess
    import time

    import psutil

    runner_proc = subprocess.Popen([sys.executable, "-m", "deblendkit.cli.run", "slow", "--kit-dir", str(kit)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    me = psutil.Process(runner_proc.pid)
    deadline = time.monotonic() + 60
    children = []
    while time.monotonic() < deadline and not children:
        children = me.children(recursive=True)
        time.sleep(0.2)
    assert children, "the runner started no ramp-test"
    time.sleep(2)  # ramp-test is in the submission's fit (sleeping 30 s)
    runner_proc.send_signal(signal.SIGKILL)
    runner_proc.wait()
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"left behind: {[p.pid for p in alive]}"
