#!/usr/bin/env python
"""Deploy the kit as an event on a local ramp-board, score the baselines, show the leaderboard.

Run through ``rampboard/deploy.sh`` (it makes both virtual environments and
installs PostgreSQL first), with the ramp-board environment's Python::

    rampboard/deploy.sh up [--serve | --keep-running] [options]   # deploy, score, show
    rampboard/deploy.sh serve                                      # run an existing deployment
    rampboard/deploy.sh down [--purge]                             # stop what is left running

``up`` does, in ``--deploy-dir`` (default ``build/rampboard``):

1. a PostgreSQL server of its own (``initdb`` into the deployment, listening
   on 127.0.0.1 only, password authentication), a role and a database;
2. ``config.yml`` (database, Flask) and ``events/EVENT/config.yml`` (event,
   worker, dispatcher) from ``rampboard/config/*.yml.in``;
3. ``ramp-data/PROBLEM/data/{train,test}.h5`` with ``prepare_data.py`` (small
   sizes by default) and ``ramp-kits/PROBLEM`` from this repository (problem.py,
   the submissions, the notebook as ``PROBLEM_starting_kit.ipynb``, ...);
4. ``ramp-setup deploy-event --no-cloning`` (problem, event, CV folds and score
   types into the database), an admin user signed up to the event, and one
   ``ramp-database add-submission`` per baseline;
5. ``ramp-launch dispatcher``, which trains and scores each submission with the
   kit's own ``ramp-test`` (the ``venv`` worker of ``ramp_compat.py``), until
   none is left;
6. ``ramp-frontend test-launch`` on 127.0.0.1:PORT; logs in, reads the
   event's leaderboard page and prints it; fails unless every baseline is
   there with a numeric official score.

Every ramp-board command runs through ``rampboard/ramp_compat.py`` (the
workarounds for current packages). Processes started are recorded in
``DEPLOY_DIR/run/state.json`` so that ``down`` stops them, even after a crash.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from leaderboard_client import RampClient, parse_table, wait_for_server  # noqa: E402
from references_page import (  # noqa: E402
    add_reference_section,
    read_reference_csv,
    reference_command,
    reference_section,
)

from deblendkit._process import die_with_parent  # noqa: E402
from deblendkit.errors import ConfigError, DataFileError, DeblendKitError, OutputExistsError  # noqa: E402

log = logging.getLogger("rampboard.deploy")

#: Python of this (ramp-board) environment: runs ramp_compat.py.
RAMP_PYTHON = sys.executable
RAMP_COMPAT = HERE / "ramp_compat.py"
#: Files and folders of the repository copied into the ramp kit (when they exist).
KIT_FILES = ("problem.py", "prepare_data.py", "requirements.txt", "pyproject.toml", "README.md",
             "deblendkit", "data/README.md")
#: Notebook of the kit, in the repository; ramp-board wants ``<problem>_starting_kit.ipynb``.
NOTEBOOK = "starting_kit.ipynb"
#: ramp-board's default sandbox submission (copied to every user who signs up).
SANDBOX = "starting_kit"
#: Environment of ramp-test in the worker, unless overridden with --worker-env.
DEFAULT_WORKER_ENV = {
    # the U-Net baseline's training budget per fold, seconds
    "DEBLEND_UNET_MAX_TRAIN_SECONDS": "30",
    # training blends predicted per fold for the "train" score (see deblendkit/workflow.py)
    "DEBLEND_TRAIN_SCORE_BLENDS": "4",
    # the fold's prediction arrays (y_pred_{train,test}.npz), which ramp-database's
    # compute-contributivity blends (see deblendkit/ramp/save_output.py)
    "DEBLEND_SAVE_Y_PRED": "1",
}
#: Limits of the worker's sandbox (deblendkit.ramp.sandbox.SandboxLimits fields; the wall clock is
#: --timeout); more processes than SandboxLimits' 64, since --n-workers sandboxes share the user nobody.
DEFAULT_SANDBOX_LIMITS = {"max_processes": 256}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class DeployError(DeblendKitError, RuntimeError):
    """A step of the deployment failed (the message names the step and its log)."""


# ----------------------------------------------------------------------------- options
@dataclass(frozen=True, kw_only=True)
class DeployOptions:
    """Options of ``up`` (see ``deploy.py up --help``)."""

    deploy_dir: Path
    problem_name: str = "galaxy_deblending"
    event_name: str = "galaxy_deblending_local"
    event_title: str = "Galaxy deblending (local deployment)"
    submissions: tuple[str, ...] = ()
    extra_submissions: tuple[Path, ...] = ()
    n_train: int = 12
    n_test: int = 6
    n_mini: int = 8
    seed: int = 0
    data_from: Path | None = None
    kit_venv: Path = REPO / ".venv"
    port: int = 8080
    pg_port: int = 0
    worker_env: dict = field(default_factory=lambda: dict(DEFAULT_WORKER_ENV))
    timeout: int = 1800
    sandbox_limits: dict = field(default_factory=lambda: dict(DEFAULT_SANDBOX_LIMITS))
    n_workers: int = 1
    dispatch_timeout: float = 3600.0
    admin_user: str = "organiser"
    admin_password: str | None = None
    force: bool = False

    def __post_init__(self):
        for name in ("problem_name", "event_name", "admin_user"):
            value = getattr(self, name)
            if not _NAME.match(value):
                raise ConfigError(
                    f"{name} must be letters, digits and underscores, starting with a letter; got {value!r}"
                )
        if not self.event_name.startswith(self.problem_name + "_"):
            raise ConfigError(
                f"event_name must start with the problem name and an underscore "
                f"({self.problem_name + '_'!r}, a rule of ramp-database); got {self.event_name!r}"
            )
        if not self.event_title.strip():
            raise ConfigError(f"event_title must not be blank; got {self.event_title!r}")
        for name in ("n_train", "n_test"):
            if getattr(self, name) < 3:
                raise ConfigError(f"{name} must be >= 3 blends (3 CV folds); got {getattr(self, name)}")
        if self.n_mini < 2:
            raise ConfigError(f"n_mini must be >= 2 blends; got {self.n_mini}")
        for name in ("port", "pg_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ConfigError(f"{name} must be in 0..65535 (0: any free port); got {getattr(self, name)}")
        if self.timeout <= 0 or self.n_workers < 1 or not self.dispatch_timeout > 0:
            raise ConfigError(
                f"timeout, dispatch_timeout must be > 0 s and n_workers >= 1; got "
                f"{self.timeout}, {self.dispatch_timeout}, {self.n_workers}"
            )
        if not self.submissions:
            raise ConfigError("no submission to deploy: submissions is empty")
        for sub in self.submissions:
            if not (REPO / "submissions" / sub / "deblender.py").is_file():
                raise ConfigError(
                    f"submission {sub!r} has no submissions/{sub}/deblender.py in {REPO}; available: "
                    f"{', '.join(available_submissions()) or 'none'}"
                )
        names = [*self.submissions, *(Path(p).name for p in self.extra_submissions)]
        for path in self.extra_submissions:
            if not (Path(path) / "deblender.py").is_file() or not _NAME.match(Path(path).name):
                raise ConfigError(f"extra submission {str(path)!r} must be a folder named like a Python "
                                  f"identifier holding a deblender.py")
        if len(set(names)) != len(names):
            raise ConfigError(f"submission names must be unique; got {names}")
        ramp_test = self.kit_venv / "bin" / "ramp-test"
        if not os.access(ramp_test, os.X_OK):
            raise ConfigError(
                f"kit_venv {self.kit_venv} has no executable bin/ramp-test; expected the kit's "
                f"virtual environment (./setup_env.sh makes .venv)"
            )
        for key, value in self.worker_env.items():
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(key)):
                raise ConfigError(f"worker_env names must be environment variable names; got {key!r}")
            if "\n" in str(value):
                raise ConfigError(f"worker_env value of {key} must be one line; got {value!r}")


def available_submissions() -> list[str]:
    """Folders of ``submissions/`` with a ``deblender.py``: the sandbox first, then by name."""
    subs = sorted(p.parent.name for p in (REPO / "submissions").glob("*/deblender.py"))
    return sorted(subs, key=lambda s: (s != SANDBOX, s))


def submission_db_name(folder: str) -> str:
    """Name of a baseline in the event: ramp-board's own convention (``submit_starting_kits``).

    The sandbox ``starting_kit`` already exists, untrained, for every user who
    signs up, so the trained copy is ``starting_kit_test``.
    """
    return folder + "_test" if folder == SANDBOX else folder


# ----------------------------------------------------------------------------- state
class State:
    """``DEPLOY_DIR/run/state.json``: what is running, so that ``down`` can stop it."""

    def __init__(self, deploy_dir: Path):
        self.path = deploy_dir / "run" / "state.json"

    def load(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}

    def update(self, **items) -> None:
        data = self.load()
        for k, v in items.items():
            if v is None:
                data.pop(k, None)
            else:
                data[k] = v
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.path)


# ----------------------------------------------------------------------------- helpers
def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_port_free(port: int, what: str) -> None:
    """ConfigError unless a server could listen on 127.0.0.1:``port`` now.

    With SO_REUSEADDR, as the Flask and PostgreSQL servers set it: connections
    of a server stopped a moment ago (TIME_WAIT) do not count.
    """
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise ConfigError(
                f"{what} port {port} of 127.0.0.1 is taken ({exc}); choose another (0: any free)"
            ) from None


def _env() -> dict:
    """Environment of ramp-board commands: this environment's bin first on PATH (jupyter)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(RAMP_PYTHON).parent), env.get("PATH", "")])
    env.pop("PYTHONPATH", None)
    return env


