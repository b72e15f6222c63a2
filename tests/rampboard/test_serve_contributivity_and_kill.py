"""A deployed event with two submissions: contributivities and the ensemble's row (#20); SIGKILL of deploy.sh (#21).

``deploy.sh up --serve`` trains and scores ``starting_kit`` and ``forward_model``,
runs ``ramp-database compute-contributivity``, then keeps PostgreSQL, the
frontend and the dispatcher running. The contributivities read back from the
database must sum to 1, and the leaderboard pages show them and the
ensemble's scores as a row of their own. Then ``deploy.sh`` itself is killed
with SIGKILL (it cannot stop anything), and ``deploy.sh down`` must find what
it left from the state file, stop it, say so in one line, and leave no
process of the deployment alive (counted through ``/proc``).
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY_SH = REPO / "rampboard" / "deploy.sh"
RAMP_PYTHON = REPO / ".venv-rampboard" / "bin" / "python"
EVENT = "galaxy_deblending_local"
PASSWORD = "correct-horse-43"
sys.path.insert(0, str(REPO / "rampboard"))

from leaderboard_client import RampClient, parse_table  # noqa: E402


def _postgres_impossible() -> str | None:
    if glob.glob("/usr/lib/postgresql/*/bin/initdb") or os.environ.get("RAMPBOARD_PG_BINDIR"):
        return None
    if os.geteuid() == 0 and shutil.which("apt-get"):
        return None
    return "PostgreSQL is not installed and cannot be (not root, or no apt-get)"


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_postgres_impossible() is not None,
                                                   reason=str(_postgres_impossible()))]


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None


def _alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] != "Z"


def _processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, pgid, command line) of every live process."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is None or st[0] == "Z":
                continue
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                cmd = ""
            out[int(entry.name)] = (int(st[1]), int(st[2]), cmd)
    return out


def _tree(roots: set[int], procs: dict) -> set[int]:
    """``roots`` and their descendants, and the members of the roots' process groups."""
    found = set(r for r in roots if r in procs) | {p for p, (_, pg, _) in procs.items() if pg in roots}
    while True:
        more = {p for p, (pp, _, _) in procs.items() if pp in found} - found
        if not more:
            return found
        found |= more


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``deploy.sh up --serve`` until it serves; yields its facts; ``down --purge`` at the end."""
    root = tmp_path_factory.mktemp("rb_serve")
    deploy_dir = root / "deploy"
    port = _free_port()
    cmd = ["bash", str(DEPLOY_SH), "up", "--serve", "--deploy-dir", str(deploy_dir), "--port", str(port),
           "--submissions", "starting_kit,forward_model", "--n-train", "9", "--n-test", "3", "--n-mini", "4",
           "--admin-password", PASSWORD, "--worker-env", "DEBLEND_TRAIN_SCORE_BLENDS=2", "--n-workers", "2",
           "--dispatch-timeout", "1500", "--timeout", "1200"]
    out = root / "up_output.txt"
    t0 = time.monotonic()
    with open(out, "w") as f:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        while "Serving http://" not in out.read_text(errors="replace"):
            if proc.poll() is not None:
                pytest.fail(f"deploy.sh up --serve exited ({proc.returncode}):\n{out.read_text()[-6000:]}")
            if time.monotonic() - t0 > 2400:
                pytest.fail(f"deploy.sh up --serve did not serve within 2400 s:\n{out.read_text()[-6000:]}")
            time.sleep(2)
        yield {"dir": deploy_dir, "url": f"http://127.0.0.1:{port}", "proc": proc, "output": out,
               "seconds": time.monotonic() - t0}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=120)
        subprocess.run(["bash", str(DEPLOY_SH), "down", "--purge", "--deploy-dir", str(deploy_dir)], cwd=REPO,
                       timeout=300, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONTRIB = """
from ramp_database.utils import session_scope
from ramp_database.tools.event import get_event
from ramp_database.tools.submission import get_submission_by_id, get_submissions
from ramp_utils import read_config
import json
with session_scope(read_config('config.yml', filter_section='sqlalchemy')) as s:
    ev = get_event(s, {event!r})
    subs = [get_submission_by_id(s, i) for i, _, _ in get_submissions(s, {event!r}, state='scored')]
    print("RESULT " + json.dumps({{"contributivity": {{x.name: x.contributivity for x in subs}},
                                  "valid": ev.combined_combined_valid_score, "test": ev.combined_combined_test_score}}))
