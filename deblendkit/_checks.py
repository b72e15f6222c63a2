"""Argument checks shared by the whole package.

Each raises :class:`~deblendkit.errors.ConfigError` naming the argument, the
bad value and what was expected, with ``value`` and ``allowed`` set.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Collection
from typing import Any

from deblendkit.errors import ConfigError

__all__ = ["positive_int", "non_negative_int", "finite_number", "one_of"]


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(name: str, value: Any, *, what: str = "a positive integer") -> int:
    """``value`` as an ``int`` if it is an integer >= 1 (``bool`` refused).

    ``what`` words the expectation in the message: ``"{name} must be {what}, got {value!r}"``.
    """
    if not _is_int(value) or value < 1:
        raise ConfigError(f"{name} must be {what}, got {value!r}", value=value, allowed=">= 1")
    return int(value)


def non_negative_int(name: str, value: Any, *, what: str = "an integer >= 0") -> int:
    """``value`` as an ``int`` if it is an integer >= 0 (``bool`` refused)."""
    if not _is_int(value) or value < 0:
        raise ConfigError(f"{name} must be {what}, got {value!r}", value=value, allowed=">= 0")
    return int(value)


def finite_number(name: str, value: Any) -> float:
    """``value`` as a ``float`` if it is a finite real number (``bool`` refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}", value=value,
                          allowed="a finite real number")
    return float(value)


def one_of(name: str, value: Any, allowed: Collection[Any]) -> Any:
    """``value`` if it is one of ``allowed``."""
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {sorted(allowed)!r}, got {value!r}", value=value,
                          allowed=tuple(allowed))
    return value
