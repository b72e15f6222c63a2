"""A sandbox for a submission's ``fit`` and ``predict`` on a hosted leaderboard.

A hosted submission is somebody else's code. It runs here in a process that
can read the Python installation, the kit's package, its own folder and the
data files it is given, and nothing else of the deployment; it cannot write
outside a size-limited scratch folder (``/scratch``); it has no network; its memory, CPU
time, processes and file sizes are bounded. It is made from what Linux and
Debian already have, not from a list of forbidden words:

* ``bwrap`` (bubblewrap, Debian package ``bubblewrap``) builds an empty root
  with read-only binds of ``/usr``, ``/lib``, ``/etc``, the Python prefix, the
  venv, the kit's package, the submission folder and the input files; a
  ``tmpfs`` of ``scratch_bytes`` on ``/scratch`` (mode 1777: the only place
  ``nobody`` may write; ``HOME``, ``TMPDIR`` and ``MPLCONFIGDIR`` point there,
  and it is the working directory) and an empty read-only ``/tmp``; new PID, network, IPC and UTS
  namespaces (so no process, socket or server of the host is reachable, not
  even 127.0.0.1); ``--die-with-parent`` and ``--new-session``;
* inside, ``setpriv`` drops to the unprivileged user ``nobody`` (uid 65534, no
  capabilities, no supplementary groups), so file permissions and the process
  limit apply;
* ``prlimit`` sets the rlimits: address space (``memory_bytes``), CPU seconds,
  processes of that user (``max_processes``, stops a fork bomb), file size;
* the caller kills the whole session after ``wall_seconds``.

The submission never writes a file the scorer reads: the driver inside
(:mod:`deblendkit.ramp.sandbox_driver`) sends its predictions as one ``.npy``
stream on a pipe (the original stdout; the submission's own prints go to
stderr), which the caller reads up to the size the predictions must have.
The scores are computed outside, from those predictions and the labels that
were never in the sandbox.

When the sandbox cannot start (``bwrap`` missing, namespaces refused), the
hosted path raises :class:`~deblendkit.errors.SandboxError` saying what is
missing; it never runs a submission unsandboxed.
"""
from __future__ import annotations

import collections
import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deblendkit._checks import positive_int
from deblendkit.errors import SandboxError, SubmissionError

__all__ = ["SandboxLimits", "check_sandbox", "sandbox_command", "run_in_sandbox", "run_command_in_sandbox",
           "SANDBOX_UID"]

SANDBOX_UID = 65534  # nobody
_SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc")
#: Where the sandboxed process sees its inputs.
INSIDE_SUBMISSION = "/sandbox/submission"
INSIDE_DATA = "/sandbox/data"


@dataclass(frozen=True, kw_only=True)
class SandboxLimits:
    """Bounds of one sandboxed run.

    Attributes
    ----------
    memory_bytes : int
        Address space (RLIMIT_AS), bytes.
    cpu_seconds : int
        CPU time (RLIMIT_CPU), seconds.
    wall_seconds : int
        Wall-clock time after which the whole sandbox is killed, seconds.
    max_processes : int
        Processes of the sandbox user (RLIMIT_NPROC).
    file_bytes : int
        Largest file it may write (RLIMIT_FSIZE), bytes.
    scratch_bytes : int
        Size of its writable ``/scratch`` (tmpfs), bytes.
    """

    memory_bytes: int = 8 * 2**30
    cpu_seconds: int = 3600
    wall_seconds: int = 3600
    max_processes: int = 64
    file_bytes: int = 2**30
    scratch_bytes: int = 2**30

    def __post_init__(self):
        for name in ("memory_bytes", "cpu_seconds", "wall_seconds", "max_processes", "file_bytes", "scratch_bytes"):
            positive_int(name, getattr(self, name))


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SandboxError(f"the hosted sandbox needs `{name}` on PATH, which is missing; install it "
                           f"(Debian: apt-get install {'bubblewrap' if name == 'bwrap' else 'util-linux'}); "
                           "hosted scoring refuses to run submissions unsandboxed", value=name)
    return path


def _dirs_above(path: Path) -> list[str]:
    """``--dir`` arguments (mode 0755) for every ancestor of ``path``, so ``nobody`` can traverse them."""
    out = []
    for parent in reversed(path.parents[:-1]):  # not "/"
        out += ["--perms", "0755", "--dir", str(parent)]
    return out


def _ro(source: str | os.PathLike, target: str | os.PathLike | None = None) -> list[str]:
    target = Path(target if target is not None else source)
    return _dirs_above(target) + ["--ro-bind", str(source), str(target)]


