"""The project's one error family.

Every error the kit raises on purpose derives from :class:`DeblendKitError` and
from the built-in exception that matches its meaning, so callers can catch
either (``except ValueError`` catches a :class:`ConfigError`). Messages name the
bad value and what was allowed or expected; the same facts are kept as the
attributes ``value`` (the offending value, or :data:`UNSET`) and ``allowed``
(the allowed values or range, or ``None``), as GalSim's ``GalSimValueError``
does. Every class pickles with its message and attributes, so an error raised
in a worker process (local pool, Dask) reaches the parent intact.
"""
from __future__ import annotations

from typing import Any

__all__ = [
    "UNSET",
    "DeblendKitError",
    "ConfigError",
    "DataFileError",
    "OutputExistsError",
    "PredictionError",
    "SubmissionError",
    "SandboxError",
]


class _Unset:
    """Marker of "no value given" (``None`` can be the bad value itself)."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __reduce__(self) -> tuple:
        return (_Unset, ())


UNSET: Any = _Unset()


def _rebuild(cls: type, message: str, value: Any, allowed: Any) -> DeblendKitError:
    return cls(message, value=value, allowed=allowed)


class DeblendKitError(Exception):
    """Base class of every error raised by the kit on purpose.

    Parameters
    ----------
    message : str
        The whole readable message: what is wrong, the bad value, what was expected.
    value : object, optional
        The offending value (kept as ``self.value``; :data:`UNSET` when not given).
    allowed : object, optional
        The allowed values or range (kept as ``self.allowed``; ``None`` when not given).
    """

    def __init__(self, message: str, *, value: Any = UNSET, allowed: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.value = value
        self.allowed = allowed

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple:
        return (_rebuild, (type(self), self.message, self.value, self.allowed))


class ConfigError(DeblendKitError, ValueError):
    """A configuration value or argument is invalid (wrong type, range or name)."""


class DataFileError(DeblendKitError, OSError):
    """A data file is missing, corrupt, truncated, foreign or of another schema."""


class OutputExistsError(DeblendKitError, FileExistsError):
    """An output file exists and overwriting was not asked for."""


class PredictionError(DeblendKitError, ValueError):
    """Predictions (or ground truth) have the wrong shape, dtype or values."""


class SubmissionError(DeblendKitError, RuntimeError):
    """A participant's submission failed in a step (fit, predict) or broke its contract."""


class SandboxError(DeblendKitError, RuntimeError):
    """The sandbox that hosted scoring needs cannot start (tool or kernel feature missing)."""