def run(cmd: list, *, cwd: Path, log_path: Path, what: str, timeout: float = 600, env=None) -> str:
    """Run ``cmd``, appending its output to ``log_path``; DeployError (with the tail) if it fails."""
    cmd = [str(c) for c in cmd]
    log.debug("$ %s", " ".join(cmd))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    parent = os.getpid()
    try:
        # a step dies with this run, SIGKILL included (the services it leaves are in the state file)
        proc = subprocess.run(cmd, cwd=cwd, env=env or _env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout,
                              preexec_fn=lambda: die_with_parent(parent))
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode(errors="replace")
        with open(log_path, "a") as f:
            f.write(f"$ {' '.join(cmd)}\n{out}\n[timed out after {timeout:.0f} s]\n")
        raise DeployError(f"{what}: timed out after {timeout:.0f} s; log: {log_path}") from None
    with open(log_path, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n{proc.stdout}\n[exit {proc.returncode}]\n")
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
        raise DeployError(f"{what} failed (exit {proc.returncode}); log: {log_path}\n{tail}")
    return proc.stdout


def ramp_cmd(*args) -> list:
    """A ramp-board command line through ramp_compat.py."""
    return [RAMP_PYTHON, RAMP_COMPAT, *args]


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (an exited child nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid`` (from ``/proc``; zombies left out)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields_ = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields_[2]) == pgid and fields_[0] != "Z":
            out.append(int(entry.name))
    return sorted(out)


def stop_process_group(pid: int, *, marker: str, grace: float = 15.0) -> int:
    """SIGTERM (then SIGKILL) the process group led by ``pid`` if its command line has ``marker``.

    The check on the command line guards against a recycled pid. Members of the group
    still alive when the leader is gone (or after ``grace`` seconds) get SIGKILL. Returns
    how many processes the group had (0: nothing was stopped).
    """
    if not _pid_alive(pid) or marker not in _cmdline(pid):
        return 0
    members = group_members(pid) or [pid]
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return 0
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if not _pid_alive(pid):
            break
        time.sleep(0.2)
    for _ in range(50):  # the leader is gone or out of time: no member of its group outlives it
        if not group_members(pid):
            break
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    return len(members)


# ----------------------------------------------------------------------------- PostgreSQL
def postgres_bindir() -> Path:
    """Directory of Debian's PostgreSQL server programs (highest version installed)."""
    env_dir = os.environ.get("RAMPBOARD_PG_BINDIR")
    if env_dir:
        candidates = [Path(env_dir)]
    else:
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                            key=lambda p: [int(x) for x in re.findall(r"\d+", p.parent.name)] or [0])
        candidates.reverse()
    for c in candidates:
        if (c / "initdb").is_file() and (c / "pg_ctl").is_file():
            return c
    raise DeployError(
        "no PostgreSQL server found (looked for initdb and pg_ctl in "
        f"{env_dir or '/usr/lib/postgresql/*/bin'}); install Debian's package: "
        "apt-get update && apt-get install -y postgresql"
    )


