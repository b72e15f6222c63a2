"""The batched fit: many blends with the same number of galaxies at once (:func:`fit_blends`).

The same algorithm as :func:`~deblendkit.deblend.forward_model.fit.fit_blend`, with every array given a leading
axis over blends: one FFT call, one constraint pass and one NNLS step serve
the whole batch, so numpy's per-call overhead (most of the per-blend cost)
is paid once per iteration of the batch. Each blend keeps its own momentum,
restarts and stopping test; a blend that has converged is recorded and,
once an eighth of the active blends are done, dropped from the arrays.
"""
import dataclasses
import logging

import numpy as np

from deblendkit.deblend.forward_model.constraints import BatchConstraints
from deblendkit.deblend.forward_model.options import FitOptions
from deblendkit.deblend.forward_model.psf import _smooth, _smoothed_noise_factor
from deblendkit.deblend.forward_model.render import BatchRenderer

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class BatchFitResult:
    """Outcome of :func:`fit_blends` (n blends of K sources); fields as :class:`FitResult`.

    Attributes
    ----------
    models : ndarray, (n, K, C, H, W)
        Each source rendered in each band's PSF on the stamp, ADU.
    sed : ndarray, (n, C, K)
        Amplitudes per band, ADU per unit of the morphology.
    morphology : ndarray, (n, K, H + 2 margin, W + 2 margin)
        In the model PSF, maximum 1.
    n_iter : ndarray of int, (n,)
        Iterations run by each blend.
    converged : ndarray of bool, (n,)
        Whether the ``e_rel`` criterion stopped each blend (else ``max_iter``).
    """

    models: np.ndarray
    sed: np.ndarray
    morphology: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray


def _nnls_gram_batch(gram: np.ndarray, rhs: np.ndarray, a: np.ndarray, steps: int) -> np.ndarray:
    """:func:`_nnls_gram` over leading axes: ``gram`` (..., K, K), ``rhs`` and ``a`` (..., K)."""
    lip = np.linalg.eigvalsh(gram)[..., -1]
    step = 1.0 / np.where(lip > 0, lip, 1.0)
    for _ in range(steps):
        grad = np.matmul(gram, a[..., None])[..., 0] - rhs
        a = np.maximum(a - step[..., None] * grad, 0.0)
    return a


def _update_a_batch(a: np.ndarray, models: np.ndarray, wflat: np.ndarray, data_w: np.ndarray,
                    steps: int) -> np.ndarray:
    """The A update of :func:`fit_blend` per blend: ``models`` (n, C, K, H * W) -> ``a`` (n, C, K).

    ``wflat`` (n, C, 1, H * W) inverse variances, ``data_w`` (n, C, H * W, 1)
    the blends times them; the Gram matrices in single precision (relative
    error ~1e-6), the NNLS steps in double.
    """
    gram = np.matmul(models * wflat, np.swapaxes(models, -1, -2)).astype(np.float64)
    rhs = np.matmul(models, data_w)[..., 0].astype(np.float64)
    return _nnls_gram_batch(gram, rhs, a, steps)


def _initial_batch(detection: np.ndarray, cons: BatchConstraints, threshold: np.ndarray) -> np.ndarray:
    """:func:`initial_morphologies` of n blends: ``detection`` (n, Y, X), ``threshold`` (n,) -> (n, K, Y, X)."""
    n, y, x = detection.shape
    k = len(cons.centers) // n
    det = np.repeat(detection.reshape(n, -1), k, axis=0)  # (n K, Y X), source order
    mirrored = np.take_along_axis(det, cons.mirror_local, axis=1)
    t = np.where(cons.inside, np.minimum(det, mirrored), 0.0).reshape(n * k, y, x)
    t = cons(t)
    t = np.where(t > np.repeat(threshold, k)[:, None, None], t, 0.0)
    peak = t.reshape(n * k, -1).max(axis=1)
    for j in np.flatnonzero(peak <= 0):
        cx, cy = np.floor(cons.centers[j])
        t[j, int(np.clip(cy, 0, y - 1)), int(np.clip(cx, 0, x - 1))] = 1.0
        peak[j] = 1.0
    return (t / peak[:, None, None]).reshape(n, k, y, x)


def _row_norms(x: np.ndarray) -> np.ndarray:
    """Euclidean norm of each row (leading axis) of ``x`` (pairwise sums, in double)."""
    flat = x.reshape(len(x), -1)
    return np.sqrt(np.square(flat).sum(axis=1, dtype=np.float64))


