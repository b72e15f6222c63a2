"""deblendkit: the reference kit of a galaxy deblending data challenge (RAMP format).

The public API, loaded on first use (PEP 562) so that ``import deblendkit.errors``
in a worker or a sandbox does not import GalSim, h5py and pandas::

    from deblendkit import SimConfig, generate_split, BlendSet, score_file, reference_scores

The subpackages name the stages (``docs/ARCHITECTURE.md``): ``sim`` (scenes),
``storage`` (the data files), ``generation`` (making them), ``deblend`` (what a
submission sees), ``scoring``, ``ramp`` (the RAMP adapter), ``report``, ``cli``.
"""
from __future__ import annotations

import importlib
from typing import Any

from deblendkit._fs import package_version
from deblendkit.errors import (
    ConfigError,
    DataFileError,
    DeblendKitError,
    OutputExistsError,
    PredictionError,
    SandboxError,
    SubmissionError,
)

__version__ = package_version("deblendkit") or "0+unknown"

#: Public name -> module that defines it (imported when the name is first used).
_LAZY = {
    "SimConfig": "deblendkit.config",
    "load_config": "deblendkit.config",
    "simulate_scene": "deblendkit.sim",
    "generate_split": "deblendkit.generation",
    "SplitResult": "deblendkit.generation",
    "validate_file": "deblendkit.storage",
    "read_dataset": "deblendkit.storage",
    "DataFile": "deblendkit.storage",
    "BlendSet": "deblendkit.deblend",
    "load_split": "deblendkit.deblend",
    "Deblender": "deblendkit.deblend",
    "predict_in_batches": "deblendkit.deblend",
    "deblend_scores": "deblendkit.scoring",
    "galaxy_table": "deblendkit.scoring",
    "summarize": "deblendkit.scoring",
    "score_file": "deblendkit.scoring",
    "reference_scores": "deblendkit.scoring",
}

__all__ = [
    "__version__", "DeblendKitError", "ConfigError", "DataFileError", "OutputExistsError", "PredictionError",
    "SubmissionError", "SandboxError", *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'deblendkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
