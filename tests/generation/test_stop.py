"""StopSignal: a signal asks generate_split to stop at its next chunk; no module-level state."""
from __future__ import annotations

import signal

import pytest

from deblendkit.config import SimConfig
from deblendkit.generation import StopSignal, generate_split

SMALL = dict(stamp_size=20, psf_size=9, bands=("g", "r", "i"), max_galaxies=3, edge_margin=3)


def test_request_says_whether_a_loop_runs_to_see_it():
    stop = StopSignal()
    assert not stop.requested and stop.request() is False and stop.requested
    stop.clear()
    stop.check()  # cleared: nothing raised
    with stop.running():
        assert stop.request() is True
        with pytest.raises(KeyboardInterrupt):
            stop.check()
    assert StopSignal().requested is False  # one object per run: nothing shared between them


def test_installed_handles_then_restores_the_handlers():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    stop = StopSignal()
    with stop.installed():
        assert signal.getsignal(signal.SIGTERM) == stop.handle
        with stop.running():
            stop.handle(signal.SIGTERM, None)  # a run in progress: only the flag
            assert stop.requested
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN  # once only
        with pytest.raises(KeyboardInterrupt):
            stop.handle(signal.SIGINT, None)  # nothing running to see the flag
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_requested_stop_ends_generate_split_at_a_chunk_boundary(tmp_path):
    stop = StopSignal()
    stop.request()
    path = tmp_path / "train.h5"
    with pytest.raises(KeyboardInterrupt):
        generate_split(SimConfig(**SMALL), path=path, split="train", n_blends=4, seed=1, chunk_size=2,
                       progress=False, stop=stop)
    assert not path.exists() and (tmp_path / "_chunks" / "train").is_dir()  # kept for a resume
    assert not list(tmp_path.glob(".*.tmp"))