class Postgres:
    """A PostgreSQL cluster of this deployment, in ``pg_dir/data``, on 127.0.0.1:``port``.

    As root, the server programs run as the ``postgres`` user (PostgreSQL
    refuses root). No Unix socket: clients use TCP with a password.
    """

    def __init__(self, *, pg_dir: Path, port: int, bindir: Path):
        self.pg_dir = Path(pg_dir)
        self.port = int(port)
        self.bindir = Path(bindir)
        self.data = self.pg_dir / "data"
        self.logfile = self.pg_dir / "postgres.log"

    @property
    def run_as(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if _is_root() else []

    def to_state(self) -> dict:
        return {"pg_dir": str(self.pg_dir), "port": self.port, "bindir": str(self.bindir)}

    @classmethod
    def from_state(cls, d: dict) -> "Postgres":
        return cls(pg_dir=Path(d["pg_dir"]), port=int(d["port"]), bindir=Path(d["bindir"]))

    def init(self, superuser_password: str, log_path: Path) -> None:
        self.pg_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.pg_dir, 0o700)
        pwfile = self.pg_dir / "pwfile"
        pwfile.write_text(superuser_password + "\n")
        os.chmod(pwfile, 0o600)
        if _is_root():
            shutil.chown(self.pg_dir, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        try:
            run(self.run_as + [self.bindir / "initdb", "-D", self.data, "-U", "postgres",
                               "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
                               "--locale=C", "--no-instructions"],
                cwd=self.pg_dir, log_path=log_path, what="initdb (PostgreSQL cluster)")
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self, log_path: Path) -> None:
        opts = f"-c listen_addresses=127.0.0.1 -c unix_socket_directories='' -p {self.port}"
        run(self.run_as + [self.bindir / "pg_ctl", "-D", self.data, "-l", self.logfile, "-o", opts,
                           "-w", "-t", "60", "start"],
            cwd=self.pg_dir, log_path=log_path, what=f"PostgreSQL start on 127.0.0.1:{self.port}")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def stop(self, log_path: Path) -> None:
        if not self.running():
            return
        run(self.run_as + [self.bindir / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "60", "stop"],
            cwd=self.pg_dir if self.pg_dir.exists() else Path("/"), log_path=log_path,
            what="PostgreSQL stop")


def postgres_accessible(path: Path) -> bool:
    """Whether the ``postgres`` user may enter ``path`` (always True when not root)."""
    if not _is_root():
        return True
    return subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(path)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def create_database(*, port: int, superuser_password: str, user: str, password: str, name: str) -> None:
    """Role ``user`` (password login) owning a new database ``name``."""
    import psycopg2
    from psycopg2 import sql

    conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", password=superuser_password,
                            dbname="postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(user)), (password,))
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(user)))
    finally:
        conn.close()


