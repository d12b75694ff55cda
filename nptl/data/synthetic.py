"""An embedded, procedurally generated 10-class image dataset.

Each class is a stroke pattern (bars at three orientations, ring, filled
blob, plus, x-cross, L, T, square outline) rendered at a random position,
scale, rotation jitter, stroke thickness and intensity, on a noisy
background with random short "distractor" strokes.  Because the shapes
move around the image, per-pixel linear models do poorly while a small
convolutional network, which is translation equivariant, does well: the
dataset is a quick, download-free stand-in for Fashion-MNIST.

Rendering is vectorised numpy: each shape is a signed-distance function of
the pixel grid (unions of line segments, circles, squares), turned into an
anti-aliased stroke.  Everything derives from one ``numpy.random.Generator``
seeded with ``seed``, so the output is bit-for-bit reproducible.
"""

from __future__ import annotations

import numpy as np

from .splits import Splits
from .transforms import to_nchw_float

__all__ = ["make_synthetic", "load_synthetic", "SYNTHETIC_CLASSES"]

#: Class names of the synthetic dataset, indexed by label.
SYNTHETIC_CLASSES = (
    "horizontal bar",
    "vertical bar",
    "diagonal bar",
    "ring",
    "blob",
    "plus",
    "x-cross",
    "L shape",
    "T shape",
    "square",
)

# Shapes made of line segments, in local units (the shape spans about
# [-1, 1] x [-1, 1]; u to the right, v downwards).
_SEGMENTS = {
    0: [(-1.0, 0.0, 1.0, 0.0)],
    1: [(0.0, -1.0, 0.0, 1.0)],
    2: [(-1.0, 0.0, 1.0, 0.0)],  # rotated by +-45 degrees below
    5: [(-1.0, 0.0, 1.0, 0.0), (0.0, -1.0, 0.0, 1.0)],
    6: [(-1.0, 0.0, 1.0, 0.0), (0.0, -1.0, 0.0, 1.0)],  # rotated by 45 degrees
    7: [(-0.6, -1.0, -0.6, 0.9), (-0.6, 0.9, 0.8, 0.9)],
    8: [(-1.0, -0.8, 1.0, -0.8), (0.0, -0.8, 0.0, 1.0)],
}

_CHUNK = 512  # images rendered at once (keeps temporaries cache-sized)


def _segment_distance(u, v, ax, ay, bx, by):
    """Euclidean distance from points ``(u, v)`` to segment ``a-b`` (broadcasting)."""
    dx = bx - ax
    dy = by - ay
    pu = u - ax
    pv = v - ay
    t = (pu * dx + pv * dy) / (dx * dx + dy * dy)
    np.clip(t, 0.0, 1.0, out=t)
    pu = pu - t * dx
    pv = pv - t * dy
    return np.sqrt(pu * pu + pv * pv)


def _stroke(dist_px, thickness):
    """Anti-aliased stroke intensity in [0, 1] from a distance in pixels."""
    val = 0.5 + 0.5 * thickness - dist_px
    return np.clip(val, 0.0, 1.0, out=val)


def _draw_params(rng: np.random.Generator, labels: np.ndarray, size: int) -> dict:
    """Draw every random parameter of every image (in a fixed order)."""
    n = labels.shape[0]
    k = size / 28.0
    f32 = np.float32
    p = {}
    p["radius"] = rng.uniform(5.0, 9.0, n) * k
    margin = size / 2.0 - p["radius"] - 1.0 * k
    p["cx"] = (size - 1) / 2.0 + rng.uniform(-1.0, 1.0, n) * margin
    p["cy"] = (size - 1) / 2.0 + rng.uniform(-1.0, 1.0, n) * margin
    angle = np.deg2rad(rng.uniform(-20.0, 20.0, n))
    diag_sign = rng.choice([-1.0, 1.0], n)
    angle = np.where(labels == 2, angle + diag_sign * np.pi / 4, angle)
    angle = np.where(labels == 6, angle + np.pi / 4, angle)
    free = rng.uniform(0.0, np.pi, n)  # blobs may point anywhere
    p["angle"] = np.where(labels == 4, free, angle)
    p["thickness"] = rng.uniform(1.3, 3.0, n) * k
    p["intensity"] = rng.uniform(0.5, 1.0, n)
    p["ring_radius"] = rng.uniform(0.6, 1.0, n)
    p["blob_axes"] = np.stack([rng.uniform(0.6, 0.85, n), rng.uniform(0.35, 0.7, n)], 1)
    p["background"] = rng.uniform(0.0, 0.2, n)
    p["noise"] = rng.uniform(0.03, 0.12, n)
    # up to three distractor strokes per image
    m = 3
    p["d_on"] = rng.random((n, m)) < 0.6
    p["d_cx"] = rng.uniform(1.0, size - 2.0, (n, m))
    p["d_cy"] = rng.uniform(1.0, size - 2.0, (n, m))
    p["d_len"] = rng.uniform(1.5, 5.0, (n, m)) * k
    p["d_angle"] = rng.uniform(0.0, np.pi, (n, m))
    p["d_thickness"] = rng.uniform(1.0, 2.0, (n, m)) * k
    p["d_intensity"] = rng.uniform(0.3, 0.8, (n, m))
    return {key: (v.astype(f32) if v.dtype.kind == "f" else v) for key, v in p.items()}