def sandbox_command(argv: list[str], *, submission_dir: str | os.PathLike, data_files: dict[str, str],
                    limits: SandboxLimits, env: dict[str, str] | None = None) -> list[str]:
    """The command that runs ``argv`` in the sandbox (see the module docstring).

    Parameters
    ----------
    argv : list of str
        The command inside (absolute paths as seen inside).
    submission_dir : path
        Bound read-only at :data:`INSIDE_SUBMISSION`.
    data_files : dict
        ``{name inside /sandbox/data: host path}``, each bound read-only.
    limits : SandboxLimits
    env : dict, optional
        Extra environment variables inside (the environment is cleared otherwise).
    """
    bwrap, setpriv, prlimit = _tool("bwrap"), _tool("setpriv"), _tool("prlimit")
    cmd = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
           "--die-with-parent", "--new-session", "--clearenv",
           # an empty /tmp first (root's, 0755: not writable inside): binds of paths under /tmp (a kit
           # cloned there) go on top of it, and no host path under /tmp can be shadowed by a file the
           # submission writes; the writable scratch is /scratch, 1777 (bwrap makes a tmpfs 0755 root)
           "--size", str(limits.scratch_bytes), "--tmpfs", "/tmp",
           "--perms", "1777", "--size", str(limits.scratch_bytes), "--tmpfs", "/scratch"]
    for d in _SYSTEM_DIRS:
        if os.path.exists(d):
            cmd += ["--ro-bind", d, d]
    prefixes = {Path(sys.base_prefix).resolve(), Path(sys.prefix)}
    for p in sorted(prefixes):
        cmd += _ro(p)
    cmd += _ro(Path(__file__).resolve().parents[1])  # the deblendkit package's folder
    cmd += _ro(Path(submission_dir).resolve(), INSIDE_SUBMISSION)
    for name, host in sorted(data_files.items()):
        cmd += _ro(Path(host).resolve(), f"{INSIDE_DATA}/{name}")
    cmd += ["--proc", "/proc", "--dev", "/dev", "--chdir", "/scratch",
            "--setenv", "HOME", "/scratch", "--setenv", "TMPDIR", "/scratch", "--setenv", "PATH", "/usr/bin:/bin",
            "--setenv", "OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"),
            "--setenv", "MPLCONFIGDIR", "/scratch"]
    for key, value in sorted((env or {}).items()):
        cmd += ["--setenv", str(key), str(value)]
    cmd += ["--",
            setpriv, f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all",
            # CPU: SIGXCPU at the limit, SIGKILL 5 s later
            prlimit, f"--as={limits.memory_bytes}", f"--cpu={limits.cpu_seconds}:{limits.cpu_seconds + 5}",
            f"--nproc={limits.max_processes}", f"--fsize={limits.file_bytes}", "--"]
    return cmd + list(argv)


def check_sandbox() -> None:
    """Start an empty sandbox once; raise :class:`SandboxError` saying what is missing if it cannot."""
    cmd = sandbox_command(["/bin/true"], submission_dir="/usr", data_files={}, limits=SandboxLimits())
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxError(f"the hosted sandbox cannot start ({exc}); hosted scoring refuses to run "
                           "submissions unsandboxed") from exc
    if run.returncode != 0:
        raise SandboxError(f"the hosted sandbox cannot start: {run.stderr.strip() or run.returncode} "
                           "(bubblewrap needs PID and network namespaces, and root or unprivileged user "
                           "namespaces); hosted scoring refuses to run submissions unsandboxed",
                           value=run.returncode)


