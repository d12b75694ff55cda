"""dense (x @ w + b, w of shape (in, out)) forward and forward+backward on the agreed shapes.
FLOPs: forward 2·N·in·out; forward+backward 3× that (dx and dw each cost one forward)."""
import numpy as np

from benchmarks.common import kernel_rows, rng, torch_results
from benchmarks.suite import log, shapes_for
from benchmarks.timing import dense_flops


def op_fns(impl, s, N=None):
    """{"fwd", "fwdbwd"} closures calling ``impl.dense`` / ``impl.dense_backward``."""
    g = rng()
    N = s["N"] if N is None else N
    x = g.standard_normal((N, s["in"]), dtype=np.float32)
    w = g.standard_normal((s["in"], s["out"]), dtype=np.float32) / np.float32(np.sqrt(s["in"]))
    b = g.standard_normal(s["out"], dtype=np.float32)
    dy = g.standard_normal((N, s["out"]), dtype=np.float32)

    def fwd():
        return impl.dense(x, w, b)

    def fwdbwd():
        impl.dense(x, w, b)
        return impl.dense_backward(dy, x, w)

    return {"fwd": fwd, "fwdbwd": fwdbwd}


def run(ctx):
    shapes = shapes_for("dense", ctx.quick)
    torch_res, torch_1t, torch_err = torch_results(ctx, [dict(s, kind="dense") for s in shapes])
    rows = []
    for s, tr, tr1 in zip(shapes, torch_res, torch_1t):
        log(f"  dense {s['name']}")
        tiny = dict(s, **{"in": 2, "out": 2})
        rows += kernel_rows(ctx, "dense", s, op_fns, tiny, tr, dense_flops(s["N"], s["in"], s["out"]), bwd_mult=3, torch_1t=tr1)
    return {"rows": rows, "torch_error": torch_err}