class _Active:
    """The arrays of the blends still iterating in :func:`fit_blends` (leading axis: blend)."""

    per_blend = ("ids", "blend", "wmap", "wflat", "data_w", "wmax", "a", "s", "s_prev",
                 "t_mom", "loss_prev", "live")

    def __init__(self, ren: BatchRenderer, cons: BatchConstraints, **arrays):
        self.ren, self.cons = ren, cons
        for name in self.per_blend:
            setattr(self, name, arrays[name])

    def compact(self) -> None:
        """Drop the blends no longer live."""
        keep = np.flatnonzero(self.live)
        k = self.a.shape[2]
        self.ren = self.ren.take(keep)
        self.cons = self.cons.take((keep[:, None] * k + np.arange(k)).ravel())
        for name in self.per_blend:
            setattr(self, name, getattr(self, name)[keep])


def _iteration(st: _Active, options: FitOptions) -> tuple[np.ndarray, np.ndarray]:
    """One iteration of :func:`fit_blend`'s loop on every active blend; returns (da, ds)."""
    n, c, k = st.a.shape
    a_old, s_old = st.a, st.s
    t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * st.t_mom**2))
    beta = (st.t_mom - 1.0) / t_next if options.momentum else np.zeros(n)
    st.t_mom = t_next
    s_y = st.s - st.s_prev
    s_y *= beta.astype(np.float32)[:, None, None, None]
    s_y += st.s  # = s where beta is 0
    models = st.ren.render(st.ren.transform(s_y))  # (n, C, K, P)
    a = _update_a_batch(st.a, models, st.wflat, st.data_w, options.a_steps)
    resid = np.matmul(a.astype(np.float32)[:, :, None, :], models)[:, :, 0] - st.blend  # (n, C, P)
    wres = resid * st.wmap
    loss = 0.5 * (wres * resid).reshape(n, -1).sum(axis=1, dtype=np.float64)
    st.t_mom = np.where(loss > st.loss_prev, 1.0, st.t_mom)  # adaptive restart
    st.loss_prev = loss
    grad = st.ren.adjoint(a, wres.reshape(n, c, *st.ren.stamp))
    lip = st.ren.gain2[:, None] * np.einsum("nb,nbk,nb->nk", st.wmax, a, a.sum(axis=2))
    grad *= (options.step_scale / np.maximum(lip, 1e-30)).astype(np.float32)[:, :, None, None]
    s_y -= grad
    s_new = st.cons(s_y)
    peak = s_new.reshape(n, k, -1).max(axis=2).astype(np.float64)
    scale = np.where(peak > 0, 1.0 / np.maximum(peak, 1e-300), 1.0).astype(np.float32)[:, :, None, None]
    st.a = a * np.where(peak > 0, peak, 0.0)[:, None, :]
    st.s_prev = st.s * scale
    st.s = np.multiply(s_new, scale, out=s_new)
    da = _row_norms(st.a - a_old) / np.maximum(_row_norms(st.a), 1e-30)
    ds = _row_norms(st.s - s_old) / np.maximum(_row_norms(st.s), 1e-30)
    return da, ds


