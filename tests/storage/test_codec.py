"""Our chunk encoder writes what HDF5's own filter pipeline would read back."""
import subprocess
import sys
import zlib

import h5py
import numpy as np
import pytest

from deblendkit.storage import codec

FILTERS = dict(compression="gzip", compression_opts=1, shuffle=True, fletcher32=True)


def _arrays():
    rng = np.random.default_rng(3)
    yield "float32", rng.normal(size=(5, 6, 48, 48)).astype(np.float32)
    yield "sparse", np.where(rng.uniform(size=(5, 6, 6, 20, 20)) < 0.7, 0, 1).astype(np.float32)
    yield "int32", rng.integers(0, 7, size=(9,)).astype(np.int32)
    yield "zeros", np.zeros((3, 2, 2), np.float32)


@pytest.mark.parametrize("name,data", list(_arrays()), ids=[n for n, _ in _arrays()])
def test_fletcher32_equals_the_checksum_hdf5_appends(tmp_path, name, data):
    path = tmp_path / "h.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("d", data=data, chunks=(1,) + data.shape[1:], **FILTERS)
    with h5py.File(path, "r") as f:
        for i in range(len(data)):
            _, raw = f["d"].id.read_direct_chunk((i,) + (0,) * (data.ndim - 1))
            raw = bytes(raw)
            assert codec.fletcher32(raw[:-4]) == int.from_bytes(raw[-4:], "little")


def test_fletcher32_of_odd_lengths_counts_the_last_byte_high():
    # one byte b: sum1 = b << 8, sum2 = sum1 (HDF5's H5_checksum_fletcher32)
    assert codec.fletcher32(b"\x01") == (256 << 16) | 256
    assert codec.fletcher32(b"") == 0
    assert codec.fletcher32(b"\x00\x01\x00\x02") == ((1 + 3) << 16) | 3
    # 65535 stands for a non-zero multiple of 65535
    assert codec.fletcher32(b"\xff\xff") == (65535 << 16) | 65535


@pytest.mark.parametrize("name,data", list(_arrays()), ids=[n for n, _ in _arrays()])
def test_direct_chunks_read_back_through_hdf5_filters(tmp_path, name, data):
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("d", shape=data.shape, dtype=data.dtype, chunks=(1,) + data.shape[1:], **FILTERS)
        codec.write_rows(ds, 0, data[:2])
        codec.write_rows(ds, 2, data[2:])
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["d"][:], data)  # HDF5 checks fletcher32 and inflates


def test_encoded_chunk_is_standard_zlib_and_deterministic():
    row = np.random.default_rng(0).normal(size=(6, 48, 48)).astype(np.float32)
    a, b = codec.encode_chunk(row, 1), codec.encode_chunk(row.copy(), 1)
    assert a == b
    shuffled = zlib.decompress(a[:-4])  # the standard library inflates it
    assert shuffled == row.view(np.uint8).reshape(-1, 4).T.tobytes()
    np.testing.assert_array_equal(codec.decode_chunk(a, np.float32, row.shape), row)


def test_a_corrupt_chunk_is_refused(tmp_path):
    row = np.arange(100, dtype=np.float32)
    enc = bytearray(codec.encode_chunk(row, 1))
    enc[5] ^= 0xFF
    with pytest.raises(ValueError, match="fletcher32 checksum mismatch: the chunk is corrupt"):
        codec.decode_chunk(bytes(enc), np.float32, row.shape)
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("d", shape=(1, 100), dtype=np.float32, chunks=(1, 100), **FILTERS)
        ds.id.write_direct_chunk((0, 0), bytes(enc))
    with h5py.File(path, "r") as f, pytest.raises(OSError):
        f["d"][:]


def test_other_layouts_fall_back_to_hdf5s_own_filters(tmp_path):
    data = np.arange(40, dtype=np.float32).reshape(4, 10)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        plain = f.create_dataset("plain", shape=data.shape, dtype=data.dtype, chunks=(2, 10), compression="gzip")
        codec.write_rows(plain, 0, data)
        lzf = f.create_dataset("lzf", shape=data.shape, dtype=data.dtype, chunks=(1, 10), compression="lzf")
        codec.write_rows(lzf, 1, data[1:])
        np.testing.assert_array_equal(plain[:], data)
        np.testing.assert_array_equal(lzf[1:], data[1:])


_ENCODE_IN_A_FRESH_PROCESS = """
import hashlib, os, sys
import numpy as np
from deblendkit.storage import codec
noise = [os.urandom(1000 + 7919 * i) for i in range(int(sys.argv[1]))]  # another heap history
rng = np.random.default_rng(3)
digest = hashlib.sha256()
for i in range(60):
    shape = [(3, 9, 9), (6, 48, 48), (2, 6, 48, 48)][i % 3]
    row = rng.normal(size=shape).astype(np.float32) * (rng.random(shape) < 0.3)  # sparse, like a PSF wing
    digest.update(codec.encode_chunk(row, 1))
print(codec.DEFLATE_BACKEND, digest.hexdigest())
"""


def test_encoded_chunks_are_the_same_bytes_in_every_process():
    # ISA-L's stream for the same chunk once differed between processes (#18 session 6): the
    # encoding must be a pure function of the data and the level, whatever the process did before.
    outs = {subprocess.run([sys.executable, "-c", _ENCODE_IN_A_FRESH_PROCESS, str(n)], check=True,
                           capture_output=True, text=True).stdout.strip() for n in (0, 5, 40)}
    assert len(outs) == 1, outs
    assert outs.pop().startswith("libdeflate ")

