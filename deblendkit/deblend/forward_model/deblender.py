"""The forward-model deblender as a submission: :class:`Deblender` (``fit`` measures the gains, ``predict`` fits)."""
import concurrent.futures
import logging
import os

import numpy as np

from deblendkit.deblend.forward_model.batch import fit_blends
from deblendkit.deblend.forward_model.fit import fit_blend
from deblendkit.deblend.forward_model.gain import estimate_gain
from deblendkit.deblend.forward_model.options import FAST_OPTIONS, FitOptions
from deblendkit.deblend.protocol import predict_in_batches

logger = logging.getLogger(__name__)


class Deblender:
    """The forward-model deblender as a submission.

    Parameters
    ----------
    reference : bool
        Start from :class:`FitOptions`' own defaults (the original per-blend
        fit, one blend at a time) instead of :data:`FAST_OPTIONS`.
    n_threads : int or None
        Threads that fit groups of blends at the same time in the batched
        :meth:`predict` (``None``: the CPU cores this process may use, at
        most :attr:`max_threads`). The groups are the same whatever the
        number: the predictions do not depend on it (tested).
    **options
        Fields of :class:`FitOptions` (they override either).

    Attributes
    ----------
    gain_ : ndarray (C,) or None
        Electrons per ADU per band, measured by :meth:`fit` (None before): the
        only thing learned from the training data, for the Poisson term of
        the pixel variance.
    """

    #: Training blends used to measure the gain.
    n_gain_blends = 200

    def __init__(self, reference: bool = False, n_threads: int | None = None, **options):
        base = {"batched": False} if reference else dict(FAST_OPTIONS)
        self.options = FitOptions(**{**base, **options})
        if n_threads is not None and (not isinstance(n_threads, int) or n_threads < 1):
            raise ValueError(f"n_threads must be a positive integer or None, got {n_threads!r}")
        self.n_threads = n_threads
        self.gain_ = None

    def fit(self, X, y):
        """Measure each band's gain from the noise of (some) training blends.

        Each blend is fitted on its own in :meth:`predict`; ``y`` only serves
        to separate the noise from the signal here.
        """
        n = min(len(X), self.n_gain_blends)
        if n > 0:
            sub = X[slice(0, n)]
            self.gain_ = estimate_gain(sub.blend, np.asarray(y[:n]), sub.noise_sigma)
            logger.info("gain per band (e-/ADU) from %d blends: %s", n, self.gain_)
        return self

    #: Blends read from ``X`` at a time by the batched :meth:`predict`.
    read_batch = 256

    #: Most threads used when ``n_threads`` is None.
    max_threads = 4

    def threads(self) -> int:
        """Threads of the batched :meth:`predict`: ``n_threads``, or the usable CPU cores (<= :attr:`max_threads`)."""
        if self.n_threads is not None:
            return self.n_threads
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
        return max(1, min(self.max_threads, cores))

    def predict(self, X) -> np.ndarray:
        """Fit every blend of ``X``; returns (n, K, C, H, W) float32, ADU.

        With ``batched`` (the default) the blends of each read batch are
        grouped by number of galaxies and fitted ``batch_size`` at a time
        by :func:`fit_blends`, :meth:`threads` groups at once (numpy's
        and scipy.fft's array work releases the GIL); the next read batch's
        groups are queued while the last ones of a batch run, so no thread
        waits at the end of a batch. Otherwise one blend at a time by
        :func:`fit_blend`.
        """
        if not self.options.batched:
            return predict_in_batches(X, self._predict_blend, batch_size=64)
        pool = concurrent.futures.ThreadPoolExecutor(self.threads(), thread_name_prefix="forward_model")
        out, queued = [], None
        try:
            for batch in X.batches(self.read_batch):
                tasks = self._submit_batch(pool, batch)
                if queued is not None:
                    out.append(self._collect(*queued))
                queued = tasks
            if queued is not None:
                out.append(self._collect(*queued))
        finally:
            # An interrupted predict (the workflow's time budget) cancels what
            # has not started; a running group ends on its own within seconds.
            pool.shutdown(wait=False, cancel_futures=True)
        if not out:  # no blends at all
            return np.zeros((0, X.max_galaxies) + np.shape(X.blend)[1:], dtype=np.float32)
        return np.concatenate(out)

    def _submit_batch(self, pool, batch) -> tuple:
        """Queue the fits of a read batch's groups of equal galaxy count; returns what :meth:`_collect` needs."""
        blend = np.asarray(batch.blend)
        n, c, h, w = blend.shape
        pred = np.zeros((n, batch.max_galaxies, c, h, w), dtype=np.float32)
        n_gal = np.asarray(batch.n_galaxies).astype(int)
        psf, sigma = np.asarray(batch.psf), np.asarray(batch.noise_sigma)
        centers = np.asarray(batch.centers, dtype=np.float64)
        step = self.options.batch_size
        futures = []
        for k in np.unique(n_gal[n_gal > 0]):
            rows = np.flatnonzero(n_gal == k)
            for start in range(0, len(rows), step):
                r = rows[start: start + step]
                futures.append((r, k, pool.submit(fit_blends, blend[r], psf[r], sigma[r], centers[r, :k],
                                                  self.options, gain=self.gain_)))
        return pred, futures

    @staticmethod
    def _collect(pred: np.ndarray, futures: list) -> np.ndarray:
        """The (n, K, C, H, W) float32 predictions of a read batch, once its groups are fitted."""
        for r, k, future in futures:
            pred[r, :k] = future.result().models
        return pred

    def _predict_blend(self, batch, i: int) -> np.ndarray:
        """The fitted (k, C, H, W) models of the k galaxies of blend ``i`` of ``batch``."""
        k = int(batch.n_galaxies[i])
        res = fit_blend(np.asarray(batch.blend[i]), np.asarray(batch.psf[i]),
                        np.asarray(batch.noise_sigma[i]),
                        np.asarray(batch.centers[i, :k], dtype=np.float64),
                        self.options, gain=self.gain_)
        return res.models