# ----------------------------------------------------------------------------- the deployment
class Deployment:
    """Paths of a deployment directory (ramp-board's layout) and the steps that fill it."""

    def __init__(self, deploy_dir: Path, *, problem_name: str | None = None, event_name: str | None = None):
        self.dir = Path(deploy_dir).resolve()
        self.state = State(self.dir)
        saved = self.state.load().get("event", {})
        self.problem_name = problem_name or saved.get("problem_name")
        self.event_name = event_name or saved.get("event_name")
        self.config = self.dir / "config.yml"
        self.logs = self.dir / "logs"

    @property
    def kit_dir(self) -> Path:
        return self.dir / "ramp-kits" / self.problem_name

    @property
    def data_dir(self) -> Path:
        return self.dir / "ramp-data" / self.problem_name

    @property
    def event_dir(self) -> Path:
        return self.dir / "events" / self.event_name

    @property
    def event_config(self) -> Path:
        return self.event_dir / "config.yml"

    @property
    def daemon_config(self) -> Path:
        """Same event config with the dispatcher polling for new submissions (``serve``)."""
        return self.event_dir / "config_daemon.yml"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    # -- configs -----------------------------------------------------------------------
    def write_configs(self, opts: DeployOptions, *, db: dict) -> None:
        tmpl = string.Template((HERE / "config" / "config.yml.in").read_text())
        # JSON strings are YAML strings: no value can be read back as a number or a list
        self.config.write_text(tmpl.substitute(
            flask_secret=json.dumps(secrets.token_hex(24)), db_user=json.dumps(db["user"]),
            db_password=json.dumps(db["password"]), db_port=int(db["port"]), db_name=json.dumps(db["name"]),
        ))
        os.chmod(self.config, 0o600)
        tmpl = string.Template((HERE / "config" / "event_config.yml.in").read_text())
        self.event_dir.mkdir(parents=True, exist_ok=True)
        common = dict(problem_name=opts.problem_name, event_name=opts.event_name,
                      event_title=json.dumps(opts.event_title), kit_venv=json.dumps(str(opts.kit_venv.resolve())),
                      timeout=opts.timeout, n_workers=opts.n_workers,
                      worker_env=json.dumps({k: str(v) for k, v in opts.worker_env.items()}),
                      sandbox_limits=json.dumps(opts.sandbox_limits))
        self.event_config.write_text(tmpl.substitute(common, hunger_policy="exit"))
        self.daemon_config.write_text(tmpl.substitute(common, hunger_policy="sleep"))

    # -- data and kit --------------------------------------------------------------------
    def make_data(self, opts: DeployOptions) -> None:
        out = self.data_dir / "data"
        out.mkdir(parents=True, exist_ok=True)
        if opts.data_from is not None:
            src = opts.data_from.resolve()
            for split in ("train", "test"):
                if not (src / f"{split}.h5").is_file():
                    raise DataFileError(
                        f"--data-from {src} has no {split}.h5; expected train.h5 and test.h5 there"
                    )
            for f in sorted(src.glob("*.h5")):
                shutil.copy2(f, out / f.name)
            log.info("data: copied %s", ", ".join(f.name for f in sorted(out.glob("*.h5"))))
            return
        py = opts.kit_venv / "bin" / "python"
        run([py, REPO / "prepare_data.py", "--output-dir", out, "--n-train", opts.n_train,
             "--n-test", opts.n_test, "--n-mini", opts.n_mini, "--seed", opts.seed, "--n-jobs", "1",
             "--quiet", "--overwrite"],
            cwd=REPO, log_path=self.log("prepare_data"), what="prepare_data.py", timeout=1800,
            env={**os.environ, "PYTHONPATH": ""})
        log.info("data: %d train, %d test blends (seed %d) in %s", opts.n_train, opts.n_test, opts.seed, out)

    def build_kit(self, opts: DeployOptions) -> None:
        kit = self.kit_dir
        kit.mkdir(parents=True, exist_ok=True)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "training_output", "*.h5")
        for rel in KIT_FILES:
            src = REPO / rel
            if src.is_dir():
                shutil.copytree(src, kit / rel, ignore=ignore, dirs_exist_ok=True)
            elif src.is_file():
                (kit / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, kit / rel)
        for sub in dict.fromkeys((SANDBOX,) + tuple(opts.submissions)):
            shutil.copytree(REPO / "submissions" / sub, kit / "submissions" / sub, ignore=ignore,
                            dirs_exist_ok=True)
        for path in opts.extra_submissions:
            shutil.copytree(path, kit / "submissions" / Path(path).name, ignore=ignore, dirs_exist_ok=True)
        # problem.py reads bands and sizes from <kit>/data; the small files also make the
        # downloadable kit (ramp-board zips the kit folder) work with ramp-test --quick-test.
        (kit / "data").mkdir(exist_ok=True)
        minis = sorted((self.data_dir / "data").glob("*_mini.h5"))
        for f in minis:
            shutil.copy2(f, kit / "data" / f.name)
        if not minis:
            log.warning("no *_mini.h5 in %s: problem.py will assume the simulator's default bands and sizes",
                        self.data_dir / "data")
        notebook = kit / f"{opts.problem_name}_starting_kit.ipynb"
        if (REPO / NOTEBOOK).is_file():
            shutil.copy2(REPO / NOTEBOOK, notebook)
        else:
            log.warning("no %s in %s: the event gets a one-cell notebook pointing to the README", NOTEBOOK, REPO)
            notebook.write_text(json.dumps(_placeholder_notebook(opts), indent=1))
        log.info("kit: %s (submissions: %s)", kit, ", ".join(sorted(os.listdir(kit / "submissions"))))


def _placeholder_notebook(opts: DeployOptions) -> dict:
    text = (f"# {opts.event_title}\n\nThe starting-kit notebook (`{NOTEBOOK}`) was not found when "
            f"this event was deployed. See the kit's README.md and `ramp-test --submission starting_kit`.")
    return {"cells": [{"cell_type": "markdown", "metadata": {}, "source": text}],
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
            "nbformat": 4, "nbformat_minor": 5}


def add_references(dep: Deployment, opts: DeployOptions) -> None:
    """Reference rows (zeros, oracle apportioning, known morphology) at the top of the event description.

    Scored by ``deblend-score --references`` (the kit's environment) on ``train.h5`` (the public
    board's CV validation blends) and ``test.h5`` (the private board); see references_page.py.
    """
    py = opts.kit_venv / "bin" / "python"
    scores = {}
    for split in ("train", "test"):
        out = dep.dir / f"references_{split}.csv"
        run(reference_command(py, dep.data_dir / "data" / f"{split}.h5", out), cwd=REPO,
            log_path=dep.log("references"), what=f"deblend-score --references {split}.h5", timeout=3600,
            env={**os.environ, "PYTHONPATH": ""})
        scores[split] = read_reference_csv(out)
    page = dep.kit_dir / f"{opts.problem_name}_starting_kit.html"
    if not page.is_file():
        log.warning("no %s (deploy-event converts the notebook): the reference rows are only in %s", page, dep.dir)
        return
    add_reference_section(page, reference_section(scores["train"], scores["test"]))
    log.info("references: %s", ", ".join(f"{k} {v['deblend']:.4f}" for k, v in scores["test"].items()))


