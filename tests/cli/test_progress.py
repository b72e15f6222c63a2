"""Progress output: a bar on a terminal, a few log lines in a log that is not one (#19)."""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

from tqdm import tqdm

from deblendkit._progress import LogProgress, is_terminal, progress
from deblendkit.config import SimConfig

ROOT = Path(__file__).resolve().parents[2]
SMALL = dict(stamp_size=20, psf_size=9, bands=("g", "r", "i"), max_galaxies=3, edge_margin=3)


def test_log_progress_logs_one_line_per_tenth(caplog):
    with caplog.at_level(logging.INFO, logger="deblendkit._progress"):
        bar = LogProgress(200, desc="train", unit="blend")
        for _ in range(100):
            bar.update(2)
        bar.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10
    assert lines[0] == "train:  10% (20 of 200 blends)"
    assert lines[-1] == "train: 100% (200 of 200 blends)"


def test_log_progress_big_steps_and_a_resumed_start(caplog):
    with caplog.at_level(logging.INFO, logger="deblendkit._progress"):
        bar = LogProgress(10, desc="test", unit="blend", steps=4)
        bar.update(7)  # e.g. chunks reused from an interrupted run: one line, not several
        bar.update(3)
    assert [r.getMessage() for r in caplog.records] == ["test:  70% (7 of 10 blends)",
                                                        "test: 100% (10 of 10 blends)"]


def test_progress_chooses_by_stream(tmp_path):
    with open(tmp_path / "log.txt", "w") as fh:
        assert not is_terminal(fh)
        assert isinstance(progress(5, stream=fh), LogProgress)
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as tty:
        assert is_terminal(tty)
        bar = progress(5, desc="x", stream=tty)
        assert isinstance(bar, tqdm)
        bar.close()
    os.close(master)
    silent = progress(5, enabled=False)
    silent.update(5)
    silent.close()
    assert not isinstance(silent, (tqdm, LogProgress))


def test_prepare_data_into_a_log_file_writes_a_few_progress_lines(tmp_path):
    cfg = tmp_path / "small.json"
    cfg.write_text(SimConfig(**SMALL).to_json())
    log = tmp_path / "stderr.log"
    with open(log, "w") as err:
        subprocess.run([sys.executable, str(ROOT / "prepare_data.py"), "--config", str(cfg), "--n-train", "40",
                        "--n-test", "8", "--splits", "train,test", "--chunk-size", "2", "--n-jobs", "1",
                        "--output-dir", str(tmp_path / "d")],
                       cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, check=True, timeout=300)
    text = log.read_text()
    assert "\r" not in text  # no tqdm redraws
    train = re.findall(r"^train: +\d+% \(\d+ of 40 blends\)$", text, flags=re.M)
    test = re.findall(r"^test: +\d+% \(\d+ of 8 blends\)$", text, flags=re.M)
    assert len(train) == 10 and train[-1] == "train: 100% (40 of 40 blends)"  # 20 chunks, one line per 10%
    assert len(test) == 4 and test[-1] == "test: 100% (8 of 8 blends)"  # 4 chunks of 25% each
    assert len(text.splitlines()) <= 20  # progress and the two "wrote" lines, nothing else