"""


def test_contributivities_of_the_two_submissions_sum_to_one(served):
    out = subprocess.run([str(RAMP_PYTHON), "-c", CONTRIB.format(event=EVENT)], cwd=served["dir"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    assert out.returncode == 0 and line, out.stdout
    got = json.loads(line[-1][len("RESULT "):])
    contrib = got["contributivity"]
    assert sorted(contrib) == ["forward_model", "starting_kit_test"]
    assert sum(contrib.values()) == pytest.approx(1.0, abs=1e-9)
    assert all(0.0 <= c <= 1.0 for c in contrib.values())
    # the ensemble's bagged scores are those ramp-database read from rampwf's blend (its own files)
    combined = served["dir"] / "events" / EVENT / "submissions" / "training_output" / "bagged_scores_combined.csv"
    rows = [ln.split(",") for ln in combined.read_text().splitlines()[1:]]
    last = {step: float(v) for step, n_bag, v in rows if int(n_bag) == max(int(r[1]) for r in rows)}
    assert got["valid"] == pytest.approx(last["valid"]) and got["test"] == pytest.approx(last["test"])
    # leaderboard pages: each submission's contributivity (percent, rounded) and the ensemble's row
    client = RampClient(served["url"])
    client.login("organiser", PASSWORD)
    private = client.get(f"/events/{EVENT}/private_leaderboard")
    table = parse_table(private, table_id="leaderboard")
    assert "contributivity" in table.header, table.header
    shown = {r["submission"]: int(r["contributivity"]) for r in table.records()}
    assert shown == {k: int(round(100 * v)) for k, v in contrib.items()}
    ensemble = parse_table(private, table_id="ensemble")
    assert len(ensemble.rows) == 1 and ensemble.header[0] == "ensemble (not ranked)"
    row = ensemble.records()[0]
    assert float(row["deblend (public: CV validation)"]) == pytest.approx(got["valid"], abs=6e-5)
    assert float(row["deblend (private: test)"]) == pytest.approx(got["test"], abs=6e-5)
    names = {r["submission"] for r in table.records()}
    assert not any("ensemble" in n for n in names)  # not a ranked row
    public = parse_table(client.get(f"/events/{EVENT}/leaderboard"), table_id="ensemble")
    assert "deblend (public: CV validation)" in public.header


def test_sigkill_of_deploy_then_down_leaves_no_process(served):
    state = json.loads((served["dir"] / "run" / "state.json").read_text())
    roots = {int(state["frontend"]["pid"]), int(state["dispatcher"]["pid"])}
    pg_dir = Path(state["postgres"]["pg_dir"])
    postmaster = int((pg_dir / "data" / "postmaster.pid").read_text().split()[0])
    roots.add(postmaster)
    left = _tree(roots, _processes())
    assert all(_alive(p) for p in roots), (roots, state)
    # deploy.sh (exec'd into deploy.py: the same pid) killed: it can stop nothing itself
    os.kill(served["proc"].pid, signal.SIGKILL)
    served["proc"].wait(timeout=60)
    time.sleep(1)
    assert all(_alive(p) for p in roots), "the services died with deploy.py: nothing left to test"
    down = subprocess.run(["bash", str(DEPLOY_SH), "down", "--deploy-dir", str(served["dir"])], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert down.returncode == 0, down.stdout
    said = [ln for ln in down.stdout.splitlines() if "was killed and left running" in ln]
    assert len(said) == 1, down.stdout
    assert f"deploy run {served['proc'].pid} was killed" in said[0]
    for what in ("the frontend", "the dispatcher", "PostgreSQL"):
        assert what in said[0], said[0]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in left):
        time.sleep(0.2)
    assert not [p for p in left if _alive(p)], f"still running: {[_processes().get(p) for p in left]}"
    mine = [(p, cmd) for p, (_, _, cmd) in _processes().items()
            if str(served["dir"]) in cmd or str(pg_dir) in cmd]
    assert mine == [], mine
    assert "deploy" not in json.loads((served["dir"] / "run" / "state.json").read_text())
    # and a second down finds nothing more to stop
    again = subprocess.run(["bash", str(DEPLOY_SH), "down", "--deploy-dir", str(served["dir"])], cwd=REPO,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert again.returncode == 0 and "stopped" not in again.stdout, again.stdout
