"""The layers of deeper networks: batch_norm (training mode), global and adaptive average
pooling, dropout (mask drawn + applied), forward and forward+backward, on the agreed shapes.

All are memory-bound: the figure of merit is GB/s, float32 bytes an ideal implementation
must move — forward: x read + y written; forward+backward adds dy read + dx written (and x
read again) — and, as for pooling, that as a share of the copy bandwidth measured at the size
of x (``bandwidth.py``).  The "GFLOP/s" column of the other families is left out.
"""
import math

import numpy as np

from benchmarks import torch_peer
from benchmarks.bandwidth import copy_gbytes_per_s
from benchmarks.common import kernel_rows, rng
from benchmarks.pool import add_bandwidth
from benchmarks.suite import log, shapes_for


def out_shape(s):
    x = s["x"]
    if s["op"] == "global_avg_pool2d":
        return x[:2]
    if s["op"] == "adaptive_avg_pool2d":
        return x[:2] + list(s["output_size"])
    return x


def nbytes(s):
    """(forward, forward+backward) float32 bytes moved, as the module docstring counts them."""
    n_in, n_out = math.prod(s["x"]), math.prod(out_shape(s))
    fwd = 4 * (n_in + n_out)
    return fwd, fwd + 4 * (n_out + 2 * n_in)


def op_fns(impl, s, N=None):
    """{"fwd", "fwdbwd"} closures calling ``impl``'s ops-style functions (nptl.ops, the NumPy
    baseline, the reference twins) on fixed random float32 inputs."""
    g = rng()
    shape = [s["x"][0] if N is None else N] + list(s["x"][1:])
    x = g.standard_normal(shape, dtype=np.float32)
    dy = g.standard_normal([shape[0]] + out_shape(s)[1:], dtype=np.float32)
    op = s["op"]
    if op == "batch_norm":
        gamma, beta = g.standard_normal(shape[1], dtype=np.float32), g.standard_normal(shape[1], dtype=np.float32)
        fwd = lambda: impl.batch_norm(x, gamma, beta)                       # noqa: E731
        bwd = lambda: impl.batch_norm_backward(dy, x, gamma)                # noqa: E731
    elif op == "global_avg_pool2d":
        fwd = lambda: impl.global_avg_pool2d(x)                             # noqa: E731
        bwd = lambda: impl.global_avg_pool2d_backward(dy, x)                # noqa: E731
    elif op == "adaptive_avg_pool2d":
        out = tuple(s["output_size"])
        fwd = lambda: impl.adaptive_avg_pool2d(x, out)                      # noqa: E731
        bwd = lambda: impl.adaptive_avg_pool2d_backward(dy, x, out)         # noqa: E731
    elif op == "dropout":
        rate, cache = s["rate"], {}

        def fwd():
            cache["mask"] = impl.dropout_mask(tuple(shape), rate, 0, 0)
            return impl.dropout(x, cache["mask"], rate)

        bwd = lambda: impl.dropout_backward(dy, cache["mask"], rate)        # noqa: E731
    else:
        raise ValueError(f"layers benchmark: unknown op {op!r}")

    def fwdbwd():
        fwd()
        return bwd()

    return {"fwd": fwd, "fwdbwd": fwdbwd}


def run(ctx):
    cases = [dict(s, N=s["x"][0]) for s in shapes_for("layers", ctx.quick)]
    torch_res, torch_err = torch_peer.run([dict(s, kind="layer") for s in cases], ctx)
    if torch_err:
        log(f"  torch: {torch_err}")
    rows, copy_rates = [], {}
    for s, tr in zip(cases, torch_res):
        log(f"  layers {s['op']} {s['name']}")
        tiny = dict(s, x=[1] + [min(v, 3) for v in s["x"][1:]])
        elements = math.prod(s["x"])
        fwd, fwdbwd = kernel_rows(ctx, "layers", s, op_fns, tiny, tr, elements, bwd_mult=2, extra={"op": s["op"]})
        x_bytes = 4 * elements
        if x_bytes not in copy_rates:
            copy_rates[x_bytes] = copy_gbytes_per_s(x_bytes, min_time=ctx.min_time)
        for row, moved in zip((fwd, fwdbwd), nbytes(s)):
            add_bandwidth(row, moved, copy_rates[x_bytes], x_bytes)
            t = row["torch_seconds"]
            row["torch_gbytes_per_s"] = moved / t / 1e9 if t else None
        rows += [fwd, fwdbwd]
    return {"rows": rows, "torch_error": torch_err}
