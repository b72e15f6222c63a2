"""What a submission implements: the :class:`Deblender` protocol, and one optional helper.

A submission's ``Deblender`` is any class with ``fit(X, y) -> self`` and
``predict(X) -> ndarray (n, K, C, H, W) float32`` (structural typing: nothing to
inherit). Most classical deblenders treat one blend at a time;
:func:`predict_in_batches` owns the loop they share: read ``X`` a batch at a
time (a file-backed ``X`` never sits in memory whole), call a per-blend function
on every blend that has galaxies, and stack the results.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from deblendkit._checks import positive_int
from deblendkit.deblend.blendset import BlendSet

__all__ = ["Deblender", "predict_in_batches"]


@runtime_checkable
class Deblender(Protocol):
    """A submission's deblender, as the workflow calls it.

    ``X`` is a :class:`~deblendkit.deblend.blendset.BlendSet` of n blends; ``y``
    the isolated images, (n, K, C, H, W) float32, ADU (an ndarray or a
    file-backed :class:`~deblendkit.storage.lazy.LazyRows`).
    """

    def fit(self, X: BlendSet, y: Any) -> "Deblender":
        """Learn from the training blends; returns ``self``."""
        ...

    def predict(self, X: BlendSet) -> np.ndarray:
        """Isolated images of every galaxy, (n, K, C, H, W) float32, ADU; empty slots zero."""
        ...


def predict_in_batches(
    X: BlendSet,
    predict_blend: Callable[[BlendSet, int], Any],
    *,
    batch_size: int = 256,
) -> np.ndarray:
    """Apply a per-blend deblender to every blend of ``X``, a batch at a time.

    Parameters
    ----------
    X : BlendSet
        The n blends (in memory or read lazily from a file).
    predict_blend : callable ``(batch, i) -> array (k, C, H, W)``
        Deblends blend ``i`` of ``batch`` (a BlendSet subset of ``X``), whose
        ``k = batch.n_galaxies[i] >= 1`` galaxies sit at ``batch.centers[i, :k]``;
        returns their images, ADU. Not called for a blend without galaxies.
    batch_size : int
        Blends read per batch (memory grows with it, not with ``X``).

    Returns
    -------
    ndarray, (n, K, C, H, W) float32
        Slot ``j < k`` of blend ``b`` is galaxy ``j``'s image; slots ``>= k`` are zero.

    Raises
    ------
    ConfigError
        ``batch_size`` is not a positive integer.
    """
    batch_size = positive_int("batch_size", batch_size)
    out = []
    for batch in X.batches(batch_size):
        n, c, h, w = np.shape(batch.blend)
        pred = np.zeros((n, batch.max_galaxies, c, h, w), dtype=np.float32)
        for i in range(n):
            k = int(batch.n_galaxies[i])  # slots k and above stay zero
            if k:
                pred[i, :k] = predict_blend(batch, i)
        out.append(pred)
    if not out:  # no blends at all
        return np.zeros((0, X.max_galaxies) + np.shape(X.blend)[1:], dtype=np.float32)
    return np.concatenate(out)