def _read_bounded(stream, limit: int) -> bytes:
    chunks, total = [], 0
    while True:
        chunk = stream.read(min(1 << 20, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            break
    return b"".join(chunks)


def run_in_sandbox(name: str, *, submission_dir: str | os.PathLike, train_file: str | os.PathLike,
                   inputs_file: str | os.PathLike, expected_shape: tuple[int, ...],
                   limits: SandboxLimits = SandboxLimits()) -> tuple[np.ndarray, str]:
    """Fit submission ``name`` on ``train_file`` and predict ``inputs_file``, in the sandbox.

    Returns ``(predictions, stderr_tail)``: the predictions (float32, ``expected_shape``) as the
    sandbox sent them, not yet checked for values (the scorer does).

    Raises
    ------
    SandboxError
        The sandbox cannot start.
    SubmissionError
        The submission failed, was killed by a limit, ran past ``wall_seconds`` or sent
        something that is not an array of ``expected_shape``.
    """
    argv = [str(Path(sys.executable)), "-m", "deblendkit.ramp.sandbox_driver", INSIDE_SUBMISSION,
            f"{INSIDE_DATA}/train.h5", f"{INSIDE_DATA}/test_inputs.h5"]
    return run_command_in_sandbox(name, argv, submission_dir=submission_dir,
                                  data_files={"train.h5": str(train_file), "test_inputs.h5": str(inputs_file)},
                                  expected_shape=expected_shape, limits=limits)


def run_command_in_sandbox(name: str, argv: list[str], *, submission_dir: str | os.PathLike,
                           data_files: dict[str, str], expected_shape: tuple[int, ...],
                           limits: SandboxLimits = SandboxLimits(),
                           env: dict[str, str] | None = None) -> tuple[np.ndarray, str]:
    """Run ``argv`` in the sandbox and read the one ``.npy`` array (float32, ``expected_shape``) it sends.

    The protocol of :func:`run_in_sandbox` for any driver: ``argv`` (paths as seen inside:
    ``data_files`` are under :data:`INSIDE_DATA`, the submission at :data:`INSIDE_SUBMISSION`)
    writes the array on its standard output; ``env`` is added to its (cleared) environment.
    Returns ``(predictions, stderr_tail)``; raises as :func:`run_in_sandbox`.
    """
    cmd = sandbox_command(argv, submission_dir=submission_dir, data_files=data_files, limits=limits, env=env)
    limit = int(np.prod(expected_shape)) * 4 + 4096
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = _communicate(proc, limit, limits.wall_seconds)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    tail = err.decode("utf-8", "replace")[-2000:]
    if out is not None and len(out) > limit:
        raise SubmissionError(f"submission {name!r} sent more than {limit} bytes from the sandbox; expected "
                              f"a float32 array of shape {tuple(expected_shape)}", value=len(out), allowed=limit)
    if out is None:
        raise SubmissionError(f"submission {name!r} ran past the sandbox's wall-clock limit of "
                              f"{limits.wall_seconds} s and was killed", value=limits.wall_seconds)
    sig = _killed_by(proc.returncode)
    if sig is not None:
        raise SubmissionError(f"submission {name!r} was killed in the sandbox by {sig} (a limit: CPU "
                              f"{limits.cpu_seconds} s, memory {limits.memory_bytes} bytes, file size "
                              f"{limits.file_bytes} bytes)", value=sig)
    if proc.returncode != 0:
        last = tail.strip().splitlines()[-1] if tail.strip() else f"exit status {proc.returncode}"
        raise SubmissionError(f"submission {name!r} failed in the sandbox: {last}", value=proc.returncode)
    return _as_predictions(name, out, expected_shape), tail


def _killed_by(returncode: int | None) -> str | None:
    """The signal that ended the sandboxed process: bwrap exits with 128 + N when its child died of signal N."""
    if returncode is None or returncode == 0:
        return None
    number = -returncode if returncode < 0 else returncode - 128
    try:
        return signal.Signals(number).name if number > 0 else None
    except ValueError:
        return None


def _communicate(proc: subprocess.Popen, limit: int, wall_seconds: int) -> tuple[bytes | None, bytes]:
    """Read at most ``limit + 1`` bytes of stdout and the last 64 KiB of stderr, within ``wall_seconds``.

    Returns ``(None, stderr)`` when the time ran out (the session is killed). A sandbox that sends more
    than ``limit`` bytes is killed at once: the caller sees more than ``limit`` bytes and refuses them.
    """
    out: list[bytes] = []
    err: collections.deque[bytes] = collections.deque(maxlen=64)

    def read_out() -> None:
        out.append(_read_bounded(proc.stdout, limit))
        if len(out[0]) > limit:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def read_err() -> None:
        for piece in iter(lambda: proc.stderr.read(1024), b""):
            err.append(piece)

    readers = [threading.Thread(target=f, daemon=True) for f in (read_out, read_err)]
    for r in readers:
        r.start()
    try:
        proc.wait(timeout=wall_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for r in readers:
            r.join(timeout=5)
        return None, b"".join(err)
    for r in readers:
        r.join(timeout=5)
    return (out[0] if out else b""), b"".join(err)


def _as_predictions(name: str, data: bytes, shape: tuple[int, ...]) -> np.ndarray:
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise SubmissionError(f"submission {name!r} sent no readable predictions from the sandbox ({exc}); "
                              f"expected a float32 array of shape {shape}", value=len(data)) from exc
    if arr.shape != tuple(shape) or arr.dtype != np.float32:
        raise SubmissionError(f"submission {name!r} sent predictions of shape {arr.shape} and dtype {arr.dtype}; "
                              f"expected float32 of shape {tuple(shape)}", value=arr.shape, allowed=tuple(shape))
    return arr