# ----------------------------------------------------------------------------- database content
def add_admin_and_submissions(dep: Deployment, opts: DeployOptions, password: str) -> list[str]:
    """The admin user, signed up to the event, submits each baseline; returns their names.

    The same functions as ``ramp-database add-user``, ``add-event-admin``,
    ``sign-up-team`` and ``add-submission`` (README.md gives those commands),
    called in this process, which saves importing ramp-board once per step.
    """
    import ramp_compat

    ramp_compat.apply(("database",))  # before the imports: it replaces add_event_admin
    from ramp_database.tools.event import add_event_admin
    from ramp_database.tools.submission import add_submission
    from ramp_database.tools.team import sign_up_team
    from ramp_database.tools.user import add_user
    from ramp_database.utils import session_scope
    from ramp_utils import read_config

    names = []
    with session_scope(read_config(dep.config, filter_section="sqlalchemy")) as session:
        add_user(session, name=opts.admin_user, password=password, lastname="Organiser", firstname="Event",
                 email=f"{opts.admin_user}@localhost", access_level="admin")
        add_event_admin(session, opts.event_name, opts.admin_user)
        sign_up_team(session, opts.event_name, opts.admin_user)
        for folder in (*opts.submissions, *(Path(p).name for p in opts.extra_submissions)):
            name = submission_db_name(folder)
            add_submission(session, opts.event_name, opts.admin_user, name,
                           str(dep.kit_dir / "submissions" / folder))
            names.append(name)
    return names


# ----------------------------------------------------------------------------- processes
def start_frontend(dep: Deployment, port: int) -> subprocess.Popen:
    logf = open(dep.log("frontend"), "a")
    proc = subprocess.Popen(
        ramp_cmd("ramp-frontend", "test-launch", "--config", dep.config, "--port", str(port),
                 "--host", "127.0.0.1"),
        cwd=dep.dir, env=_env(), stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
    )
    logf.close()
    dep.state.update(frontend={"pid": proc.pid, "port": port})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(url + "/", timeout=90, alive=lambda: proc.poll() is None)
    except (RuntimeError, TimeoutError) as exc:
        tail = "\n".join(dep.log("frontend").read_text(errors="replace").splitlines()[-15:])
        raise DeployError(f"ramp-frontend did not start: {exc}; log: {dep.log('frontend')}\n{tail}") from None
    log.info("frontend: %s (pid %d)", url, proc.pid)
    return proc


def start_dispatcher(dep: Deployment, event_config: Path, *, contributivity: bool = False) -> subprocess.Popen:
    """``ramp-launch dispatcher``; with ``contributivity`` it blends the submissions after each round it scores."""
    logf = open(dep.log("dispatcher"), "a")
    env = _env()
    if contributivity:
        env["RAMP_COMPAT_CONTRIBUTIVITY"] = "1"  # see ramp_compat._with_contributivity
    proc = subprocess.Popen(
        ramp_cmd("ramp-launch", "dispatcher", "--config", dep.config, "--event-config", event_config, "-v"),
        cwd=dep.dir, env=env, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
    )
    logf.close()
    dep.state.update(dispatcher={"pid": proc.pid})
    return proc


def event_status(dep: Deployment) -> tuple[str, list[dict]]:
    """From the database: the event's official score name, and each submission's
    name, state and error message (the untrained sandbox left out)."""
    import ramp_compat
    from ramp_database.tools.event import get_event
    from ramp_database.tools.submission import (
        get_submission_by_id,
        get_submission_error_msg,
        get_submission_state,
        get_submissions,
    )
    from ramp_database.utils import session_scope
    from ramp_utils import read_config

    ramp_compat.apply(("database",))  # numpy scalars -> psycopg2
    out = []
    with session_scope(read_config(dep.config, filter_section="sqlalchemy")) as session:
        score_name = get_event(session, dep.event_name).official_score_name
        for sub_id, _, _ in get_submissions(session, dep.event_name, state=None):
            sub = get_submission_by_id(session, sub_id)
            if not sub.is_not_sandbox:
                continue
            out.append({"id": sub_id, "name": sub.name, "state": get_submission_state(session, sub_id),
                        "error": get_submission_error_msg(session, sub_id) or ""})
    return score_name, out


def dispatch(dep: Deployment, timeout: float) -> tuple[str, list[dict]]:
    """Run the dispatcher until every new submission is trained and scored (or ``timeout``)."""
    t0 = time.monotonic()
    proc = start_dispatcher(dep, dep.event_config)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process_group(proc.pid, marker="ramp_compat.py")
        raise DeployError(f"the dispatcher did not finish within {timeout:.0f} s; log: {dep.log('dispatcher')}")
    finally:
        dep.state.update(dispatcher=None)
    if proc.returncode != 0:
        tail = "\n".join(dep.log("dispatcher").read_text(errors="replace").splitlines()[-20:])
        raise DeployError(f"the dispatcher failed (exit {proc.returncode}); log: {dep.log('dispatcher')}\n{tail}")
    score_name, states = event_status(dep)
    log.info("dispatcher: done in %.0f s: %s", time.monotonic() - t0,
             ", ".join(f"{s['name']} {s['state']}" for s in states))
    return score_name, states


