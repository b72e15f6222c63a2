"""The ramp-board worker runs every submission in the sandbox, scored outside (#15), without the full stack.

ramp-engine's worker API (``setup``, ``launch_submission``, ``collect_results``,
as the dispatcher calls it) with the ``venv`` worker of ``rampboard/ramp_compat.py``,
in the ramp-board environment, on a small kit laid out as a deployment lays it
out (``ramp-kits``, ``ramp-data``, an event's ``submissions`` folder beside other
teams' folders, a ``config.yml`` with the database password). Two hostile
submissions of ``tests/attacks`` aim at the labels (``ramp-data/.../test.h5``,
readable by the dispatcher's user) and must score 0 where the board shows scores
(CV validation, test) instead of 1.0. The full stack (PostgreSQL, dispatcher,
leaderboard page) is ``tests/test_rampboard.py``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers.sandbox import SANDBOX_MARKS

REPO = Path(__file__).resolve().parents[2]
RAMP_PYTHON = REPO / ".venv-rampboard" / "bin" / "python"
ATTACKS = ("glob_h5", "open_labels")


pytestmark = SANDBOX_MARKS

WORKER_SCRIPT = """
import json, sys
sys.path.insert(0, {rampboard!r})
import ramp_compat
ramp_compat.apply(("engine",))
config = json.loads({config!r})
workers = [ramp_compat.VenvWorker(config, name) for name in {names!r}]
for w in workers:
    w.setup()
    w.launch_submission()
out = {{}}
for w in workers:
    returncode, error = w.collect_results()
    out[w.submission] = [returncode, error[-3000:]]
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def worker_run(small_data_dir, tmp_path_factory):
    """The two attacks trained by two venv workers at once, as the dispatcher runs them."""
    root = tmp_path_factory.mktemp("rb_worker")
    # deploy.sh makes .venv-rampboard (and nothing else when there is no deployment to stop)
    subprocess.run(["bash", str(REPO / "rampboard" / "deploy.sh"), "down", "--deploy-dir", str(root / "none")],
                   cwd=REPO, check=True, timeout=1800, stdout=subprocess.DEVNULL)
    kit, data = root / "ramp-kits" / "galaxy_deblending", root / "ramp-data" / "galaxy_deblending"
    subs, event = root / "events" / "ev" / "submissions", root / "events" / "ev"
    (kit / "data").mkdir(parents=True)
    (data / "data").mkdir(parents=True)
    shutil.copy(REPO / "problem.py", kit / "problem.py")
    for split in ("train", "test"):
        shutil.copy(small_data_dir / f"{split}.h5", data / "data" / f"{split}.h5")
        shutil.copy(small_data_dir / f"{split}_mini.h5", kit / "data" / f"{split}_mini.h5")
    shutil.copytree(REPO / "submissions" / "starting_kit", subs / "submission_000000001")  # another team's
    (root / "config.yml").write_text("sqlalchemy:\n  password: hunter2\n")
    labels = data / "data" / "test.h5"
    for name in ATTACKS:
        shutil.copytree(REPO / "tests" / "attacks" / name, subs / name)
        (subs / name / "target.txt").write_text(str(labels))
    config = {"worker_type": "venv", "venv_dir": str(REPO / ".venv"), "timeout": 600,
              "env": {"DEBLEND_TRAIN_SCORE_BLENDS": "2"}, "sandbox_limits": {"max_processes": 256},
              "kit_dir": str(kit), "data_dir": str(data), "submissions_dir": str(subs),
              "logs_dir": str(event / "logs"), "predictions_dir": str(event / "predictions")}
    script = WORKER_SCRIPT.format(rampboard=str(REPO / "rampboard"), config=json.dumps(config), names=list(ATTACKS))
    proc = subprocess.run([str(RAMP_PYTHON), "-c", script], cwd=root, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=1200)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-4000:]
    return {"results": json.loads(lines[-1][len("RESULT "):]), "predictions": event / "predictions",
            "logs": event / "logs", "labels": labels}


@pytest.mark.parametrize("attack", ATTACKS)
def test_attack_through_the_worker_scores_zero_on_the_boards(worker_run, attack):
    returncode, error = worker_run["results"][attack]
    assert returncode == 0, error
    bagged = pd.read_csv(worker_run["predictions"] / attack / "bagged_scores.csv", index_col=[0, 1])
    # what ramp-board shows: the last bag's validation score (public board) and test score (private)
    for step in ("valid", "test"):
        assert bagged.xs(step, level="step")["deblend"].iloc[-1] == 0.0, (attack, step, bagged)
    for fold in sorted((worker_run["predictions"] / attack).glob("fold_*")):
        scores = pd.read_csv(fold / "scores.csv", index_col=0)
        assert scores.loc["valid", "deblend"] == 0.0 and scores.loc["test", "deblend"] == 0.0
        assert (fold / "state.txt").read_text() == "scored"


def test_the_worker_ran_the_sandboxed_ramp_test_and_never_the_plain_one(worker_run):
    for attack in ATTACKS:
        log = (worker_run["logs"] / attack / "log").read_text(errors="replace")
        assert "ESCAPED" not in log
        # the times ramp-board shows are the sandbox's fit / predict times, not the whole sandbox run
        for fold in sorted((worker_run["predictions"] / attack).glob("fold_*")):
            times = [float((fold / f"{s}_time").read_text()) for s in ("train", "valid", "test")]
            assert all(0 <= t < 30 for t in times), times


def test_without_bubblewrap_the_worker_refuses_and_runs_nothing(tmp_path):
    # a PATH without bwrap: the sandboxed ramp-test stops before training anything
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("setpriv", "prlimit", "nice"):
        if shutil.which(tool):
            os.symlink(shutil.which(tool), bin_dir / tool)
    out = tmp_path / "subs"
    shutil.copytree(REPO / "tests" / "attacks" / "glob_h5", out / "glob_h5")
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "python"), str(REPO / "rampboard" / "sandboxed_ramp_test.py"),
                           "--submission", "glob_h5", "--ramp-kit-dir", str(REPO), "--ramp-data-dir", str(tmp_path),
                           "--ramp-submission-dir", str(out), "--save-output"],
                          env={**os.environ, "PATH": str(bin_dir)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=300)
    assert proc.returncode == 1
    assert "SandboxError: the hosted sandbox needs `bwrap` on PATH, which is missing" in proc.stdout
    assert not (out / "glob_h5" / "training_output").exists()


def test_the_sandbox_scratch_is_writable_by_nobody_and_the_rest_is_not():
    # matplotlib (scarlet2's import) and torch (the U-Net's compile cache) need a writable place:
    # bwrap made its tmpfs 0755 root, so both baselines failed in the worker's sandbox. /tmp stays
    # unwritable (a file written there could pose as a host path under /tmp, e.g. a kit's scores.csv)
    from deblendkit.ramp.sandbox import SandboxLimits, sandbox_command

    script = ('touch /scratch/x && echo scratch-writable; touch "$TMPDIR/y" && echo tmpdir-writable; '
              "touch /tmp/x 2>/dev/null || echo tmp-read-only; touch /etc/x 2>/dev/null || echo etc-read-only; "
              "touch /sandbox/submission/x 2>/dev/null || echo submission-read-only; id -u; pwd")
    cmd = sandbox_command(["/bin/sh", "-c", script], submission_dir=REPO / "submissions" / "starting_kit",
                          data_files={}, limits=SandboxLimits())
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["scratch-writable", "tmpdir-writable", "tmp-read-only", "etc-read-only",
                                  "submission-read-only", "65534", "/scratch"]
