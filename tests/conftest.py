"""Shared fixtures of the test suite."""
from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collection_modifyitems(config, items):
    """Run the tests marked ``jax`` last: JAX's threads make any later ``os.fork`` unsafe."""
    items.sort(key=lambda item: item.get_closest_marker("jax") is not None)  # stable: order kept otherwise


@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory) -> Path:
    """A small data directory made once per test session by ``prepare_data.py``.

    Default simulator settings (LSST ugrizy, 48x48 stamps, K_max 6, seed 0);
    ``train.h5`` 24 blends, ``test.h5`` 12, ``train_mini.h5`` 8, ``test_mini.h5`` 4.
    Treat it as read-only: it is shared by every test that asks for it.
    """
    from deblendkit.cli.prepare_data import main

    out = tmp_path_factory.mktemp("small_data")
    rc = main([
        "--output-dir", str(out), "--n-train", "24", "--n-test", "12", "--n-mini", "8",
        "--n-jobs", "1", "--quiet",
    ])
    if rc != 0:
        raise RuntimeError(f"prepare_data.py failed with exit code {rc} making the small data set")
    return out
