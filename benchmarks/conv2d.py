"""conv2d forward and forward+backward (dx, dw, db) on the agreed shapes.

Sides: nptl.ops (fast kernels), nptl.kernels.reference (plain loops, reduced batch, scaled
per image), the NumPy im2col+matmul baseline, and PyTorch in its own subprocess.
FLOPs: forward 2·N·F·C·KH·KW·Ho·Wo; forward+backward 3× that (dx and dw each cost one forward).
"""
import numpy as np

from benchmarks.common import kernel_rows, rng, torch_results
from benchmarks.suite import log, shapes_for
from benchmarks.timing import conv2d_flops, conv2d_out


def op_fns(impl, s, N=None):
    """{"fwd", "fwdbwd"} closures calling ``impl.conv2d`` / ``impl.conv2d_backward``."""
    g = rng()
    N = s["N"] if N is None else N
    st, pd = s["stride"], s["padding"]
    x = g.standard_normal((N, s["C"], s["H"], s["W"]), dtype=np.float32)
    w = (g.standard_normal((s["F"], s["C"], s["K"], s["K"]), dtype=np.float32)
         / np.float32(np.sqrt(s["C"] * s["K"] ** 2)))
    b = g.standard_normal(s["F"], dtype=np.float32)
    dy = g.standard_normal((N, s["F"], *conv2d_out(s["H"], s["W"], s["K"], st, pd)), dtype=np.float32)

    def fwd():
        return impl.conv2d(x, w, b, stride=st, padding=pd)

    def fwdbwd():
        impl.conv2d(x, w, b, stride=st, padding=pd)
        return impl.conv2d_backward(dy, x, w, stride=st, padding=pd)

    return {"fwd": fwd, "fwdbwd": fwdbwd}


def run(ctx):
    shapes = shapes_for("conv2d", ctx.quick)
    torch_res, torch_1t, torch_err = torch_results(ctx, [dict(s, kind="conv2d") for s in shapes])
    rows = []
    for s, tr, tr1 in zip(shapes, torch_res, torch_1t):
        log(f"  conv2d {s['name']}")
        flops = conv2d_flops(s["N"], s["C"], s["H"], s["W"], s["F"], s["K"], s["stride"], s["padding"])
        tiny = dict(s, C=1, F=1, H=s["K"], W=s["K"])
        rows += kernel_rows(ctx, "conv2d", s, op_fns, tiny, tr, flops, bwd_mult=3, torch_1t=tr1)
    return {"rows": rows, "torch_error": torch_err}