def _iterate(st: _Active, res: BatchFitResult, options: FitOptions) -> None:
    """:func:`fit_blends`' iterations: each blend's ``sed``, ``morphology``, ``n_iter``, ``converged`` into ``res``.

    A blend's fields are recorded when it converges (or after ``max_iter``);
    the arrays of ``st`` are compacted once an eighth of them are done.
    """
    for it in range(1, options.max_iter + 1):
        da, ds = _iteration(st, options)
        done = st.live & (da < options.e_rel) & (ds < options.e_rel)
        if done.any():
            ids = st.ids[done]
            res.sed[ids], res.morphology[ids] = st.a[done], st.s[done]
            res.n_iter[ids], res.converged[ids] = it, True
            st.live = st.live & ~done
            n_dead = len(st.live) - int(st.live.sum())
            if n_dead == len(st.live):
                break
            if n_dead >= max(1, len(st.live) // 8):
                st.compact()
    rest = st.ids[st.live]
    res.sed[rest], res.morphology[rest] = st.a[st.live], st.s[st.live]


def fit_blends(blend: np.ndarray, psf: np.ndarray, noise_sigma: np.ndarray, centers: np.ndarray,
               options: FitOptions = FitOptions(), *, gain: np.ndarray | None = None) -> BatchFitResult:
    """:func:`fit_blend` of n blends with K sources each, all at once.

    Parameters
    ----------
    blend : ndarray, (n, C, H, W)
        Observed images, ADU.
    psf : ndarray, (n, C, P, P)
        PSF per blend and band, unit sum, centred.
    noise_sigma : ndarray, (n, C)
        Background noise, ADU / pixel.
    centers : ndarray, (n, K, 2)
        (x, y) of the sources on each stamp, pixels (no NaN).
    options : FitOptions
        Fit settings (``batched`` and ``batch_size`` are not used here).
    gain : ndarray, (C,), optional
        Electrons per ADU of each band, as in :func:`fit_blend`.

    Returns
    -------
    BatchFitResult
        Blend i's fields equal those of :func:`fit_blend` on it, up to
        floating-point rounding (summation order).
    """
    blend = np.asarray(blend, dtype=np.float64)
    n, c, h, w = blend.shape
    centers = np.asarray(centers, dtype=np.float64)  # (n, K, 2)
    k = centers.shape[1]
    m = options.margin
    grid = (h + 2 * m, w + 2 * m)
    if n == 0 or k == 0:
        return BatchFitResult(np.zeros((n, k, c, h, w)), np.zeros((n, c, k)), np.zeros((n, k) + grid),
                              np.zeros(n, dtype=int), np.ones(n, dtype=bool))
    sigma = np.asarray(noise_sigma, dtype=np.float64)
    sigma = np.maximum(sigma, 1e-6 * np.maximum(np.abs(blend).reshape(n, -1).max(axis=1), 1e-30)[:, None])
    weight = 1.0 / sigma**2  # (n, C)
    smooth = _smooth(blend, options.init_smoothing)
    if gain is None:
        wmap = np.broadcast_to(weight[:, :, None, None], blend.shape)
    else:
        inv_gain = 1.0 / np.asarray(gain, dtype=np.float64)
        wmap = 1.0 / (sigma[:, :, None, None] ** 2 + np.maximum(smooth, 0.0) * inv_gain[:, None, None])
    ren = BatchRenderer(psf, (h, w), centers, m, options.model_psf_sigma)
    cons = BatchConstraints(grid, ren.centers.reshape(-1, 2))
    detection = np.einsum("nb,nbyx->nyx", weight, smooth) / weight.sum(axis=1)[:, None, None]
    det_noise = _smoothed_noise_factor(options.init_smoothing) / np.sqrt(weight.sum(axis=1))
    padded = np.zeros((n,) + grid)
    padded[:, m: m + h, m: m + w] = detection
    s = _initial_batch(padded, cons, options.init_threshold * det_noise).astype(np.float32)
    # Single precision from here on (as the FFTs): pixel arrays flattened (n, C, H W).
    wmap32 = np.ascontiguousarray(wmap, dtype=np.float32).reshape(n, c, -1)
    blend32 = blend.astype(np.float32).reshape(n, c, -1)
    wflat = wmap32[:, :, None, :]
    data_w = (blend32 * wmap32)[..., None]
    a = _update_a_batch(np.zeros((n, c, k)), ren.render(ren.transform(s)), wflat, data_w, 50)
    st = _Active(ren, cons, ids=np.arange(n), blend=blend32, wmap=wmap32, wflat=wflat,
                 data_w=data_w, wmax=wmap.reshape(n, c, -1).max(axis=2), a=a, s=s, s_prev=s,
                 t_mom=np.ones(n), loss_prev=np.full(n, np.inf), live=np.ones(n, dtype=bool))
    res = BatchFitResult(None, np.empty_like(a), np.empty_like(s),
                         np.full(n, options.max_iter), np.zeros(n, dtype=bool))
    _iterate(st, res, options)
    models = ren.render(ren.transform(res.morphology))
    res.sed = _update_a_batch(res.sed, models, wflat, data_w, options.a_steps)
    out = np.swapaxes((res.sed[..., None] * models).reshape(n, c, k, h, w), 1, 2)  # (n, K, C, H, W)
    if options.reapportion:
        total = out.sum(axis=1)
        cover = total > sigma[:, :, None, None]
        out = out / np.where(cover, total, 1.0)[:, None] * np.where(cover, blend, 0.0)[:, None]
    res.models = out
    logger.debug("batched fit of %d blends of %d sources: %s iterations", n, k, res.n_iter.tolist())
    return res
