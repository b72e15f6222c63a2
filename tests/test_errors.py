"""The error family: built-in parents, messages, attributes, pickling (errors cross process pools and Dask)."""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import pickle

import numpy as np
import pytest

from deblendkit import errors
from deblendkit._checks import finite_number, non_negative_int, one_of, positive_int

CLASSES = [
    (errors.ConfigError, ValueError),
    (errors.DataFileError, OSError),
    (errors.OutputExistsError, FileExistsError),
    (errors.PredictionError, ValueError),
    (errors.SubmissionError, RuntimeError),
    (errors.SandboxError, RuntimeError),
]


@pytest.mark.parametrize(("cls", "builtin"), CLASSES)
def test_each_error_is_in_the_family_and_its_builtin(cls, builtin):
    exc = cls("n_jobs must be a positive integer, got 0", value=0, allowed=">= 1")
    assert isinstance(exc, errors.DeblendKitError) and isinstance(exc, builtin)
    assert str(exc) == "n_jobs must be a positive integer, got 0"
    assert exc.value == 0 and exc.allowed == ">= 1"
    with pytest.raises(builtin, match=r"^n_jobs must be a positive integer, got 0$"):
        raise exc


@pytest.mark.parametrize(("cls", "builtin"), CLASSES)
def test_each_error_pickles_with_its_message_and_attributes(cls, builtin):
    exc = cls("band 'q' is not one of ['g', 'r']", value="q", allowed=("g", "r"))
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is cls
    assert (str(back), back.value, back.allowed) == (str(exc), "q", ("g", "r"))


def test_value_defaults_to_unset_and_unset_survives_pickling():
    exc = errors.DataFileError("data/test.h5: not an HDF5 file")
    assert exc.value is errors.UNSET and exc.allowed is None
    assert pickle.loads(pickle.dumps(exc)).value is errors.UNSET
    # None is a value like any other (a bad None is reported as None, not as "no value").
    assert errors.ConfigError("seed must be an integer, got None", value=None).value is None


def _raise_in_worker(value):
    positive_int("n_train", value)


def test_an_error_raised_in_a_worker_process_reaches_the_parent_intact():
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        with pytest.raises(errors.ConfigError, match=r"^n_train must be a positive integer, got -3$") as info:
            pool.submit(_raise_in_worker, -3).result()
    assert info.value.value == -3 and info.value.allowed == ">= 1"


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3", None])
def test_positive_int_refuses_with_the_value(bad):
    with pytest.raises(errors.ConfigError, match=rf"^batch_size must be a positive integer, got {bad!r}$") as info:
        positive_int("batch_size", bad)
    assert info.value.value is bad if bad is None or bad is True else info.value.value == bad


def test_checks_accept_and_convert():
    assert positive_int("n", np.int64(4)) == 4 and type(positive_int("n", np.int64(4))) is int
    assert non_negative_int("margin", 0) == 0
    assert finite_number("x", 2) == 2.0
    assert one_of("mode", "blend", ("blend", "field")) == "blend"


def test_checks_word_their_messages():
    with pytest.raises(errors.ConfigError, match=r"^max_blends must be an integer >= 1, got 0$"):
        positive_int("max_blends", 0, what="an integer >= 1")
    with pytest.raises(errors.ConfigError, match=r"^margin must be an integer >= 0, got -1$"):
        non_negative_int("margin", -1)
    with pytest.raises(errors.ConfigError, match=r"^x must be a finite number, got nan$"):
        finite_number("x", float("nan"))
    with pytest.raises(errors.ConfigError, match=r"^mode must be one of \['blend', 'field'\], got 'sky'$") as info:
        one_of("mode", "sky", ("blend", "field"))
    assert info.value.allowed == ("blend", "field")
