"""Root attributes of a data file: encoding, decoding and their SHA-256 digest.

Containers (dicts, lists, tuples, arrays) are stored as JSON strings; strings
as fixed-length UTF-8 (in the checksummed object header, never in HDF5's
unchecksummed global heap); :func:`attrs_digest` covers every root attribute
so that a flipped bit in one is an error on read.
"""
from __future__ import annotations

import hashlib
import json
import numbers
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

from deblendkit.errors import ConfigError

__all__ = ["RESERVED_ATTRS", "encode_attr", "decode_attr", "store_attr", "attrs_digest"]

RESERVED_ATTRS = ("schema_version", "kit", "attrs_sha256")
"""Root attributes the writer sets itself (a caller may not give them)."""

def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode_attr(name: str, value: Any) -> Any:
    """The value stored in HDF5 for a root attribute (containers become JSON)."""
    if isinstance(value, (Mapping, list, tuple, np.ndarray)):
        try:
            return json.dumps(value, default=_json_default, sort_keys=False)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"attribute {name!r} cannot be stored as JSON: {exc}"
            ) from exc
    if isinstance(value, (str, bool, np.bool_, numbers.Integral, numbers.Real)):
        return value.item() if isinstance(value, np.generic) else value
    raise ConfigError(
        f"attribute {name!r} has type {type(value).__name__}; allowed: str, int, float, "
        "bool, or a dict/list/tuple/ndarray (stored as JSON)"
    )


def decode_attr(value: Any) -> Any:
    """A root attribute as Python: numpy scalars unwrapped, JSON containers decoded."""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def store_attr(attrs: h5py.AttributeManager, name: str, value: Any) -> None:
    """Set a root attribute; strings as fixed-length UTF-8.

    Fixed-length strings live in the (checksummed) object header. Variable-length
    ones, h5py's default for ``str``, live in HDF5's global heap, which has no
    checksum: one flipped bit in an object's length there makes the HDF5 library
    loop forever when the attribute is read (found by flipping every bit of a
    small file). h5py reads these attributes back as ``numpy.bytes_``;
    :func:`decode_attr` turns them into ``str``.
    """
    if isinstance(value, str):
        data = value.encode("utf-8")
        attrs.create(name, data=np.array(data, dtype=h5py.string_dtype("utf-8", max(1, len(data)))))
    else:
        attrs[name] = value


def _canonical_attr(value: Any) -> Any:
    """A stored attribute value as plain JSON-able Python (for the digest)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def attrs_digest(attrs: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of root attributes as stored, ``attrs_sha256`` itself left out.

    The attributes are serialised as canonical JSON (sorted names, numpy scalars
    as Python numbers, floats written exactly), so the digest of the values read
    back from a file equals the digest of the values written.
    """
    items = {
        str(name): _canonical_attr(value)
        for name, value in attrs.items()
        if name != "attrs_sha256"
    }
    text = json.dumps(items, sort_keys=True, default=_json_default, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8", errors="surrogateescape")).hexdigest()