def compute_contributivity(dep: Deployment) -> dict:
    """``ramp-database compute-contributivity``: the greedy ensemble of the scored submissions' CV predictions.

    Stores each submission's contributivity (its share of the ensemble, summing to 1) and the
    ensemble's public (CV validation) and private (test) scores in the database, and updates the
    leaderboards; returns ``{"valid": v, "test": t, "contributivity": {name: c}}`` read back.
    """
    run(ramp_cmd("ramp-database", "compute-contributivity", "--config", dep.config, "--config-event",
                 dep.event_config), cwd=dep.dir, log_path=dep.log("contributivity"),
        what="ramp-database compute-contributivity", timeout=3600)
    import ramp_compat
    from ramp_database.tools.event import get_event
    from ramp_database.tools.submission import get_submission_by_id, get_submissions
    from ramp_database.utils import session_scope
    from ramp_utils import read_config

    ramp_compat.apply(("database",))
    with session_scope(read_config(dep.config, filter_section="sqlalchemy")) as session:
        event = get_event(session, dep.event_name)
        contrib = {}
        for sub_id, _, _ in get_submissions(session, dep.event_name, state="scored"):
            sub = get_submission_by_id(session, sub_id)
            contrib[sub.name] = float(sub.contributivity)
        return {"valid": event.combined_combined_valid_score, "test": event.combined_combined_test_score,
                "contributivity": contrib}


def read_leaderboard(dep: Deployment, *, port: int, user: str, password: str):
    """Log in, fetch the event's leaderboard page; ``(html, Table)``."""
    client = RampClient(f"http://127.0.0.1:{port}")
    client.login(user, password)
    html = client.get(f"/events/{dep.event_name}/leaderboard")
    return html, parse_table(html, table_id="leaderboard")


def check_leaderboard(table, expected: list[str], score_name: str) -> list[str]:
    """Problems with the leaderboard: each expected submission needs a finite ``score_name``."""
    problems = []
    if "submission" not in table.header or score_name not in table.header:
        return [f"leaderboard columns {list(table.header)} lack 'submission' or {score_name!r}"]
    by_name = {r["submission"]: r for r in table.records()}
    for name in expected:
        row = by_name.get(name)
        if row is None:
            problems.append(f"{name}: not on the leaderboard")
            continue
        try:
            value = float(row[score_name])
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            problems.append(f"{name}: {score_name} is {row[score_name]!r}, not a number")
    return problems


# ----------------------------------------------------------------------------- commands
def cmd_up(opts: DeployOptions, *, serve: bool, keep_running: bool) -> int:
    dep = Deployment(opts.deploy_dir, problem_name=opts.problem_name, event_name=opts.event_name)
    if killed_run(dep.state.load()) is not None:  # what a killed run left: stopped (and said) first
        cmd_down(dep.dir, purge=False)
    if dep.dir.exists() and any(dep.dir.iterdir()):
        if not opts.force:
            raise OutputExistsError(
                f"deployment directory {dep.dir} exists and is not empty; pass --force to replace it "
                f"(what runs there is stopped first), or choose another --deploy-dir"
            )
        if not dep.state.path.exists():
            raise OutputExistsError(
                f"deployment directory {dep.dir} is not empty and holds no deployment (no "
                f"run/state.json): not removing it, even with --force; choose another --deploy-dir"
            )
        cmd_down(dep.dir, purge=True)
    dep.dir.mkdir(parents=True, exist_ok=True)
    dep.logs.mkdir(exist_ok=True)
    dep.state.update(deploy={"pid": os.getpid()})  # removed when this run ends; still there if it is killed
    port = opts.port or free_port()
    check_port_free(port, "frontend")
    pg_port = opts.pg_port or free_port()
    check_port_free(pg_port, "PostgreSQL")
    dep.state.update(event={"problem_name": opts.problem_name, "event_name": opts.event_name,
                            "admin_user": opts.admin_user, "port": port})
    admin_password = opts.admin_password or secrets.token_urlsafe(12)
    stop_all = True
    t_start = time.monotonic()
    try:
        # 1. PostgreSQL
        pg_dir = dep.dir / "postgres"
        if not postgres_accessible(dep.dir):
            pg_dir = Path(tempfile.mkdtemp(prefix="rampboard-pg-"))
            log.info("postgres: %s is closed to the postgres user; cluster in %s", dep.dir, pg_dir)
        pg = Postgres(pg_dir=pg_dir, port=pg_port, bindir=postgres_bindir())
        super_pw = secrets.token_urlsafe(24)
        pg.init(super_pw, dep.log("postgres"))
        dep.state.update(postgres=pg.to_state())
        pg.start(dep.log("postgres"))
        db = {"user": "ramp", "password": secrets.token_urlsafe(18), "port": pg_port, "name": "ramp"}
        create_database(port=pg_port, superuser_password=super_pw, user=db["user"], password=db["password"],
                        name=db["name"])
        log.info("postgres: %s on 127.0.0.1:%d, database %r", pg.bindir.parent.name, pg_port, db["name"])
        # 2. configs, 3. data and kit
        dep.write_configs(opts, db=db)
        dep.make_data(opts)
        dep.build_kit(opts)
        # 4. problem, event, users, submissions
        run(ramp_cmd("ramp-setup", "deploy-event", "--config", dep.config, "--event-config", dep.event_config,
                     "--no-cloning"),
            cwd=dep.dir, log_path=dep.log("ramp-setup"), what="ramp-setup deploy-event", timeout=900)
        log.info("event: %s deployed (problem %s)", opts.event_name, opts.problem_name)
        add_references(dep, opts)
        creds = dep.dir / "credentials.txt"
        creds.write_text(f"{opts.admin_user}\t{admin_password}\n")
        os.chmod(creds, 0o600)
        names = add_admin_and_submissions(dep, opts, admin_password)
        log.info("submitted: %s (team %s)", ", ".join(names), opts.admin_user)
        # 5. train and score
        score_name, states = dispatch(dep, opts.dispatch_timeout)
        ensemble = None
        if any(s["state"] == "scored" for s in states):
            ensemble = compute_contributivity(dep)
        # 6. the web site
        frontend = start_frontend(dep, port)
        html, table = read_leaderboard(dep, port=port, user=opts.admin_user, password=admin_password)
        (dep.dir / "leaderboard_page.html").write_text(html)
        cols = ["team", "submission", score_name] + [c for c in table.header if c.endswith("time [s]")]
        url = f"http://127.0.0.1:{port}/events/{opts.event_name}/leaderboard"
        print(f"\nLeaderboard of {opts.event_name} ({url}):")
        print(table.to_text(cols))
        if ensemble is not None:
            print(f"ensemble of the submissions (not ranked): {score_name} {ensemble['valid']:.4f} (public, CV "
                  f"validation), {ensemble['test']:.4f} (private, test); contributivity: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in sorted(ensemble["contributivity"].items(),
                                                                 key=lambda kv: -kv[1])))
        print(f"\n(deployed and scored in {time.monotonic() - t_start:.0f} s; admin login in {creds})")
        failed = [s for s in states if s["state"] != "scored"]
        problems = check_leaderboard(table, names, score_name)
        for s in failed:
            problems.append(f"{s['name']}: state {s['state']}: {s['error'].strip()[-500:]}")
        if problems:
            raise DeployError("the leaderboard is incomplete:\n  " + "\n  ".join(problems)
                              + f"\nlogs: {dep.logs} and {dep.event_dir / 'logs'}")
        if serve:
            return _serve_forever(dep, frontend, port)
        if keep_running:
            stop_all = False
            print(f"PostgreSQL and the frontend keep running: http://127.0.0.1:{port}/ "
                  f"(stop them with: rampboard/deploy.sh down --deploy-dir {dep.dir})")
        return 0
    finally:
        if stop_all:
            cmd_down(dep.dir, purge=False)
        dep.state.update(deploy=None)


