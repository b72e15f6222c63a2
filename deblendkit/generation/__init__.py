"""Data generation: chunks of blends simulated anywhere, kept as checksummed files, assembled in order.

Modules, in the order the data flows:

- :mod:`~deblendkit.generation.chunks`: a chunk of blends, :func:`simulate_chunk` (a pure function);
- :mod:`~deblendkit.generation.provenance`: the root attributes a data file records;
- :mod:`~deblendkit.generation.chunk_store`: chunk files, their manifest and checksums, resume;
- :mod:`~deblendkit.generation.local_pool`: this process or a local pool whose workers die with it;
- :mod:`~deblendkit.generation.dask_executor`: a Dask cluster (remote, or a local one);
- :mod:`~deblendkit.generation.executors`: :func:`run_chunks`, one entry point over both;
- :mod:`~deblendkit.generation.stop`: :class:`StopSignal`, a stop request set by a signal;
- :mod:`~deblendkit.generation.split`: :func:`generate_split`, the whole of one data file.
"""
from deblendkit.generation.chunk_store import CHUNK_FORMAT, ChunkInfo, ChunkStore, simulate_to_store
from deblendkit.generation.chunks import Chunk, chunk_bounds, simulate_chunk
from deblendkit.generation.dask_executor import dask_client, is_dask_client
from deblendkit.generation.executors import run_chunks
from deblendkit.generation.local_pool import start_method
from deblendkit.generation.provenance import created_time, package_versions, split_attrs
from deblendkit.generation.split import SplitResult, generate_split
from deblendkit.generation.stop import StopSignal

__all__ = [
    "CHUNK_FORMAT",
    "Chunk",
    "ChunkInfo",
    "ChunkStore",
    "SplitResult",
    "StopSignal",
    "chunk_bounds",
    "created_time",
    "dask_client",
    "generate_split",
    "is_dask_client",
    "package_versions",
    "run_chunks",
    "simulate_chunk",
    "simulate_to_store",
    "split_attrs",
    "start_method",
]
