"""The package root: every public name resolves, lazily, and imports stay light."""
from __future__ import annotations

import subprocess
import sys

import pytest

import deblendkit


@pytest.mark.parametrize("name", deblendkit.__all__)
def test_every_public_name_resolves(name):
    assert getattr(deblendkit, name) is not None
    assert name in dir(deblendkit)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match=r"^module 'deblendkit' has no attribute 'nope'$"):
        deblendkit.nope  # noqa: B018


def test_the_root_and_the_errors_import_without_the_heavy_packages():
    code = ("import sys, deblendkit, deblendkit.errors; "
            "print(sorted(m for m in ('galsim', 'h5py', 'pandas', 'rampwf', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_version_is_the_installed_distributions():
    from importlib.metadata import version

    assert deblendkit.__version__ == version("deblendkit")