def _serve_forever(dep: Deployment, frontend: subprocess.Popen | None, port: int) -> int:
    dispatcher = start_dispatcher(dep, dep.daemon_config, contributivity=True)
    print(f"\nServing http://127.0.0.1:{port}/ ; the dispatcher trains new submissions "
          f"(log: {dep.log('dispatcher')}). Ctrl-C stops everything.")
    try:
        while True:
            for name, proc in (("frontend", frontend), ("dispatcher", dispatcher)):
                if proc is not None and proc.poll() is not None:
                    raise DeployError(f"the {name} exited (code {proc.returncode}); log: {dep.log(name)}")
            time.sleep(1)
    except KeyboardInterrupt:
        print("stopping")
        return 0


def cmd_serve(deploy_dir: Path, port: int | None) -> int:
    dep = Deployment(deploy_dir)
    saved = dep.state.load()
    if "postgres" not in saved or dep.event_name is None:
        raise DeployError(f"{dep.dir} holds no deployment made by 'deploy.py up' (no run/state.json)")
    if saved.get("frontend") or saved.get("dispatcher") or killed_run(saved) is not None:
        cmd_down(dep.dir, purge=False)
    dep.state.update(deploy={"pid": os.getpid()})
    pg = Postgres.from_state(saved["postgres"])
    port = port or saved["event"].get("port") or free_port()
    check_port_free(port, "frontend")
    try:
        if not pg.running():
            pg.start(dep.log("postgres"))
        frontend = start_frontend(dep, port)
        return _serve_forever(dep, frontend, port)
    finally:
        cmd_down(dep.dir, purge=False)
        dep.state.update(deploy=None)


def killed_run(saved: dict) -> int | None:
    """Pid of the ``deploy.py`` run recorded in the state that died without cleaning up (None if none)."""
    info = saved.get("deploy")
    if not info:
        return None
    pid = int(info["pid"])
    if pid == os.getpid() or (_pid_alive(pid) and "deploy.py" in _cmdline(pid)):
        return None  # this run, or one still running
    return pid


def cmd_down(deploy_dir: Path, *, purge: bool) -> int:
    """Stop the frontend, the dispatcher (and its ramp-test) and PostgreSQL of a deployment.

    Says in one line what it stopped; when the ``deploy.py`` run that started them was killed
    (SIGKILL: it could not stop them itself), the line says so, with that run's pid.
    """
    dep = Deployment(deploy_dir)
    saved = dep.state.load()
    killed = killed_run(saved)
    stopped = []
    for name in ("frontend", "dispatcher"):
        info = saved.get(name)
        n = stop_process_group(int(info["pid"]), marker="ramp_compat.py") if info else 0
        if n:
            stopped.append(f"the {name} (pid {info['pid']}" + (f", {n} processes of its group)" if n > 1 else ")"))
        if info:
            dep.state.update(**{name: None})
    pg_info = saved.get("postgres")
    if pg_info:
        pg = Postgres.from_state(pg_info)
        if pg.running():
            dep.logs.mkdir(parents=True, exist_ok=True)
            try:
                pg.stop(dep.log("postgres"))
                stopped.append(f"PostgreSQL (127.0.0.1:{pg.port})")
            except DeployError as exc:
                log.error("%s", exc)
        if purge and pg.pg_dir.exists() and not pg.pg_dir.resolve().is_relative_to(dep.dir):
            shutil.rmtree(pg.pg_dir, ignore_errors=True)
    if killed is not None:
        dep.state.update(deploy=None)
        if stopped:
            log.warning("deploy run %d was killed and left running %s: stopped them", killed, ", ".join(stopped))
    elif stopped:
        log.info("stopped %s", ", ".join(stopped))
    if purge and dep.dir.exists():
        shutil.rmtree(dep.dir)
        log.info("removed %s", dep.dir)
    return 0


