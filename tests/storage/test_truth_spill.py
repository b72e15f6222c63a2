"""deblendkit.storage.truth_spill: truth rows wait on disk, come back sorted, leave nothing behind."""
from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from deblendkit.errors import DataFileError
from deblendkit.storage import DatasetWriter, truth_spill
from deblendkit.storage.writer import remove_stale_temp_files
from tests.storage.fakes import BANDS, fake_arrays, rows, sorted_truth, writer_for

DTYPE = np.dtype([("blend_index", "i8"), ("slot", "i2"), ("flux", "f8")])


def _rows(pairs) -> np.ndarray:
    out = np.zeros(len(pairs), DTYPE)
    for i, (b, s) in enumerate(pairs):
        out[i] = (b, s, 10.0 * b + s + 0.5 * i)  # the flux tells equal keys apart
    return out


def _all(spill, block_rows):
    blocks = list(spill.blocks(block_rows))
    assert [a for a, _ in blocks] == list(range(0, spill.n_rows, block_rows))
    return np.concatenate([r for _, r in blocks])


def test_rows_given_in_order_come_back_as_they_were_in_blocks(tmp_path):
    spill = truth_spill.TruthSpill(tmp_path / "t.tmp", dtype=DTYPE, max_galaxies=3)
    parts = [_rows([(0, -1), (0, 0), (0, 1)]), _rows([(1, -1), (1, -1), (1, 0)]), _rows([(2, 2)])]
    for p in parts:
        spill.append(p)
    assert spill.in_order and spill.n_rows == 7
    assert (tmp_path / "t.tmp").stat().st_size == 7 * DTYPE.itemsize  # on disk, not in memory
    np.testing.assert_array_equal(_all(spill, 2), np.concatenate(parts))
    spill.close()
    assert not (tmp_path / "t.tmp").exists()
    spill.close()  # idempotent


def test_rows_out_of_order_come_back_sorted_stably(tmp_path):
    spill = truth_spill.TruthSpill(tmp_path / "t.tmp", dtype=DTYPE, max_galaxies=3)
    later, earlier = _rows([(3, 0), (3, -1), (3, -1)]), _rows([(1, 1), (1, 0)])
    spill.append(later)
    assert spill.in_order is False  # (3, 0) before (3, -1) inside the first part
    spill.append(earlier)
    got = _all(spill, 3)
    both = np.concatenate([later, earlier])
    np.testing.assert_array_equal(got, both[np.lexsort((both["slot"], both["blend_index"]))])
    assert list(got["flux"][2:4]) == list(later["flux"][1:3])  # the two (3, -1) rows keep their order
    spill.close()


def test_a_part_before_the_last_one_is_out_of_order(tmp_path):
    spill = truth_spill.TruthSpill(tmp_path / "t.tmp", dtype=DTYPE, max_galaxies=3)
    spill.append(_rows([(5, 0)]))
    spill.append(_rows([(4, 2)]))
    assert not spill.in_order
    assert list(_all(spill, 10)["blend_index"]) == [4, 5]
    spill.close()


def test_an_empty_spill_yields_nothing_and_writes_no_file(tmp_path):
    spill = truth_spill.TruthSpill(tmp_path / "t.tmp", dtype=DTYPE, max_galaxies=3)
    spill.append(_rows([]))
    assert list(spill.blocks()) == [] and not (tmp_path / "t.tmp").exists()


def test_an_unwritable_spill_is_a_data_file_error(tmp_path):
    spill = truth_spill.TruthSpill(tmp_path / "missing" / "t.tmp", dtype=DTYPE, max_galaxies=3)
    with pytest.raises(DataFileError, match=r"cannot write the truth rows to .*missing/t\.tmp"):
        spill.append(_rows([(0, 0)]))


def test_the_writer_spills_truth_rows_and_the_bytes_do_not_depend_on_the_block_size(tmp_path, monkeypatch):
    """Streamed back a block at a time or in one go, the file is the same, byte for byte; the
    rows wait in ``.<name>.<pid>.truth.tmp`` meanwhile, and nothing is left after."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    arrays, truth = fake_arrays(n=8)
    files = {}
    for block in (1 << 20, 1):
        monkeypatch.setattr(truth_spill, "BLOCK_ROWS", block)
        path = tmp_path / f"b{block}" / "train.h5"
        path.parent.mkdir()
        first, second = rows(arrays, truth, 0, 4), rows(arrays, truth, 4, 8)
        for part in (first, second):  # sorted rows, in blend order: streamed back as they are
            part["truth_rows"] = sorted_truth(part["truth_rows"])
        with writer_for(path, arrays) as w:
            w.write(0, **first)
            spill = path.parent / f".train.h5.{os.getpid()}.truth.tmp"
            assert spill.stat().st_size == len(first["truth_rows"]) * w.truth_dtype.itemsize
            w.write(4, **second)
            assert w._truth.in_order
        assert sorted(p.name for p in path.parent.iterdir()) == ["train.h5"]
        files[block] = path.read_bytes()
    assert files[1] == files[1 << 20]


def test_a_failed_write_removes_the_spilled_rows(tmp_path):
    arrays, truth = fake_arrays(n=4)
    with pytest.raises(RuntimeError, match="boom"), writer_for(tmp_path / "a.h5", arrays) as w:
        w.write(0, **rows(arrays, truth, 0, 2))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_rows_written_out_of_order_are_stored_sorted(tmp_path):
    arrays, truth = fake_arrays(n=6)
    with writer_for(tmp_path / "a.h5", arrays) as w:
        w.write(3, **rows(arrays, truth, 3, 6))
        w.write(0, **rows(arrays, truth, 0, 3))
    with h5py.File(tmp_path / "a.h5", "r") as f:
        got = f["truth"][...]
    np.testing.assert_array_equal(got, sorted_truth(truth))


def test_stale_spill_files_of_dead_writers_are_removed(tmp_path):
    dead = 2 ** 22 + 12345  # above Linux's default pid_max: no such process
    stale = [tmp_path / f".train.h5.{dead}.tmp", tmp_path / f".train.h5.{dead}.truth.tmp"]
    mine = tmp_path / f".train.h5.{os.getpid()}.truth.tmp"
    for p in (*stale, mine):
        p.write_bytes(b"x")
    assert sorted(remove_stale_temp_files(tmp_path / "train.h5")) == sorted(stale)
    assert [p.name for p in tmp_path.iterdir()] == [mine.name]


def test_writer_names_its_spill_file_after_its_output(tmp_path):
    w = DatasetWriter(tmp_path / "x.h5", n_blends=1, bands=BANDS, max_galaxies=2, stamp_size=8, psf_size=3,
                      attrs={"pixel_scale": 0.2})
    assert w._truth.path == tmp_path / f".x.h5.{os.getpid()}.truth.tmp"
