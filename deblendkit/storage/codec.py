"""Encode HDF5 chunks ourselves: shuffle, deflate and fletcher32, byte-compatible with HDF5.

The data files store one blend per chunk with HDF5's standard filter pipeline
(shuffle, then deflate, then the fletcher32 checksum, see ``data/README.md``),
so that any HDF5 reader decodes them. Encoding through HDF5 costs ~11 ms per
blend with zlib at level 1, about a quarter of the whole simulation. This module
produces the *same format* faster, and writes it with
``H5Dwrite_chunk`` (h5py's ``write_direct_chunk``):

- shuffle: a byte transpose of the chunk's elements (numpy);
- deflate: zlib-format stream from libdeflate (the ``deflate`` package, ~2.6x
  faster than zlib at level 1 on these data, same size) or, without it, the
  standard ``zlib``;
- fletcher32: HDF5's Fletcher checksum of the compressed bytes, appended
  little-endian (:func:`fletcher32`).

Readers see ordinary gzip + shuffle + fletcher32 datasets; HDF5 verifies the
checksum and inflates on read. The output bytes depend only on the data, the
level and the libdeflate version (recorded in every file's ``versions``).

Not ISA-L, although it is ~3x faster again: its level-1 stream for the same
input was found to depend on the process (one chunk of a 120-blend file came
out with other, equally valid, bytes in 1 run out of 30, and in a resumed run
of ``tests/generation/test_no_orphans.py``), which breaks "same seed, same
bytes". libdeflate's output is a pure function of the input and the level.
"""
from __future__ import annotations

import zlib

import h5py
import numpy as np

try:  # libdeflate: same zlib format, deterministic, several times faster than zlib
    import deflate as _libdeflate
except ImportError:  # pragma: no cover - deflate is in requirements.txt
    _libdeflate = None

__all__ = ["fletcher32", "encode_chunk", "decode_chunk", "write_rows", "DEFLATE_BACKEND"]

DEFLATE_BACKEND = "libdeflate" if _libdeflate is not None else "zlib"
"""Which library deflates the chunks (``libdeflate`` or the standard ``zlib``)."""


def _compress(data: bytes, level: int) -> bytes:
    """A zlib-format stream of ``data`` at ``level``."""
    if _libdeflate is not None:
        return _libdeflate.zlib_compress(data, level)
    return zlib.compress(data, level)  # pragma: no cover - deflate is in requirements.txt


def fletcher32(data: bytes) -> int:
    """HDF5's Fletcher-32 checksum of ``data`` (``H5_checksum_fletcher32``).

    Sums of big-endian 16-bit words (an odd last byte counts as its high byte),
    modulo 65535 with 65535 standing for a non-zero multiple of it; returns
    ``sum2 << 16 | sum1``.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    n_words = buf.size // 2
    words = buf[: 2 * n_words].view(">u2").astype(np.int64)
    if buf.size % 2:
        words = np.append(words, np.int64(buf[-1]) << 8)
    n = words.size
    # sum1 = sum(w_i); sum2 = sum of the running sums = sum((n - i) * w_i), exact in int64
    # for chunks below ~2 GB; reduce per 2^16-word blocks to stay far from overflow.
    s1 = 0
    s2 = 0
    block = 1 << 16
    for a in range(0, n, block):
        w = words[a:a + block]
        m = w.size
        s2 += int((w * np.arange(m, 0, -1, dtype=np.int64)).sum()) + s1 * m
        s1 += int(w.sum())

    def fold(s: int) -> int:
        return 0 if s == 0 else (s - 1) % 65535 + 1

    return (fold(s2) << 16) | fold(s1)


def encode_chunk(chunk: np.ndarray, level: int) -> bytes:
    """One chunk as HDF5 stores it with the shuffle, deflate(level) and fletcher32 filters."""
    arr = np.ascontiguousarray(chunk)
    size = arr.dtype.itemsize
    raw = arr.reshape(-1).view(np.uint8)
    if size > 1:
        raw = raw.reshape(-1, size).T  # shuffle: all first bytes, then all second bytes...
    body = _compress(np.ascontiguousarray(raw).tobytes(), level)
    return body + fletcher32(body).to_bytes(4, "little")


def decode_chunk(data: bytes, dtype, shape) -> np.ndarray:
    """Inverse of :func:`encode_chunk` (checks the checksum); for tests and tools.

    Raises
    ------
    ValueError
        The checksum does not match the bytes.
    """
    body, stored = data[:-4], int.from_bytes(data[-4:], "little")
    if fletcher32(body) != stored:
        raise ValueError("fletcher32 checksum mismatch: the chunk is corrupt")
    dtype = np.dtype(dtype)
    raw = np.frombuffer(zlib.decompress(body), dtype=np.uint8)
    if dtype.itemsize > 1:
        raw = raw.reshape(dtype.itemsize, -1).T
    return np.ascontiguousarray(raw).view(dtype).reshape(shape)


def _pipeline_is_standard(dset: h5py.Dataset) -> bool:
    """True when ``dset`` is chunked one row per chunk with exactly shuffle, deflate, fletcher32."""
    if dset.chunks is None or dset.chunks != (1,) + dset.shape[1:]:
        return False
    plist = dset.id.get_create_plist()
    ids = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    return ids == [h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_DEFLATE, h5py.h5z.FILTER_FLETCHER32]


def write_rows(dset: h5py.Dataset, start: int, rows: np.ndarray) -> None:
    """Write ``rows`` into ``dset[start:start + len(rows)]``, one direct chunk per row.

    ``dset`` must be chunked one row per chunk with the shuffle, deflate and
    fletcher32 filters (the data files' layout); otherwise this falls back to an
    ordinary write through HDF5's filters.
    """
    rows = np.asarray(rows, dtype=dset.dtype)
    if not _pipeline_is_standard(dset) or rows.shape[1:] != dset.shape[1:]:
        dset[start:start + len(rows)] = rows
        return
    level = int(dset.compression_opts)
    zeros = (0,) * (dset.ndim - 1)
    for i, row in enumerate(rows):
        dset.id.write_direct_chunk((start + i,) + zeros, encode_chunk(row, level))