# ----------------------------------------------------------------------------- CLI
def _worker_env(items: list[str]) -> dict:
    env = dict(DEFAULT_WORKER_ENV)
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--worker-env takes NAME=VALUE; got {item!r}")
        k, v = item.split("=", 1)
        env[k] = v
    return env


def _sandbox_limits(items: list[str]) -> dict:
    limits = dict(DEFAULT_SANDBOX_LIMITS)
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not v.strip().isdigit():
            raise ConfigError(f"--sandbox-limit takes NAME=INTEGER; got {item!r}")
        limits[k.strip()] = int(v)
    return limits


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rampboard/deploy.sh", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    d = dict(default=REPO / "build" / "rampboard", type=Path,
             help="deployment directory (default build/rampboard)")
    up = sub.add_parser("up", help="deploy, score the baselines, show the leaderboard")
    up.add_argument("--deploy-dir", **d)
    up.add_argument("--force", action="store_true", help="replace an existing deployment directory")
    up.add_argument("--submissions", default=",".join(available_submissions()),
                    help="comma-separated folders of submissions/ to submit (default: all)")
    up.add_argument("--problem-name", default=DeployOptions.problem_name)
    up.add_argument("--event-name", default=DeployOptions.event_name)
    up.add_argument("--event-title", default=DeployOptions.event_title)
    up.add_argument("--n-train", type=int, default=DeployOptions.n_train, help="training blends (default 12)")
    up.add_argument("--n-test", type=int, default=DeployOptions.n_test, help="test blends (default 6)")
    up.add_argument("--n-mini", type=int, default=DeployOptions.n_mini, help="blends of train_mini.h5 (default 8)")
    up.add_argument("--seed", type=int, default=0)
    up.add_argument("--data-from", type=Path, help="copy train.h5, test.h5 (and others) from this folder "
                                                    "instead of simulating")
    up.add_argument("--kit-venv", type=Path, default=REPO / ".venv",
                    help="virtual environment whose ramp-test trains the submissions (default .venv)")
    up.add_argument("--port", type=int, default=8080,
                    help="frontend port on 127.0.0.1 (0: any free; default 8080)")
    up.add_argument("--pg-port", type=int, default=0, help="PostgreSQL port on 127.0.0.1 (default: any free)")
    up.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                    help="environment of ramp-test (repeatable); defaults: "
                         + ", ".join(f"{k}={v}" for k, v in DEFAULT_WORKER_ENV.items()))
    up.add_argument("--extra-submission", action="append", default=[], type=Path, metavar="DIR",
                    help="also submit this folder (any path, holding a deblender.py; repeatable)")
    up.add_argument("--sandbox-limit", action="append", default=[], metavar="NAME=VALUE",
                    help="limit of the worker's sandbox (SandboxLimits field, integer; repeatable); defaults: "
                         + ", ".join(f"{k}={v}" for k, v in DEFAULT_SANDBOX_LIMITS.items()))
    up.add_argument("--timeout", type=int, default=1800, help="seconds per submission (default 1800)")
    up.add_argument("--n-workers", type=int, default=1, help="submissions trained at once (default 1)")
    up.add_argument("--dispatch-timeout", type=float, default=3600, help="seconds for all of them (default 3600)")
    up.add_argument("--admin-user", default="organiser")
    up.add_argument("--admin-password", help="default: random, written to DEPLOY_DIR/credentials.txt")
    mode = up.add_mutually_exclusive_group()
    mode.add_argument("--serve", action="store_true",
                      help="then keep serving (and training new submissions) until Ctrl-C")
    mode.add_argument("--keep-running", action="store_true",
                      help="leave PostgreSQL and the frontend running in the background (stop: down)")
    serve = sub.add_parser("serve", help="start an existing deployment again, until Ctrl-C")
    serve.add_argument("--deploy-dir", **d)
    serve.add_argument("--port", type=int, default=None, help="frontend port (default: the one of 'up')")
    down = sub.add_parser("down", help="stop the frontend, dispatcher and PostgreSQL of a deployment")
    down.add_argument("--deploy-dir", **d)
    down.add_argument("--purge", action="store_true", help="and remove the deployment directory")
    p.add_argument("-v", "--verbose", action="store_true", help="log every command run")
    return p


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    # SIGTERM (e.g. from a test's timeout) unwinds like Ctrl-C, so that `finally` stops the servers.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.command == "down":
            return cmd_down(args.deploy_dir, purge=args.purge)
        if args.command == "serve":
            return cmd_serve(args.deploy_dir, args.port)
        opts = DeployOptions(
            deploy_dir=args.deploy_dir, problem_name=args.problem_name, event_name=args.event_name,
            event_title=args.event_title,
            submissions=tuple(s.strip() for s in args.submissions.split(",") if s.strip()),
            n_train=args.n_train, n_test=args.n_test, n_mini=args.n_mini, seed=args.seed,
            data_from=args.data_from, kit_venv=args.kit_venv, port=args.port, pg_port=args.pg_port,
            worker_env=_worker_env(args.worker_env), timeout=args.timeout, n_workers=args.n_workers,
            extra_submissions=tuple(p.resolve() for p in args.extra_submission),
            sandbox_limits=_sandbox_limits(args.sandbox_limit),
            dispatch_timeout=args.dispatch_timeout, admin_user=args.admin_user,
            admin_password=args.admin_password, force=args.force,
        )
        return cmd_up(opts, serve=args.serve, keep_running=args.keep_running)
    except DeblendKitError as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
