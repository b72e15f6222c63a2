"""Hosting on ramp-board: ``rampboard/deploy.sh`` end to end, and its pieces.

The slow test deploys the kit as an event on a local ramp-board (its own
PostgreSQL server on 127.0.0.1, ramp-board in ``.venv-rampboard``), lets the
dispatcher train and score every baseline of ``submissions/`` with the kit's
``ramp-test``, then logs in to the frontend as a person would and reads the
leaderboard page: each baseline must be there with a numeric ``deblend``
score, equal to the one ramp-test wrote for that submission. Everything the
deploy started is stopped, and the deployment removed, even on failure.

The other tests check the script's helpers without a server (fast).
"""
from __future__ import annotations

import glob
import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEPLOY_SH = REPO / "rampboard" / "deploy.sh"
sys.path.insert(0, str(REPO / "rampboard"))

import deploy  # noqa: E402  (rampboard/deploy.py; ramp-board itself is imported lazily)
from leaderboard_client import RampClient, parse_table  # noqa: E402

from deblendkit.errors import ConfigError  # noqa: E402

EVENT = "galaxy_deblending_local"
PASSWORD = "correct-horse-42"
#: Hostile submissions of tests/attacks deployed beside the baselines (#15), each with its target:
#: the labels, the deployment's config.yml (database password), another team's submission.
ATTACKS = {"glob_h5": None, "open_labels": "ramp-data/galaxy_deblending/data/test.h5",
           "credentials": "config.yml", "other_submission": f"events/{EVENT}/submissions/submission_000000001/deblender.py"}


def _baselines() -> list[str]:
    return sorted(p.parent.name for p in (REPO / "submissions").glob("*/deblender.py"))


def _postgres_impossible() -> str | None:
    """Why PostgreSQL can be neither found nor installed here (None: it can)."""
    if glob.glob("/usr/lib/postgresql/*/bin/initdb") or os.environ.get("RAMPBOARD_PG_BINDIR"):
        return None
    if os.geteuid() == 0 and shutil.which("apt-get"):
        return None  # deploy.sh installs Debian's package
    return "PostgreSQL is not installed and cannot be (not root, or no apt-get)"


