"""The morphology constraints: point symmetry, monotonicity, positivity, as proximal operators.

Geometry: centres are (x, y) pixels, 0-based, pixel i spanning [i - 0.5, i + 0.5];
arrays are indexed [y, x]. Morphologies are symmetric about the centre rounded
to the nearest half pixel (so that the mirror of a pixel is a pixel).

Single images or stacks (:func:`mirror_map`, :func:`monotonic_tree`, the
``prox_*`` operators), every source of one blend (:class:`MorphologyConstraints`),
or the sources of many blends at once (:class:`BatchConstraints`, whose
monotonic trees are windows of cached canvas trees).
"""
import numpy as np


def round_to_half_pixel(center: np.ndarray) -> np.ndarray:
    """Round (x, y) pixel coordinates to the nearest multiple of 0.5."""
    return np.round(2.0 * np.asarray(center, dtype=np.float64)) / 2.0


def mirror_map(shape: tuple[int, int], center: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat index of each pixel's point reflection through ``center``.

    Parameters
    ----------
    shape : (H, W)
        Image shape, pixels.
    center : array_like, (2,)
        (x, y) in pixels, rounded to the nearest half pixel.

    Returns
    -------
    mirror : ndarray of int, (H * W,)
        Flat index of pixel ``2 c - p`` (the pixel itself where that is off
        the image).
    inside : ndarray of bool, (H * W,)
        Whether the mirror pixel lies on the image.
    """
    h, w = shape
    two_cx, two_cy = (2.0 * round_to_half_pixel(center)).astype(np.int64)
    yy, xx = np.mgrid[0:h, 0:w]
    my, mx = two_cy - yy, two_cx - xx
    inside = (my >= 0) & (my < h) & (mx >= 0) & (mx < w)
    mirror = np.where(inside, my * w + mx, yy * w + xx)
    return mirror.ravel(), inside.ravel()


def monotonic_tree(shape: tuple[int, int], center: np.ndarray) -> tuple[np.ndarray, list]:
    """Parent of each pixel on its way to ``center``, grouped by depth.

    Of a pixel's 8 neighbours that lie strictly closer to the centre (rounded
    to the nearest half pixel), its parent is the one whose direction points
    most nearly at the centre; parent chains are pixelised rays. Pixels with
    no closer neighbour (the 1, 2 or 4 nearest the centre) are roots. The
    choice is point-symmetric: the parent of a mirrored pixel is the mirror of
    the parent.

    Returns
    -------
    parent : ndarray of int, (H * W,)
        Flat index of each pixel's parent (itself for roots).
    levels : list of ndarray of int
        ``levels[j - 1]``: flat indices of the pixels j steps from their root
        (j >= 1); each pixel's parent is in the previous level.
    """
    h, w = shape
    cx, cy = round_to_half_pixel(center)
    yy, xx = np.mgrid[0:h, 0:w]
    dx, dy = xx - cx, yy - cy
    r = np.hypot(dx, dy)
    best = np.full((h, w), -np.inf)
    parent = (yy * w + xx).copy()
    for sy in (-1, 0, 1):
        for sx in (-1, 0, 1):
            if sx == 0 and sy == 0:
                continue
            ok = (yy + sy >= 0) & (yy + sy < h) & (xx + sx >= 0) & (xx + sx < w)
            ok &= np.hypot(dx + sx, dy + sy) < r - 1e-9
            cos = -(sx * dx + sy * dy) / (np.hypot(sx, sy) * np.maximum(r, 1e-12))
            take = ok & (cos > best)
            best = np.where(take, cos, best)
            parent = np.where(take, (yy + sy) * w + xx + sx, parent)
    parent = parent.ravel()
    is_root = parent == np.arange(h * w)
    depth = np.zeros(h * w, dtype=np.int64)
    for _ in range(h + w):
        new = np.where(is_root, 0, depth[parent] + 1)
        if np.array_equal(new, depth):
            break
        depth = new
    order = np.argsort(depth, kind="stable")
    bounds = np.searchsorted(depth[order], np.arange(1, depth.max() + 2))
    levels = [order[bounds[j]: bounds[j + 1]] for j in range(len(bounds) - 1)]
    return parent, levels


def prox_positive(x: np.ndarray) -> np.ndarray:
    """Projection onto non-negative values: ``max(x, 0)``."""
    return np.maximum(x, 0.0)


def prox_symmetric(image: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Projection onto point-symmetric images about ``center`` (x, y, pixels).

    Each pixel whose mirror lies on the image is replaced by the mean of the
    two (the Euclidean projection onto the symmetric subspace); pixels whose
    mirror is off the image are unconstrained and kept. Input (..., H, W).
    """
    h, w = image.shape[-2:]
    mirror, inside = mirror_map((h, w), center)
    flat = np.asarray(image, dtype=np.float64).reshape(-1, h * w)
    out = np.where(inside, 0.5 * (flat + flat[:, mirror]), flat)
    return out.reshape(image.shape)


