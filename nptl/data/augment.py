"""Random image augmentation in the style of Keras' ``ImageDataGenerator``.

:class:`Augmenter` draws, for every image of a batch, a random horizontal
flip and a random affine transform (rotation, shift, shear, zoom), and
resamples the image with bilinear (default) or nearest-neighbour
interpolation, filling pixels that come from outside the image with 0.
Everything is vectorised over the batch: no Python loop runs per pixel or
per image.

Parameter meanings follow Keras:

* ``width_shift`` / ``height_shift``: maximum shift as a fraction of the
  image width / height (shift drawn uniformly in ``[-s, s] * size``);
* ``zoom``: zoom factors drawn uniformly in ``[1 - zoom, 1 + zoom]``,
  independently for both axes (a factor > 1 samples a larger area, so the
  content shrinks, as in Keras);
* ``shear``: shear angle in degrees drawn in ``[-shear, shear]``;
* ``rotation``: rotation angle in degrees drawn in ``[-rotation, rotation]``;
* ``horizontal_flip``: each image is mirrored left-right with probability 1/2.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Augmenter", "affine_sample"]


def affine_sample(
    x: np.ndarray,
    matrices: np.ndarray,
    interpolation: str = "bilinear",
    fill: float = 0.0,
) -> np.ndarray:
    """Resample every image of an NCHW batch through its own affine map.

    ``matrices`` has shape ``(N, 2, 3)`` and maps *output* pixel coordinates
    ``(row, col)``, measured from the image centre, to the input coordinates
    that are sampled::

        [r_in, c_in] = M[:, :2] @ [r_out, c_out] + M[:, 2]      (centred)

    So a matrix ``[[1, 0, -dy], [0, 1, -dx]]`` moves the content by ``dy``
    rows down and ``dx`` columns right.  Samples falling outside the input
    take the value ``fill``.  Returns a new array with ``x``'s shape and
    dtype.
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"expected an NCHW batch, got shape {x.shape}")
    n, c, h, w = x.shape
    matrices = np.asarray(matrices, dtype=np.float64)
    if matrices.shape != (n, 2, 3):
        raise ValueError(f"expected matrices of shape {(n, 2, 3)}, got {matrices.shape}")
    if interpolation not in ("bilinear", "nearest"):
        raise ValueError(f"interpolation must be 'bilinear' or 'nearest', got {interpolation!r}")
    work = np.float64 if x.dtype == np.float64 else np.float32
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    rows = (np.arange(h) - cy)[None, :, None]
    cols = (np.arange(w) - cx)[None, None, :]
    m = matrices[:, :, :, None, None]  # (N, 2, 3, 1, 1)
    src_r = m[:, 0, 0] * rows + m[:, 0, 1] * cols + m[:, 0, 2] + cy  # (N, H, W)
    src_c = m[:, 1, 0] * rows + m[:, 1, 1] * cols + m[:, 1, 2] + cx
    flat = x.reshape(n, c, h * w)

    def gather(ir, ic):
        """Values at integer positions (N, C, H*W) and their validity (N, 1, H*W)."""
        valid = (ir >= 0) & (ir < h) & (ic >= 0) & (ic < w)
        idx = np.clip(ir, 0, h - 1) * w + np.clip(ic, 0, w - 1)
        vals = np.take_along_axis(flat, idx.reshape(n, 1, h * w), axis=2)
        return vals, valid.reshape(n, 1, h * w)

    if interpolation == "nearest":
        vals, valid = gather(np.floor(src_r + 0.5).astype(np.intp),
                             np.floor(src_c + 0.5).astype(np.intp))
        out = np.where(valid, vals, np.asarray(fill, dtype=x.dtype))
    else:
        r0f, c0f = np.floor(src_r), np.floor(src_c)
        fr = (src_r - r0f).astype(work).reshape(n, 1, h * w)
        fc = (src_c - c0f).astype(work).reshape(n, 1, h * w)
        r0, c0 = r0f.astype(np.intp), c0f.astype(np.intp)
        out = np.zeros((n, c, h * w), dtype=work)
        outside = np.zeros((n, 1, h * w), dtype=work)
        for dr, dc, wt in (
            (0, 0, (1 - fr) * (1 - fc)),
            (0, 1, (1 - fr) * fc),
            (1, 0, fr * (1 - fc)),
            (1, 1, fr * fc),
        ):
            vals, valid = gather(r0 + dr, c0 + dc)
            wv = np.where(valid, wt, 0)
            out += wv * vals
            outside += wt - wv
        if fill:
            out += outside * work(fill)
    return out.reshape(n, c, h, w).astype(x.dtype, copy=False)