def _render_shapes(cls: int, p: dict, sl: slice, gx, gy):
    """Stroke image (n, H, W) of class ``cls`` for the images in ``sl``."""
    col = lambda a: a[sl, None, None]  # noqa: E731 - (n,) -> (n, 1, 1)
    r = col(p["radius"])
    x = gx - col(p["cx"])
    y = gy - col(p["cy"])
    c, s = np.cos(col(p["angle"])), np.sin(col(p["angle"]))
    u = (c * x + s * y) / r
    v = (c * y - s * x) / r
    if cls in _SEGMENTS:
        d = None
        for seg in _SEGMENTS[cls]:
            ds = _segment_distance(u, v, *(np.float32(t) for t in seg))
            d = ds if d is None else np.minimum(d, ds)
    elif cls == 3:  # ring
        d = np.abs(np.sqrt(u * u + v * v) - col(p["ring_radius"]))
    elif cls == 4:  # filled ellipse
        a = p["blob_axes"][sl, 0, None, None]
        b = p["blob_axes"][sl, 1, None, None]
        rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
        d = np.maximum(rho - 1.0, 0.0) * b
    elif cls == 9:  # square outline
        d = np.abs(np.maximum(np.abs(u), np.abs(v)) - np.float32(0.8))
    else:  # pragma: no cover
        raise AssertionError(cls)
    return _stroke(d * r, col(p["thickness"])) * col(p["intensity"])


def _render_distractors(p: dict, sl: slice, gx, gy):
    out = None
    for j in range(p["d_on"].shape[1]):
        col = lambda a: a[sl, j, None, None]  # noqa: E731
        half = 0.5 * col(p["d_len"])
        dx = np.cos(col(p["d_angle"])) * half
        dy = np.sin(col(p["d_angle"])) * half
        cx, cy = col(p["d_cx"]), col(p["d_cy"])
        d = _segment_distance(gx, gy, cx - dx, cy - dy, cx + dx, cy + dy)
        val = _stroke(d, col(p["d_thickness"])) * (col(p["d_intensity"]) * col(p["d_on"]))
        out = val if out is None else np.maximum(out, val)
    return out


def make_synthetic(
    n_per_class: int = 1000, seed: int = 0, size: int = 28
) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``10 * n_per_class`` grayscale images of the synthetic dataset.

    Returns ``(x, y)``: uint8 images of shape ``(N, size, size)`` in random
    order and int64 labels (exactly ``n_per_class`` of each class, names in
    :data:`SYNTHETIC_CLASSES`).  The result depends only on
    ``(n_per_class, seed, size)``.
    """
    n_per_class = int(n_per_class)
    size = int(size)
    if n_per_class < 0:
        raise ValueError(f"n_per_class must be >= 0, got {n_per_class}")
    if size < 8:
        raise ValueError(f"size must be at least 8, got {size}")
    rng = np.random.default_rng(seed)
    n_classes = len(SYNTHETIC_CLASSES)
    labels = np.repeat(np.arange(n_classes, dtype=np.int64), n_per_class)
    p = _draw_params(rng, labels, size)
    grid = np.arange(size, dtype=np.float32)
    gy, gx = grid[None, :, None], grid[None, None, :]
    out = np.empty((labels.shape[0], size, size), dtype=np.uint8)
    for cls in range(n_classes):
        for start in range(cls * n_per_class, (cls + 1) * n_per_class, _CHUNK):
            sl = slice(start, min(start + _CHUNK, (cls + 1) * n_per_class))
            n = sl.stop - sl.start
            img = np.maximum(_render_shapes(cls, p, sl, gx, gy),
                             _render_distractors(p, sl, gx, gy))
            img += p["background"][sl, None, None]
            img += rng.standard_normal((n, size, size), dtype=np.float32) * \
                p["noise"][sl, None, None]
            np.clip(img, 0.0, 1.0, out=img)
            img *= 255.0
            np.rint(img, out=img)
            out[sl] = img.astype(np.uint8)
    order = rng.permutation(labels.shape[0])
    return out[order], labels[order]


def load_synthetic(
    n_train_per_class: int = 1000, n_test_per_class: int = 200, seed: int = 0, size: int = 28
) -> Splits:
    """Synthetic train/test :class:`Splits` (float32 NCHW in ``[0, 1]``).

    Train and test sets are generated from independent streams derived from
    ``seed``, so they never share images.
    """
    train_seed, test_seed = np.random.SeedSequence(seed).spawn(2)
    x_tr, y_tr = make_synthetic(n_train_per_class, train_seed, size)
    x_te, y_te = make_synthetic(n_test_per_class, test_seed, size)
    return Splits(to_nchw_float(x_tr), y_tr, to_nchw_float(x_te), y_te, SYNTHETIC_CLASSES)
