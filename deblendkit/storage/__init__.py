"""Storage: writing and reading the challenge's HDF5 data files (schema in ``data/README.md``).

Modules, from the bottom up: ``schema`` (the ONE place where dataset names,
dtypes, shapes and truth columns live), ``attrs`` (root attributes and their
digest), ``codec`` (HDF5 chunks encoded by us), ``row_checks`` (blend rows
against the contract), ``reader`` (opening and validating a file), ``writer``
(:class:`DatasetWriter`, rows files), ``lazy`` (:class:`H5Source`,
:class:`H5Array`, :class:`LazyRows`) and ``datafile`` (:class:`DataFile`,
:func:`read_dataset`, :func:`read_batches`).
"""
from deblendkit.storage.attrs import attrs_digest
from deblendkit.storage.codec import DEFLATE_BACKEND, decode_chunk, encode_chunk, fletcher32, write_rows
from deblendkit.storage.datafile import DataFile, read_batches, read_dataset, truth_frame
from deblendkit.storage.lazy import H5Array, H5Source, LazyRows
from deblendkit.storage.reader import (
    FileLayout,
    block_rows,
    check_content,
    open_data_file,
    read_checked,
    read_layout,
    validate_file,
)
from deblendkit.storage.schema import (
    DATASETS,
    DTYPES,
    INPUT_DATASETS,
    KIT_NAME,
    PER_BLEND_DATASETS,
    SCHEMA_VERSION,
    check_bands,
    dataset_shapes,
    truth_columns,
    truth_dtype,
)
from deblendkit.storage.writer import DatasetWriter, remove_stale_temp_files, write_rows_file

__all__ = [
    "DATASETS", "DEFLATE_BACKEND", "DTYPES", "DataFile", "DatasetWriter", "FileLayout", "H5Array", "H5Source",
    "INPUT_DATASETS", "KIT_NAME", "LazyRows", "PER_BLEND_DATASETS", "SCHEMA_VERSION", "attrs_digest",
    "block_rows", "check_bands", "check_content", "dataset_shapes", "decode_chunk", "encode_chunk",
    "fletcher32", "open_data_file", "read_batches", "read_checked", "read_dataset", "read_layout",
    "remove_stale_temp_files", "truth_columns", "truth_dtype", "truth_frame", "validate_file",
    "write_rows", "write_rows_file",
]
