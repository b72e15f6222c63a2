"""The hosted path: labels apart from inputs, every submission in the sandbox, the attack suite (#15).

Each hostile submission of ``tests/attacks/`` is run through :func:`run_hosted`
exactly as a hosted leaderboard runs it; each must end as a zero score (its
honest part: it predicts zeros when its cheat fails) or a refusal, never
above zero, and the host's files must be untouched.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from deblendkit.deblend import load_split
from deblendkit.errors import SandboxError
from deblendkit.ramp import sandbox as sandbox_module
from deblendkit.ramp.hosted import close_event, make_layout, run_hosted
from deblendkit.ramp.sandbox import SandboxLimits
from deblendkit.ramp.sandbox_driver import read_inputs
from deblendkit.ramp.workflow import DeblenderWorkflow
from tests.helpers.sandbox import SANDBOX_MARKS

ROOT = Path(__file__).resolve().parents[2]
ATTACKS = sorted(p.name for p in (ROOT / "tests" / "attacks").iterdir() if (p / "deblender.py").is_file())
LIMITS = SandboxLimits(memory_bytes=3 * 2**30, cpu_seconds=20, wall_seconds=40, max_processes=48,
                       file_bytes=64 * 2**20, scratch_bytes=128 * 2**20)


pytestmark = SANDBOX_MARKS


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def hosted(small_data_dir, tmp_path_factory):
    """A kit with the baselines and the attacks, a hosted layout, and a TCP server standing for the database."""
    base = tmp_path_factory.mktemp("hosted")
    kit = base / "kit"
    (kit / "submissions").mkdir(parents=True)
    shutil.copy(ROOT / "problem.py", kit / "problem.py")
    for name in ("starting_kit", "forward_model"):
        shutil.copytree(ROOT / "submissions" / name, kit / "submissions" / name)
    layout = make_layout(train_file=small_data_dir / "train.h5", test_file=small_data_dir / "test.h5",
                         out_dir=base / "layout")
    secrets = base / "deploy" / "config.yml"
    secrets.parent.mkdir()
    secrets.write_text("sqlalchemy:\n  password: hunter2\n")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    threading.Thread(target=lambda: [server.accept()[0].close() for _ in range(8)], daemon=True).start()
    targets = {
        "open_labels": layout / "labels" / "test_labels.h5", "numpy_fromfile": layout / "labels" / "test_labels.h5",
        "getattr_os_read": layout / "labels" / "test_labels.h5", "ctypes_open": layout / "labels" / "test_labels.h5",
        "subprocess_cat": layout / "labels" / "test_labels.h5", "other_submission":
        kit / "submissions" / "starting_kit" / "deblender.py", "credentials": secrets,
        "network": f"127.0.0.1:{server.getsockname()[1]}", "write_scores": kit / "submissions" / "scores.csv",
        "modify_kit": kit / "problem.py",
    }
    for name in ATTACKS:
        shutil.copytree(ROOT / "tests" / "attacks" / name, kit / "submissions" / name)
        (kit / "submissions" / name / "target.txt").write_text(str(targets.get(name, "")))
    before = {p: _sha(p) for p in (kit / "problem.py", layout / "labels" / "test_labels.h5",
                                   layout / "inputs" / "train.h5")}
    results = {r.name: r for r in run_hosted(kit, ["starting_kit", "forward_model", *ATTACKS], layout,
                                             limits=LIMITS)}
    yield {"kit": kit, "layout": layout, "results": results, "before": before, "data": small_data_dir}
    server.close()


def test_the_inputs_hold_no_labels(hosted):
    import h5py

    with h5py.File(hosted["layout"] / "inputs" / "test_inputs.h5", "r") as f:
        assert sorted(f) == ["blend", "centers", "n_galaxies", "noise_sigma", "psf"]
    assert oct(os.stat(hosted["layout"] / "labels").st_mode & 0o777) == "0o700"


def test_honest_baselines_score_what_they_score_unsandboxed(hosted):
    X, y = load_split(hosted["data"] / "train.h5")
    wf = DeblenderWorkflow()
    model = wf.train_submission(str(hosted["kit"] / "submissions" / "starting_kit"), X, y)
    plain = wf.predict(model, read_inputs(str(hosted["layout"] / "inputs" / "test_inputs.h5")))
    from deblendkit.ramp.hosted import score_hosted

    expected = score_hosted("starting_kit", np.asarray(plain, np.float32), hosted["layout"])
    got = hosted["results"]["starting_kit"]
    assert got.status == "scored" and got.public == expected.public and got.private == expected.private
    assert hosted["results"]["forward_model"].status == "scored"
    assert hosted["results"]["forward_model"].private["deblend"] > 0.5


@pytest.mark.parametrize("attack", ATTACKS)
def test_each_attack_scores_zero_or_is_refused(hosted, attack):
    r = hosted["results"][attack]
    assert "ESCAPED" not in r.message, r.message
    if r.status == "scored":
        assert r.public["deblend"] == 0.0 and r.private["deblend"] == 0.0
    else:
        assert r.status == "failed" and r.message.startswith(f"submission {attack!r}")


def test_the_attacks_reach_the_sandbox_past_rampwfs_word_filter(hosted):
    # A word filter is not a sandbox: the attacks avoid its words, so the sandbox is what stops them.
    assert not [r.name for r in hosted["results"].values() if "forbidden key word" in r.message]
    scored = sorted(n for n, r in hosted["results"].items() if r.status == "scored" and n in ATTACKS)
    assert set(scored) >= {"glob_h5", "walk_tree", "open_labels", "getattr_os_read", "ctypes_open",
                           "subprocess_cat", "numpy_fromfile", "network", "credentials", "other_submission",
                           "write_scores", "modify_kit", "fork_bomb", "fill_disk"}


def test_the_host_is_untouched(hosted):
    for path, sha in hosted["before"].items():
        assert _sha(path) == sha, f"{path} was changed"
    assert not (hosted["kit"] / "submissions" / "scores.csv").exists()
    assert not (hosted["kit"] / "submissions" / "write_scores" / "training_output").exists()


def test_limits_end_the_resource_attacks(hosted):
    r = hosted["results"]
    assert r["spin"].status == "failed"
    assert re.fullmatch(r"submission 'spin' was killed in the sandbox by SIG(XCPU|KILL) \(a limit: CPU 20 s, "
                        rf"memory {3 * 2**30} bytes, file size {64 * 2**20} bytes\)", r["spin"].message)
    assert r["memory_bomb"].status == "failed" and "MemoryError" in r["memory_bomb"].message


def test_the_final_ranking_is_by_the_private_board(hosted):
    ranking = close_event(hosted["results"].values())
    assert ranking[0][1] == "forward_model" and [row[0] for row in ranking] == list(range(1, len(ranking) + 1))
    assert all(row[2] <= ranking[0][2] for row in ranking)


def test_without_bubblewrap_hosted_scoring_refuses(hosted, monkeypatch):
    real = shutil.which
    monkeypatch.setattr(sandbox_module.shutil, "which", lambda name: None if name == "bwrap" else real(name))
    with pytest.raises(SandboxError, match=r"^the hosted sandbox needs `bwrap` on PATH, which is missing"):
        run_hosted(hosted["kit"], ["starting_kit"], hosted["layout"])
