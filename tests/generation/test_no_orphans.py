"""A killed run leaves no process behind; workers obey SIGTERM and SIGINT; the pool forks only when safe (#21, #19)."""
from __future__ import annotations

import ctypes
import hashlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import psutil
import pytest

from deblendkit.config import SimConfig
from deblendkit.generation import StopSignal, generate_split, local_pool, start_method
from deblendkit.generation.local_pool import init_worker

ROOT = Path(__file__).resolve().parents[2]
SMALL = dict(stamp_size=20, psf_size=9, bands=("g", "r", "i"), max_galaxies=3, edge_margin=3)
EPOCH = "1700000000"
EXIT_WITHIN_S = 5.0  # "within a few seconds" (measured: under 0.2 s)
_PR_GET_PDEATHSIG = 2


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def _wait_gone(procs: list[psutil.Process], timeout_s: float) -> tuple[list[psutil.Process], float]:
    t0 = time.monotonic()
    left = _alive(procs)
    while left and time.monotonic() - t0 < timeout_s:
        time.sleep(0.05)
        left = _alive(left)
    return left, time.monotonic() - t0


def _kill_mid_run(tmp_path: Path, extra: list[str]) -> tuple[list[str], Path, list[psutil.Process]]:
    """Start prepare_data.py, SIGKILL it (it alone) once its first chunk file is on disk; return its children."""
    cfg = tmp_path / "small.json"
    cfg.write_text(SimConfig(**SMALL).to_json())
    args = ["--config", str(cfg), "--n-train", "120", "--splits", "train", "--seed", "4",
            "--chunk-size", "2", "--quiet", *extra]
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(ROOT / "prepare_data.py"), *args, "--output-dir", str(out)],
                            cwd=ROOT, env=dict(os.environ, SOURCE_DATE_EPOCH=EPOCH),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    chunks = out / "_chunks" / "train"
    deadline = time.monotonic() + 120
    try:
        while not list(chunks.glob("*.sha256")):
            assert proc.poll() is None, "prepare_data.py ended before it could be killed"
            assert time.monotonic() < deadline, "prepare_data.py made no chunk in 120 s"
            time.sleep(0.01)
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGKILL)  # the parent only: its children must go by themselves
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return args, out, children


@pytest.mark.slow
def test_sigkill_of_the_parent_leaves_no_pool_worker_and_resume_gives_the_same_bytes(tmp_path):
    args, out, children = _kill_mid_run(tmp_path, ["--n-jobs", "2"])
    assert len(children) >= 2  # the two pool workers
    left, seconds = _wait_gone(children, EXIT_WITHIN_S)
    for p in left:  # do not leak them even when the test fails
        p.kill()
    assert not left, f"{len(left)} worker(s) still alive {seconds:.1f} s after the parent's SIGKILL"
    assert not list(out.glob("*.h5"))
    env = dict(os.environ, SOURCE_DATE_EPOCH=EPOCH)
    for where in (out, tmp_path / "clean"):  # resume, then an uninterrupted run
        subprocess.run([sys.executable, str(ROOT / "prepare_data.py"), *args, "--n-jobs", "2",
                        "--output-dir", str(where)], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert sorted(p.name for p in out.iterdir()) == ["train.h5"]
    assert sha256(out / "train.h5") == sha256(tmp_path / "clean" / "train.h5")


@pytest.mark.slow
def test_sigkill_of_the_parent_leaves_no_local_dask_worker(tmp_path):
    _, _, children = _kill_mid_run(tmp_path, ["--n-jobs", "2", "--scheduler", "local"])
    assert len(children) >= 2  # the two worker processes (the nannies run in the parent)
    left, seconds = _wait_gone(children, EXIT_WITHIN_S)
    for p in left:
        p.kill()
    assert not left, f"{len(left)} Dask process(es) still alive {seconds:.1f} s after the parent's SIGKILL"


# ---------------------------------------------------------------------------
# Workers and signals
# ---------------------------------------------------------------------------
def _pid() -> int:
    return os.getpid()


def _death_signal() -> int:
    value = ctypes.c_int(-1)
    ctypes.CDLL(None, use_errno=True).prctl(_PR_GET_PDEATHSIG, ctypes.byref(value), 0, 0, 0)
    return value.value


def _busy(flag: str) -> None:
    Path(flag).write_text(str(os.getpid()))
    t = time.monotonic()
    while time.monotonic() - t < 60:  # busy in Python: a signal's default action must still end it
        sum(range(10_000))


def _pool() -> ProcessPoolExecutor:
    """A pool made as run_local makes it."""
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context(start_method()),
                               initializer=init_worker, initargs=(os.getpid(),))