def _artefacts(default_root: Path) -> Path:
    """Where the test leaves logs and a screenshot for a person (``DEBLEND_TEST_ARTIFACTS``)."""
    base = os.environ.get("DEBLEND_TEST_ARTIFACTS")
    out = Path(base) / "rampboard" if base else default_root / "artefacts"
    out.mkdir(parents=True, exist_ok=True)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """``deploy.sh up --keep-running`` on small data; yields its facts; ``down --purge`` after."""
    reason = _postgres_impossible()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("rampboard")
    deploy_dir = root / "deploy"
    artefacts = _artefacts(root)
    port = _free_port()
    attacks = _attack_copies(root / "attacks", deploy_dir)
    cmd = [
        "bash", str(DEPLOY_SH), "up", "--keep-running", "--deploy-dir", str(deploy_dir), "--port", str(port),
        "--n-train", "9", "--n-test", "3", "--n-mini", "4", "--admin-password", PASSWORD,
        "--worker-env", "DEBLEND_UNET_MAX_TRAIN_SECONDS=8", "--worker-env", "DEBLEND_TRAIN_SCORE_BLENDS=2",
        "--n-workers", "2", "--dispatch-timeout", "3000", "--timeout", "2400",
    ] + [arg for a in attacks for arg in ("--extra-submission", str(a))]
    try:
        proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=3600)
        (root / "deploy_output.txt").write_text(proc.stdout)
        if proc.returncode != 0:
            pytest.fail(f"deploy.sh up failed (exit {proc.returncode}):\n{proc.stdout[-6000:]}")
        yield {"dir": deploy_dir, "url": f"http://127.0.0.1:{port}", "output": proc.stdout,
               "artefacts": artefacts}
    finally:
        # keep the logs as the test's artefacts, then stop everything and remove the deployment
        for rel in ("logs", f"events/{EVENT}/logs", "leaderboard_page.html", "run"):
            src = deploy_dir / rel
            if src.is_dir():
                shutil.copytree(src, artefacts / rel, dirs_exist_ok=True)
            elif src.is_file():
                (artefacts / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, artefacts / rel)
        if deploy_dir.exists():
            subprocess.run(["bash", str(DEPLOY_SH), "down", "--purge", "--deploy-dir", str(deploy_dir)],
                           cwd=REPO, timeout=300, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _attack_copies(out: Path, deploy_dir: Path) -> list[Path]:
    """The attacks with their target's path written into ``deblender.py`` (ramp-board submits that file only)."""
    copies = []
    for name, rel in ATTACKS.items():
        code = (REPO / "tests" / "attacks" / name / "deblender.py").read_text()
        line = next(ln for ln in code.splitlines() if ln.startswith("TARGET = "))
        code = code.replace(line, f"TARGET = {str(deploy_dir / rel) if rel else ''!r}")
        (out / name).mkdir(parents=True)
        (out / name / "deblender.py").write_text(code)
        copies.append(out / name)
    return copies


def _submission_folders(deploy_dir: Path) -> dict[str, list[str]]:
    """Baseline folder -> ramp-board's folders holding the same ``deblender.py`` (byte for byte)
    as the kit's copy (what was submitted; the repository's may have changed since)."""
    kit = deploy_dir / "ramp-kits" / "galaxy_deblending" / "submissions"
    sources = {b: (kit / b / "deblender.py").read_bytes() for b in _baselines()}
    found: dict[str, list[str]] = {name: [] for name in sources}
    for f in sorted((deploy_dir / "events" / EVENT / "submissions").glob("submission_*/deblender.py")):
        for name, code in sources.items():
            if f.read_bytes() == code:
                found[name].append(f.parent.name)
    return found


@pytest.mark.slow
def test_leaderboard_page_lists_every_baseline_with_its_ramp_test_score(deployment):
    client = RampClient(deployment["url"])
    client.login("organiser", PASSWORD)
    page = client.get(f"/events/{EVENT}/leaderboard")
    table = parse_table(page, table_id="leaderboard")
    assert {"team", "submission", "deblend"} <= set(table.header), table.header
    rows = {r["submission"]: r for r in table.records()}

    predictions = deployment["dir"] / "events" / EVENT / "predictions"
    folders = _submission_folders(deployment["dir"])
    for baseline in _baselines():
        name = "starting_kit_test" if baseline == "starting_kit" else baseline
        assert name in rows, f"{name} is not on the leaderboard page; rows: {sorted(rows)}"
        shown = float(rows[name]["deblend"])
        assert math.isfinite(shown) and 0.0 <= shown <= 1.0, rows[name]
        assert rows[name]["team"] == "organiser"
        # the number shown is ramp-test's bagged validation score of that submission
        # (the sandbox copy of starting_kit has no predictions: it is never trained)
        scored = [f for f in folders[baseline] if (predictions / f / "bagged_scores.csv").is_file()]
        assert len(scored) == 1, (baseline, folders[baseline])
        bagged = _bagged_valid_score(predictions / scored[0] / "bagged_scores.csv", "deblend")
        assert shown == pytest.approx(round(bagged, 4), abs=1e-9), (name, shown, bagged)


@pytest.mark.slow
def test_attacks_through_the_dispatcher_score_zero_on_the_leaderboard(deployment):
    # unsandboxed, the glob_h5 cheat reached 1.0 on this leaderboard (#15); the worker now runs it in the sandbox
    client = RampClient(deployment["url"])
    client.login("organiser", PASSWORD)
    rows = {r["submission"]: r for r in parse_table(client.get(f"/events/{EVENT}/leaderboard"),
                                                    table_id="leaderboard").records()}
    for name in ATTACKS:
        assert name in rows, f"{name} is not on the leaderboard; rows: {sorted(rows)}"
        assert float(rows[name]["deblend"]) == 0.0, rows[name]
    assert float(rows["starting_kit_test"]["deblend"]) > 0.3
    private = parse_table(client.get(f"/events/{EVENT}/private_leaderboard"), table_id="leaderboard")
    by_name = {r["submission"]: r for r in private.records()}
    test_cols = [c for c in private.header if c in ("bag private deblend", "mean private deblend")]
    assert test_cols, private.header
    for name in ATTACKS:
        assert all(float(by_name[name][c]) == 0.0 for c in test_cols), (by_name[name], private.header)
    for name in ATTACKS:
        log = next((deployment["dir"] / "events" / EVENT / "logs").glob(f"submission_*{name}*/log"), None)
        assert log is None or "ESCAPED" not in log.read_text(errors="replace")


def _bagged_valid_score(path: Path, score: str) -> float:
    """Validation score of the last bag in rampwf's ``bagged_scores.csv``."""
    import pandas as pd

    df = pd.read_csv(path, index_col=[0, 1])
    valid = df.xs("valid", level="step")
    return float(valid[score].iloc[-1])


@pytest.mark.slow
def test_leaderboard_page_renders_in_a_browser(deployment, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium (Debian package chromium) to take the screenshot")
    client = RampClient(deployment["url"])
    client.login("organiser", PASSWORD)
    page = client.get(f"/events/{EVENT}/leaderboard")
    # The browser has no session cookie: it renders the page fetched when logged in,
    # with its styles and scripts from the server (static files need no login).
    saved = deployment["artefacts"] / "leaderboard_page_for_browser.html"
    saved.write_text(page.replace("<head>", f'<head><base href="{deployment["url"]}/">', 1))
    shot = deployment["artefacts"] / "leaderboard.png"
    run = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,900", "--virtual-time-budget=5000",
         f"--screenshot={shot}", saved.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (1400, 900)
    from matplotlib.image import imread

    assert imread(shot)[..., :3].std() > 0.05  # not a blank page
    print(f"ramp-board leaderboard screenshot: {shot}")


@pytest.mark.slow
def test_event_plot_page_loads_its_bokehjs_from_the_server(deployment):
    client = RampClient(deployment["url"])
    client.login("organiser", PASSWORD)
    page = client.get(f"/event_plots/{EVENT}")
    assert "/bokehjs/js/bokeh.min.js" in page and "Bokeh" in page
    js = client.get("/bokehjs/js/bokeh.min.js")
    assert len(js) > 100_000


@pytest.mark.slow
def test_leaderboard_needs_a_login(deployment):
    anonymous = RampClient(deployment["url"])
    page = anonymous.get(f"/events/{EVENT}/leaderboard")  # redirected to the login form
    assert 'name="password"' in page and 'id="leaderboard"' not in page


@pytest.mark.slow
def test_organiser_is_saved_as_event_admin(deployment):
    # ramp-database's add_event_admin lost its row under SQLAlchemy 2 (no session.add);
    # ramp_compat.py fixes it: read the table back through ramp-database itself.
    code = (
        "from ramp_database.utils import session_scope\n"
        "from ramp_database.tools.event import get_event_admin\n"
        "from ramp_utils import read_config\n"
        "with session_scope(read_config('config.yml', filter_section='sqlalchemy')) as s:\n"
        f"    print(get_event_admin(s, '{EVENT}', 'organiser') is not None)\n"
    )
    out = subprocess.run([str(REPO / ".venv-rampboard" / "bin" / "python"), "-c", code], cwd=deployment["dir"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert out.returncode == 0, out.stdout
    assert out.stdout.strip().splitlines()[-1] == "True", out.stdout


@pytest.mark.slow
def test_event_description_shows_the_reference_rows_unranked(deployment):
    client = RampClient(deployment["url"])
    client.login("organiser", PASSWORD)
    event_page = client.get(f"/events/{EVENT}")
    assert "/notebook/galaxy_deblending" in event_page  # the description the event page shows
    description = client.get("/notebook/galaxy_deblending")
    refs = {r["reference"]: r for r in parse_table(description, table_id="references").records()}
    assert list(refs) == ["zeros", "oracle apportioning", "known morphology"]
    for board, split in (("public board: train.h5", "train"), ("private board: test.h5", "test")):
        written = _csv_rows(deployment["dir"] / f"references_{split}.csv")
        for name, row in refs.items():
            assert float(row[f"deblend ({board})"]) == pytest.approx(float(written[name]["deblend"]), abs=5e-5)
        assert float(refs["zeros"][f"deblend ({board})"]) == 0.0
    # marked as references, never ranked: not rows of either leaderboard
    for page in ("leaderboard", "private_leaderboard"):
        names = {r["submission"] for r in parse_table(client.get(f"/events/{EVENT}/{page}"),
                                                      table_id="leaderboard").records()}
        assert not names & set(refs), (page, names)


def _csv_rows(path: Path) -> dict[str, dict[str, str]]:
    import csv

    with open(path, newline="") as f:
        return {row["reference"]: row for row in csv.DictReader(f)}


@pytest.mark.slow
def test_user_interactions_admin_page_renders(deployment):
    client = RampClient(deployment["url"])
    client.login("organiser", PASSWORD)
    page = client.get("/user_interactions")  # HTTP 500 on ramp-board 0.10.1 with no interaction recorded
    assert "User interactions" in page
    assert "<th>interaction</th>" in page  # the (empty) table of interactions


@pytest.mark.slow
def test_down_stops_the_servers(deployment):
    state = json.loads((deployment["dir"] / "run" / "state.json").read_text())
    pid = state["frontend"]["pid"]
    pg_pid_file = Path(state["postgres"]["pg_dir"]) / "data" / "postmaster.pid"
    assert pg_pid_file.exists()
    pg_pid = int(pg_pid_file.read_text().split()[0])
    rc = subprocess.run(["bash", str(DEPLOY_SH), "down", "--deploy-dir", str(deployment["dir"])], cwd=REPO,
                        timeout=300, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert rc.returncode == 0, rc.stdout
    for p in (pid, pg_pid):
        assert not _running(p), f"process {p} still runs"
    port = int(deployment["url"].rsplit(":", 1)[1])
    with socket.socket() as s:  # nothing listens on the frontend's port any more
        with pytest.raises(ConnectionRefusedError):
            s.connect(("127.0.0.1", port))
    with socket.socket() as s:  # and a new server could take it (closed connections may linger in TIME_WAIT)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def _running(pid: int) -> bool:
    """Process ``pid`` exists and has not exited (an exited one that its parent,
    here the container's init, has not reaped yet is a zombie: state Z)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


# ----------------------------------------------------------------------------- helpers (fast)
LEADERBOARD_HTML = """<html><body><table id="other"><tr><td>x</td></tr></table>
<table id="leaderboard"><thead><tr><th>team</th><th>submission</th><th>deblend</th></tr></thead>
<tbody><tr><td>organiser</td><td><a href="/h/deblender.py">starting_kit_test</a></td><td>0.5932</td></tr>
<tr><td>organiser</td><td>unet</td><td>nan</td></tr></tbody></table></body></html>"""


def test_parse_table_reads_the_leaderboard_table_by_id():
    table = parse_table(LEADERBOARD_HTML, table_id="leaderboard")
    assert table.header == ("team", "submission", "deblend")
    assert table.records()[0] == {"team": "organiser", "submission": "starting_kit_test", "deblend": "0.5932"}
    assert len(table.rows) == 2
    with pytest.raises(ValueError, match='no <table> with id="scores"'):
        parse_table(LEADERBOARD_HTML, table_id="scores")


def test_check_leaderboard_reports_missing_and_non_numeric_scores():
    table = parse_table(LEADERBOARD_HTML, table_id="leaderboard")
    assert deploy.check_leaderboard(table, ["starting_kit_test"], "deblend") == []
    problems = deploy.check_leaderboard(table, ["starting_kit_test", "unet", "forward_model"], "deblend")
    assert problems == ["unet: deblend is 'nan', not a number", "forward_model: not on the leaderboard"]


def test_sandbox_baseline_gets_ramp_boards_test_suffix():
    assert deploy.submission_db_name("starting_kit") == "starting_kit_test"
    assert deploy.submission_db_name("unet") == "unet"


def test_options_enforce_ramp_database_naming_and_known_submissions(tmp_path):
    with pytest.raises(ConfigError, match=r"event_name must start with the problem name and an underscore "
                                          r"\('galaxy_deblending_', a rule of ramp-database\); got 'deblending'"):
        deploy.DeployOptions(deploy_dir=tmp_path, event_name="deblending", submissions=("starting_kit",))
    with pytest.raises(ConfigError, match=r"submission 'nope' has no submissions/nope/deblender.py"):
        deploy.DeployOptions(deploy_dir=tmp_path, submissions=("starting_kit", "nope"))
    with pytest.raises(ConfigError, match=r"n_train must be >= 3 blends \(3 CV folds\); got 2"):
        deploy.DeployOptions(deploy_dir=tmp_path, n_train=2, submissions=("starting_kit",))
    with pytest.raises(ConfigError, match=r"kit_venv .* has no executable bin/ramp-test"):
        deploy.DeployOptions(deploy_dir=tmp_path, kit_venv=tmp_path, submissions=("starting_kit",))


def test_up_refuses_to_replace_a_directory_that_is_no_deployment(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    opts = deploy.DeployOptions(deploy_dir=tmp_path, submissions=("starting_kit",), force=True)
    with pytest.raises(FileExistsError, match="holds no deployment"):
        deploy.cmd_up(opts, serve=False, keep_running=False)
    assert (tmp_path / "precious.txt").read_text() == "keep me"
