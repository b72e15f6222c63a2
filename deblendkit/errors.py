"""The project's one error family.

Every error the kit raises on purpose derives from :class:`DeblendKitError` and
from the built-in exception that matches its meaning, so callers can catch
either. Messages name the bad value and what was allowed or expected.
"""
from __future__ import annotations

__all__ = [
    "DeblendKitError",
    "ConfigError",
    "DataFileError",
    "OutputExistsError",
    "PredictionError",
    "SubmissionError",
]


class DeblendKitError(Exception):
    """Base class of every error raised by the kit on purpose."""


class ConfigError(DeblendKitError, ValueError):
    """A configuration value is invalid (wrong type, range or name)."""


class DataFileError(DeblendKitError, OSError):
    """A data file is missing, corrupt, truncated, foreign or of another schema."""


class OutputExistsError(DeblendKitError, FileExistsError):
    """An output file exists and overwriting was not asked for."""


class PredictionError(DeblendKitError, ValueError):
    """Predictions (or ground truth) have the wrong shape, dtype or values."""


class SubmissionError(DeblendKitError, RuntimeError):
    """A participant's submission failed in a step (fit, predict) or broke its contract."""