class Augmenter:
    """Random flips and affine transforms for float NCHW image batches.

    ``Augmenter(...)(x)`` returns an augmented copy of ``x`` with the same
    shape and dtype; ``x`` itself is never modified.  The random stream is
    seeded with ``seed``: two augmenters built with the same arguments
    produce the same sequence of outputs for the same sequence of inputs.
    """

    def __init__(
        self,
        horizontal_flip: bool = False,
        width_shift: float = 0.0,
        height_shift: float = 0.0,
        zoom: float = 0.0,
        shear: float = 0.0,
        seed: int = 0,
        rotation: float = 0.0,
        interpolation: str = "bilinear",
    ):
        for name, val, hi in (
            ("width_shift", width_shift, 1.0),
            ("height_shift", height_shift, 1.0),
            ("zoom", zoom, 1.0),
            ("shear", shear, 90.0),
            ("rotation", rotation, 180.0),
        ):
            if not 0.0 <= float(val) < hi:
                raise ValueError(f"{name} must be in [0, {hi:g}), got {val}")
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"interpolation must be 'bilinear' or 'nearest', got {interpolation!r}")
        self.horizontal_flip = bool(horizontal_flip)
        self.width_shift = float(width_shift)
        self.height_shift = float(height_shift)
        self.zoom = float(zoom)
        self.shear = float(shear)
        self.rotation = float(rotation)
        self.interpolation = interpolation
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    @property
    def active(self) -> bool:
        """False when every augmentation is switched off (calls are a copy)."""
        return self.horizontal_flip or self._affine_active

    @property
    def _affine_active(self) -> bool:
        return any((self.width_shift, self.height_shift, self.zoom, self.shear, self.rotation))

    def __repr__(self) -> str:
        return (
            f"Augmenter(horizontal_flip={self.horizontal_flip}, width_shift={self.width_shift}, "
            f"height_shift={self.height_shift}, zoom={self.zoom}, shear={self.shear}, "
            f"seed={self.seed}, rotation={self.rotation}, interpolation={self.interpolation!r})"
        )

    def reset(self) -> None:
        """Restart the random stream from ``seed``."""
        self._rng = np.random.default_rng(self.seed)

    def sample(self, n: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``(flip, matrices)`` for ``n`` images: a bool mask of shape
        ``(n,)`` and ``(n, 2, 3)`` matrices for :func:`affine_sample` (the
        flip is *not* folded into the matrices)."""
        rng = self._rng
        # Always draw every parameter so that switching one augmentation on
        # does not change the random values of the others.
        flip_u = rng.random(n)
        u = rng.uniform(-1.0, 1.0, size=(6, n))
        flip = (flip_u < 0.5) & self.horizontal_flip
        theta = np.deg2rad(self.rotation) * u[0]
        dy = self.height_shift * height * u[1]
        dx = self.width_shift * width * u[2]
        shear = np.deg2rad(self.shear) * u[3]
        zy = 1.0 + self.zoom * u[4]
        zx = 1.0 + self.zoom * u[5]
        cos, sin = np.cos(theta), np.sin(theta)
        zeros, ones = np.zeros(n), np.ones(n)
        rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
        shr = np.stack([np.stack([ones, -np.sin(shear)], -1),
                        np.stack([zeros, np.cos(shear)], -1)], -2)
        zm = np.stack([np.stack([zy, zeros], -1), np.stack([zeros, zx], -1)], -2)
        lin = rot @ shr @ zm
        # output -> input map: undo the shift of the content, then the linear part
        t = -(lin @ np.stack([dy, dx], -1)[:, :, None])
        return flip, np.concatenate([lin, t], axis=2)

    def __call__(self, x_batch: np.ndarray) -> np.ndarray:
        """Return an augmented copy of the float NCHW batch ``x_batch``."""
        x = np.asarray(x_batch)
        if x.ndim != 4:
            raise ValueError(f"Augmenter expects an NCHW batch, got shape {x.shape}")
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"Augmenter expects float images, got dtype {x.dtype}")
        if not self.active:
            return x.copy()
        n, _, h, w = x.shape
        flip, matrices = self.sample(n, h, w)
        out = affine_sample(x, matrices, self.interpolation) if self._affine_active else x.copy()
        out[flip] = out[flip, :, :, ::-1]
        return out