def prox_monotonic(image: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Make images non-increasing along rays from ``center`` (x, y, pixels).

    Walking outwards depth by depth (see :func:`monotonic_tree`), each pixel
    is capped at its parent's value: the scarlet "monotonic" operator. The
    result is idempotent and keeps point symmetry. Input (..., H, W).
    """
    h, w = image.shape[-2:]
    parent, levels = monotonic_tree((h, w), center)
    flat = np.array(image, dtype=np.float64).reshape(-1, h * w)
    for idx in levels:
        flat[:, idx] = np.minimum(flat[:, idx], flat[:, parent[idx]])
    return flat.reshape(image.shape)


class MorphologyConstraints:
    """The constraints of all sources of one blend, precomputed.

    Applies symmetry, then monotonicity, then positivity to a stack of
    morphologies (K, H, W), one centre per source. The result satisfies all
    three at once: capping at the parent keeps symmetry (the tree is
    symmetric) and clipping at zero keeps both.

    Parameters
    ----------
    shape : (H, W)
        Morphology grid, pixels.
    centers : ndarray, (K, 2)
        (x, y) of each source on that grid, pixels.
    """

    def __init__(self, shape: tuple[int, int], centers: np.ndarray):
        h, w = shape
        npix = h * w
        self.shape = (h, w)
        self.k = len(centers)
        self.centers = round_to_half_pixel(np.asarray(centers, dtype=np.float64).reshape(-1, 2))
        mirrors, insides, parents, levels = [], [], [], []
        for j, c in enumerate(centers):
            m, ins = mirror_map((h, w), c)
            p, lv = monotonic_tree((h, w), c)
            mirrors.append(m + j * npix)
            insides.append(ins)
            parents.append(p + j * npix)
            levels.append([idx + j * npix for idx in lv])
        self.mirror = np.concatenate(mirrors) if mirrors else np.zeros(0, np.int64)
        self.inside = np.concatenate(insides) if insides else np.zeros(0, bool)
        self.parent = np.concatenate(parents) if parents else np.zeros(0, np.int64)
        depth = max((len(lv) for lv in levels), default=0)
        # Level j of every source at once: one vectorised step per depth.
        self.levels = [
            np.concatenate([lv[j] for lv in levels if j < len(lv)]) for j in range(depth)
        ]

    def __call__(self, s: np.ndarray) -> np.ndarray:
        """Symmetry, monotonicity, positivity of a stack (K, H, W); a new array."""
        flat = s.reshape(-1)
        flat = np.where(self.inside, 0.5 * (flat + flat[self.mirror]), flat)
        for idx in self.levels:
            flat[idx] = np.minimum(flat[idx], flat[self.parent[idx]])
        return np.maximum(flat, 0.0).reshape(s.shape)


#: Canvas trees by (grid, parity of the centre): see :func:`_canvas_tree`.
_TREE_CACHE: dict = {}


def _canvas_tree(grid: tuple[int, int], parity: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """:func:`monotonic_tree` of a (2Y, 2X) canvas, as offsets, for one centre parity.

    The centre is at (X + px / 2, Y + py / 2). For a centre inside a (Y, X)
    grid, the tree of the grid is a window of this canvas: the parent of a
    pixel is the neighbour pointing most nearly at the centre, which always
    lies between the pixel and the centre, hence on the grid (the same
    choice, ties included), and depths follow the same chains.

    Returns
    -------
    dy, dx : ndarray of int, (2Y, 2X)
        Offset of each pixel's parent, pixels (0 for roots).
    depth : ndarray of int16, (2Y, 2X)
        Steps from the root.
    """
    key = (grid, parity)
    if key not in _TREE_CACHE:
        y, x = grid
        shape = (2 * y, 2 * x)
        parent, levels = monotonic_tree(shape, np.array([x + 0.5 * parity[0], y + 0.5 * parity[1]]))
        yy, xx = np.mgrid[0: shape[0], 0: shape[1]]
        depth = np.zeros(shape[0] * shape[1], dtype=np.int16)
        for j, idx in enumerate(levels, start=1):
            depth[idx] = j
        py, px = np.divmod(parent.reshape(shape), shape[1])
        _TREE_CACHE[key] = (py - yy, px - xx, depth.reshape(shape))
    return _TREE_CACHE[key]


def _source_trees(grid: tuple[int, int], centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parent (flat, on the grid) and depth of every pixel for each of N centres.

    ``centers`` (N, 2), (x, y) rounded to half pixels. Returns ``parent``
    (N, Y * X) int64 and ``depth`` (N, Y * X) int16, equal to
    :func:`monotonic_tree` (a centre off the grid is computed by it).
    """
    y, x = grid
    yy, xx = np.mgrid[0:y, 0:x]
    parent = np.empty((len(centers), y * x), dtype=np.int64)
    depth = np.empty((len(centers), y * x), dtype=np.int16)
    for j, (cx, cy) in enumerate(centers):
        if 0 <= cx <= x - 1 and 0 <= cy <= y - 1:
            fx, fy = int(np.floor(cx)), int(np.floor(cy))
            dy, dx, dep = _canvas_tree(grid, (int(2 * (cx - fx)), int(2 * (cy - fy))))
            win = np.s_[y - fy: 2 * y - fy, x - fx: 2 * x - fx]
            parent[j] = ((yy + dy[win]) * x + xx + dx[win]).ravel()
            depth[j] = dep[win].ravel()
        else:
            p, levels = monotonic_tree(grid, np.array([cx, cy]))
            parent[j] = p
            depth[j] = 0
            for lv, idx in enumerate(levels, start=1):
                depth[j, idx] = lv
    return parent, depth


class BatchConstraints:
    """:class:`MorphologyConstraints` of N sources (of several blends) at once.

    Parameters
    ----------
    shape : (Y, X)
        Morphology grid, pixels.
    centers : ndarray, (N, 2)
        (x, y) of each source on that grid, pixels; source j's morphology is
        row j of the (N, Y, X) stack the instance is applied to.
    """

    def __init__(self, shape: tuple[int, int], centers: np.ndarray):
        y, x = shape
        self.shape = (y, x)
        self.centers = round_to_half_pixel(np.asarray(centers, dtype=np.float64).reshape(-1, 2))
        two = (2.0 * self.centers).astype(np.int64)
        yy, xx = np.mgrid[0:y, 0:x]
        my = two[:, 1, None, None] - yy
        mx = two[:, 0, None, None] - xx
        inside = (my >= 0) & (my < y) & (mx >= 0) & (mx < x)
        self.mirror_local = np.where(inside, my * x + mx, yy * x + xx).reshape(len(two), -1)
        self.inside = inside.reshape(len(two), -1)
        self.parent_local, self.depth = _source_trees(self.shape, self.centers)
        self._index()

    def _index(self) -> None:
        """Flat indices over the stack: mirrors, and (pixels, parents) per depth."""
        n, npix = self.depth.shape
        offset = (np.arange(n) * npix)[:, None]
        self.mirror = (self.mirror_local + offset).ravel()
        self.flat_outside = ~self.inside.ravel()
        parent = (self.parent_local + offset).ravel()
        depth = self.depth.ravel()
        order = np.argsort(depth, kind="stable")
        bounds = np.cumsum(np.bincount(depth, minlength=1))
        self.levels = [(order[bounds[j - 1]: bounds[j]], parent[order[bounds[j - 1]: bounds[j]]])
                       for j in range(1, len(bounds))]

    def take(self, sources: np.ndarray) -> "BatchConstraints":
        """The constraints of the sources ``sources`` (indices into the N), in that order."""
        new = object.__new__(BatchConstraints)
        new.shape = self.shape
        new.centers = self.centers[sources]
        new.mirror_local = self.mirror_local[sources]
        new.inside = self.inside[sources]
        new.parent_local = self.parent_local[sources]
        new.depth = self.depth[sources]
        new._index()
        return new

    def __call__(self, s: np.ndarray) -> np.ndarray:
        """Symmetry, monotonicity, positivity of a stack (N, Y, X) (or (n, K, Y, X)); a new array."""
        flat = s.reshape(-1)
        out = np.take(flat, self.mirror)
        out += flat
        out *= 0.5
        np.copyto(out, flat, where=self.flat_outside)
        size = max((len(idx) for idx, _ in self.levels), default=0)
        here, up = np.empty(size, dtype=out.dtype), np.empty(size, dtype=out.dtype)
        for idx, par in self.levels:
            v = np.take(out, idx, out=here[: len(idx)])
            np.minimum(v, np.take(out, par, out=up[: len(idx)]), out=v)
            np.put(out, idx, v)
        np.maximum(out, 0.0, out=out)
        return out.reshape(s.shape)
