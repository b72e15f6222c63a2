"""``down`` after a killed ``deploy.py`` run, fast form (#21): stand-in services, no PostgreSQL.

A real ``deploy.sh up --serve`` killed with SIGKILL is tested in
``test_serve_contributivity_and_kill.py`` (slow). Here a killed run is made by
hand: a ``deploy.py``-like process records its pid and two services (each a
process group of three processes, the leader's command line carrying the marker
``ramp_compat.py``, as ramp-board's commands do) in ``run/state.json``, and is
killed with SIGKILL; ``cmd_down`` must stop every process of both groups and
say so in one line.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "rampboard"))

import deploy  # noqa: E402  (rampboard/deploy.py)

# A stand-in for ramp_compat.py's services: a shell and its two sleeps (3 processes), its own process group.
SERVICE = "sleep 600 & sleep 600; : ramp_compat.py"
KILLED_RUN = """
import json, os, subprocess, sys, time
from pathlib import Path
state = Path(sys.argv[1])
pids = {}
for name in ("frontend", "dispatcher"):
    p = subprocess.Popen(["bash", "-c", %r], start_new_session=True)
    pids[name] = {"pid": p.pid}
state.parent.mkdir(parents=True, exist_ok=True)
state.write_text(json.dumps({"deploy": {"pid": os.getpid()}, **pids}))
print("ready", flush=True)
time.sleep(600)
""" % SERVICE


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def killed_run(tmp_path):
    """A deploy-like run killed with SIGKILL after starting two services; yields (dir, its pid, the groups)."""
    deploy_dir = tmp_path / "deploy"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(deploy_dir / "run" / "state.json")],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    state = json.loads((deploy_dir / "run" / "state.json").read_text())
    groups = {name: int(state[name]["pid"]) for name in ("frontend", "dispatcher")}
    time.sleep(0.3)  # the shells have started their children
    members = {p for g in groups.values() for p in deploy.group_members(g)}
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    try:
        yield deploy_dir, proc.pid, groups, members
    finally:
        for g in groups.values():
            try:
                os.killpg(g, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_down_stops_what_a_killed_run_left_and_says_so_in_one_line(killed_run, caplog):
    deploy_dir, pid, groups, members = killed_run
    assert len(members) == 6 and all(_alive(p) for p in members)
    assert deploy.killed_run(json.loads((deploy_dir / "run" / "state.json").read_text())) == pid
    with caplog.at_level(logging.INFO, logger="rampboard.deploy"):
        assert deploy.cmd_down(deploy_dir, purge=False) == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "rampboard.deploy"]
    assert lines == [f"deploy run {pid} was killed and left running the frontend (pid {groups['frontend']}, "
                     f"3 processes of its group), the dispatcher (pid {groups['dispatcher']}, 3 processes of its "
                     "group): stopped them"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in members):
        time.sleep(0.1)
    assert [p for p in members if _alive(p)] == []
    assert json.loads((deploy_dir / "run" / "state.json").read_text()) == {}


def test_a_live_run_is_not_taken_for_a_killed_one(tmp_path):
    assert deploy.killed_run({"deploy": {"pid": os.getpid()}}) is None
    assert deploy.killed_run({}) is None
