"""Elementwise activations (ReLU, sigmoid), forward and forward+backward, as the layers run them.

The inputs are the seed CNN's conv outputs, the tensors its ReLUs see (the input shapes of the
pool2d rows).  These kernels are memory-bound: each row gives GB/s (the bytes the pass must move)
and that as a share of the copy bandwidth measured at the size of the input (``bandwidth.py``).
Bytes: forward reads x and writes y (2·X); the backward reads dy and x (ReLU) or y (sigmoid) and
writes dx (3·X).  Sides: nptl's layers (``forward(x, training=True)``, ``backward(dy)``), NumPy
(``np.maximum``, ``1/(1+exp(-x))``) and PyTorch (``F.relu`` / ``torch.sigmoid`` with autograd).
"""
import numpy as np

from benchmarks.bandwidth import copy_gbytes_per_s
from benchmarks.common import make_row, rng, time_nptl, time_side, torch_results
from benchmarks.pool import add_bandwidth
from benchmarks.suite import log, shapes_for

OPS = ("relu", "sigmoid")


def cases(quick):
    """One case per (op, input shape): the pool2d rows' inputs are the seed CNN's ReLU inputs."""
    out = []
    for s in shapes_for("pool2d", quick):
        name = s["name"].split("after ", 1)[-1] + " output"
        out += [dict(N=s["N"], C=s["C"], H=s["H"], W=s["W"], name=name, op=op) for op in OPS]
    return out


def numpy_fns(s, x, dy):
    if s["op"] == "relu":
        fwd = lambda: np.maximum(x, 0)  # noqa: E731
        bwd = lambda y: dy * (x > 0)    # noqa: E731
    else:
        fwd = lambda: 1 / (1 + np.exp(-x))  # noqa: E731
        bwd = lambda y: dy * y * (1 - y)    # noqa: E731
    return {"fwd": fwd, "fwdbwd": lambda: bwd(fwd())}


def nptl_fns(s, x, dy):
    import nptl.layers
    layer = {"relu": nptl.layers.ReLU, "sigmoid": nptl.layers.Sigmoid}[s["op"]]()
    layer.build(x.shape[1:], np.random.default_rng(0))

    def fwdbwd():
        layer.forward(x, training=True)
        return layer.backward(dy)

    return {"fwd": lambda: layer.forward(x, training=True), "fwdbwd": fwdbwd}


def run(ctx):
    cs = cases(ctx.quick)
    torch_res, torch_1t, torch_err = torch_results(ctx, [dict(s, kind="activation") for s in cs])
    rows, copy_rates = [], {}
    for s, tr, tr1 in zip(cs, torch_res, torch_1t):
        log(f"  activation {s['op']} {s['name']}")
        g = rng()
        x = g.standard_normal((s["N"], s["C"], s["H"], s["W"]), dtype=np.float32)
        dy = g.standard_normal(x.shape, dtype=np.float32)
        times = {p: {"numpy": time_side(ctx, f), "torch": tr and tr[p], "torch_1t": tr1 and tr1[p]}
                 for p, f in numpy_fns(s, x, dy).items()}
        if ctx.has_nptl:
            time_nptl(ctx, nptl_fns(s, x, dy), times)
        if x.nbytes not in copy_rates:
            copy_rates[x.nbytes] = copy_gbytes_per_s(x.nbytes, min_time=ctx.min_time)
        shape = dict(s, name=f"{s['name']}")
        for p, nbytes in (("fwd", 2 * x.nbytes), ("fwdbwd", 5 * x.nbytes)):
            row = make_row(ctx, "activations", shape, p, x.size * (1 if p == "fwd" else 2), times[p],
                           {"op": s["op"]})
            add_bandwidth(row, nbytes, copy_rates[x.nbytes], x.nbytes)
            rows.append(row)
    return {"rows": rows, "torch_error": torch_err}
