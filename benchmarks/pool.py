"""max_pool2d and avg_pool2d, forward and forward+backward, on the agreed pool2d shapes.

Every shape is run with both operations (the shape's name says which one the seed CNN uses).
"GFLOP/s" here counts one compare or add per window element read (N·C·Ho·Wo·size²),
forward+backward 2× that.  Pooling is memory-bound, so each row also gives GB/s (the bytes the pass
must move, ``timing.pool2d_bytes``) and that as a share of the copy bandwidth measured at the size
of the input (``bandwidth.py``).
"""
import numpy as np

from benchmarks.bandwidth import copy_gbytes_per_s, pct_of_copy
from benchmarks.common import kernel_rows, rng, torch_results
from benchmarks.suite import log, shapes_for
from benchmarks.timing import pool2d_bytes, pool2d_ops

OPS = ("max", "avg")


def op_fns(impl, s, N=None):
    """{"fwd", "fwdbwd"} closures calling ``impl.{op}_pool2d`` / ``impl.{op}_pool2d_backward``."""
    g = rng()
    N = s["N"] if N is None else N
    size, stride = s["size"], s.get("stride") or s["size"]
    x = g.standard_normal((N, s["C"], s["H"], s["W"]), dtype=np.float32)
    Ho, Wo = (s["H"] - size) // stride + 1, (s["W"] - size) // stride + 1
    dy = g.standard_normal((N, s["C"], Ho, Wo), dtype=np.float32)
    forward = getattr(impl, f"{s['op']}_pool2d")
    backward = getattr(impl, f"{s['op']}_pool2d_backward")

    def fwd():
        return forward(x, size, stride)

    def fwdbwd():
        forward(x, size, stride)
        return backward(dy, x, size, stride)

    return {"fwd": fwd, "fwdbwd": fwdbwd}


def run(ctx):
    cases = [dict(s, op=op) for s in shapes_for("pool2d", ctx.quick) for op in OPS]
    torch_res, torch_1t, torch_err = torch_results(ctx, [dict(s, kind="pool2d") for s in cases])
    rows, copy_rates = [], {}
    for s, tr, tr1 in zip(cases, torch_res, torch_1t):
        log(f"  pool2d {s['op']} {s['name']}")
        geometry = (s["N"], s["C"], s["H"], s["W"], s["size"], s.get("stride"))
        tiny = dict(s, C=1, H=s["size"], W=s["size"])
        fwd, fwdbwd = kernel_rows(ctx, "pool2d", s, op_fns, tiny, tr, pool2d_ops(*geometry), bwd_mult=2,
                                  extra={"op": s["op"]}, torch_1t=tr1)
        x_bytes = 4 * s["N"] * s["C"] * s["H"] * s["W"]
        if x_bytes not in copy_rates:
            copy_rates[x_bytes] = copy_gbytes_per_s(x_bytes, min_time=ctx.min_time)
        for row in (fwd, fwdbwd):
            add_bandwidth(row, pool2d_bytes(*geometry, op=s["op"], backward=row["pass"] == "fwdbwd"),
                          copy_rates[x_bytes], x_bytes)
        rows += [fwd, fwdbwd]
    return {"rows": rows, "torch_error": torch_err}


def add_bandwidth(row, nbytes, copy_gbytes, copy_bytes):
    """GB/s of the nptl side (``nbytes`` moved) and its share of the copy bandwidth measured on
    ``copy_bytes`` (the input's size), into the row."""
    t = row["nptl_seconds"]
    row["bytes"] = nbytes
    row["copy_bytes"] = copy_bytes
    row["copy_gbytes_per_s"] = copy_gbytes
    row["nptl_gbytes_per_s"] = nbytes / t / 1e9 if t else None
    row["nptl_pct_copy"] = pct_of_copy(row["nptl_gbytes_per_s"], copy_gbytes)