@pytest.fixture
def cli_handlers():
    """The handlers prepare_data.py installs, as during a run (a forked worker inherits them, and then
    ignored SIGTERM and SIGINT, unless its initialiser resets them)."""
    with StopSignal().installed() as stop, stop.running():
        yield stop


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux only")
def test_a_worker_asks_for_sigkill_when_its_parent_dies(cli_handlers):
    with _pool() as pool:
        assert pool.submit(_death_signal).result(timeout=60) == signal.SIGKILL


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_idle_worker_ends_on_the_signal(cli_handlers, signum):
    pool = _pool()
    try:
        pid = pool.submit(_pid).result(timeout=60)  # the worker now waits for work
        worker = psutil.Process(pid)
        os.kill(pid, signum)
        left, seconds = _wait_gone([worker], EXIT_WITHIN_S)
        assert not left, f"an idle worker ignored {signal.Signals(signum).name} for {seconds:.1f} s"
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_busy_worker_ends_on_the_signal(cli_handlers, tmp_path, signum):
    pool = _pool()
    flag = tmp_path / "pid"
    try:
        pool.submit(_busy, str(flag))
        deadline = time.monotonic() + 60
        while not flag.exists() or not flag.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        worker = psutil.Process(int(flag.read_text()))
        os.kill(worker.pid, signum)
        left, seconds = _wait_gone([worker], EXIT_WITHIN_S)
        assert not left, f"a busy worker ignored {signal.Signals(signum).name} for {seconds:.1f} s"
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def test_a_worker_whose_parent_is_already_gone_exits(tmp_path):
    """die_with_parent checks the parent after asking for the death signal (it is not sent for a dead parent)."""
    code = ("import os, sys; from deblendkit._process import die_with_parent; "
            "die_with_parent(os.getppid() + 1_000_000); print('survived')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "survived" not in done.stdout


# ---------------------------------------------------------------------------
# Start method: no fork once torch or JAX runs threads
# ---------------------------------------------------------------------------
def test_start_method_forks_only_without_threaded_modules():
    assert start_method(["numpy", "galsim"]) == "fork"
    assert start_method(["numpy", "torch"]) == "spawn"
    assert start_method(["jax"]) == "spawn"


@pytest.mark.slow
def test_start_method_with_torch_imported():
    pytest.importorskip("torch")
    code = "import torch; from deblendkit.generation import start_method; print(start_method())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "spawn"


@pytest.mark.slow
def test_spawned_workers_give_the_same_bytes_as_forked_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    config = SimConfig(**SMALL)
    paths = {}
    for method in ("fork", "spawn"):
        monkeypatch.setattr(local_pool, "start_method", lambda method=method: method)
        paths[method] = tmp_path / f"{method}.h5"
        out = generate_split(config, path=paths[method], split="train", n_blends=6, seed=2, n_jobs=2,
                             chunk_size=2, progress=False)
        assert out.how == "2 local processes"
    assert sha256(paths["fork"]) == sha256(paths["spawn"])


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_whole_process_group_is_a_clean_interrupt(tmp_path, signum):
    """Ctrl-C (or a batch system's SIGTERM) reaches the pool workers too: they end, and the run
    reports an interrupt (exit 130), not a failed worker."""
    cfg = tmp_path / "small.json"
    cfg.write_text(SimConfig(**SMALL).to_json())
    out = tmp_path / "d"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "prepare_data.py"), "--config", str(cfg), "--n-train", "400", "--splits", "train",
         "--chunk-size", "2", "--n-jobs", "2", "--quiet", "--output-dir", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list((out / "_chunks" / "train").glob("*.sha256")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    children = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signum)
    _, err = proc.communicate(timeout=60)
    left, _ = _wait_gone(children, EXIT_WITHIN_S)
    for p in left:
        p.kill()
    assert proc.returncode == 130, err
    assert err.startswith("prepare_data.py: interrupted; no partial .h5 file was left") and err.count("\n") == 1
    assert not left and not list(out.glob("*.h5"))
