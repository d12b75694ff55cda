"""The figures the README quotes for the layers of deeper networks: the largest relative error
of every new op against ``torch.nn.functional`` (torch in float64 on exactly the values nptl
received; forward and every gradient), and the gradient checks in float64 (central
differences over every entry).  ``python -m tests.torch_layer_figures`` prints them; the
tests (``tests/test_torch_ops.py`` from the registry, ``tests/test_torch_layers.py``) check the
same quantities against their tolerances."""
import numpy as np
import torch

import nptl
from nptl import ops

F = torch.nn.functional


def rel(a, b):
    """``max |a − b| / max |b|``."""
    b = np.asarray(b, np.float64)
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


def T(a, grad=False):
    return torch.from_numpy(np.array(a, np.float64)).requires_grad_(bool(grad))


def main():
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    rows = []

    def versus_torch(what, dtype, nptl_arrays, torch_out, torch_leaves):
        refs = [torch_out.detach()] + [t.grad for t in torch_leaves]
        rows.append((what, dtype.__name__, max(rel(a, r) for a, r in zip(nptl_arrays, refs, strict=True))))

    for dt in (np.float32, np.float64):
        for shape in ((8, 16, 14, 14), (32, 64)):            # maps and dense features
            C = shape[1]
            x = (rng.standard_normal(shape) * 3 + 1.5).astype(dt)
            g, b = rng.standard_normal(C).astype(dt), rng.standard_normal(C).astype(dt)
            dy = rng.standard_normal(shape).astype(dt)
            mean, var = rng.standard_normal(C).astype(dt), (rng.random(C) + .1).astype(dt)
            for running in (False, True):
                tx, tg, tb = T(x, True), T(g, True), T(b, True)
                ty = F.batch_norm(tx, T(mean) if running else None, T(var) if running else None, tg, tb,
                                  training=not running, eps=1e-5)
                ty.backward(T(dy))
                stats = (mean, var) if running else (None, None)
                versus_torch(f"batch_norm {shape} {'inference' if running else 'training'}", dt,
                             [ops.batch_norm(x, g, b, *stats), *ops.batch_norm_backward(dy, x, g, *stats)],
                             ty, [tx, tg, tb])
        x = rng.standard_normal((4, 32, 9, 11)).astype(dt)
        for out in ((7, 7), (3, 5)):
            tx = T(x, True)
            ty = F.adaptive_avg_pool2d(tx, out)
            dy = rng.standard_normal(ty.shape).astype(dt)
            ty.backward(T(dy))
            versus_torch(f"adaptive_avg_pool2d 9x11 -> {out}", dt,
                         [ops.adaptive_avg_pool2d(x, out), ops.adaptive_avg_pool2d_backward(dy, x, out)], ty, [tx])
        tx = T(x, True)
        ty = F.adaptive_avg_pool2d(tx, 1).flatten(1)
        dy = rng.standard_normal(ty.shape).astype(dt)
        ty.backward(T(dy))
        versus_torch("global_avg_pool2d", dt, [ops.global_avg_pool2d(x), ops.global_avg_pool2d_backward(dy, x)],
                     ty, [tx])
        x = rng.standard_normal((16, 4096)).astype(dt)
        x[x == 0] = 1                                        # a zero output then means a dropped input
        torch.manual_seed(0)
        tx = T(x, True)
        ty = F.dropout(tx, 0.5, training=True)
        dy = rng.standard_normal(x.shape).astype(dt)
        ty.backward(T(dy))
        mask = ty.detach().numpy() != 0                      # torch's own mask, injected
        versus_torch("dropout (torch's mask)", dt, [ops.dropout(x, mask, 0.5), ops.dropout_backward(dy, mask, 0.5)],
                     ty, [tx])
    print("max relative error vs torch (float64 oracle, max|a-b|/max|b| over y and every gradient):")
    for what, dtype, err in rows:
        print(f"  {what:45s} {dtype:8s} {err:.1e}")

    print("gradcheck (float64, central differences over every entry, max relative error):")

    def show(label, report):
        print(f"  {label:45s} {report.max_error:.1e}")

    x = rng.standard_normal((3, 4, 5, 6)) * 3 + 1.5
    g, b = rng.standard_normal(4), rng.standard_normal(4)
    show("ops.batch_norm, training", nptl.gradcheck(ops.batch_norm, x, g, b, None, None, seed=1))
    show("ops.batch_norm, inference", nptl.gradcheck(ops.batch_norm, x, g, b, rng.standard_normal(4),
                                                      rng.random(4) + .1, seed=1))
    show("ops.adaptive_avg_pool2d 9x11 -> 7x7", nptl.gradcheck(ops.adaptive_avg_pool2d,
                                                               rng.standard_normal((2, 3, 9, 11)), (7, 7), seed=1))
    show("ops.global_avg_pool2d", nptl.gradcheck(ops.global_avg_pool2d, rng.standard_normal((2, 3, 5, 6)), seed=1))
    show("ops.dropout", nptl.gradcheck(ops.dropout, rng.standard_normal((4, 50)), ops.dropout_mask((4, 50), 0.5, 3),
                                       0.5, seed=1))
    for cls, shape in ((nptl.BatchNorm2D, (4, 5, 6)), (nptl.BatchNorm1D, (7,))):
        layer = cls(name="bn")
        layer.build(shape, rng, np.float64)
        layer.params["w"][:] = rng.standard_normal(shape[0])
        layer.buffers["running_var"][:] = rng.random(shape[0]) + .5
        x = rng.standard_normal((5,) + shape)
        show(f"{cls.__name__} trainable (training mode)", nptl.gradcheck(layer, x, seed=2))
        layer.freeze()
        show(f"{cls.__name__} frozen (inference mode)", nptl.gradcheck(layer, x, seed=2))
    layer = nptl.Dropout(0.3, seed=1, name="d")
    layer.build((4, 5), rng, np.float64)
    show("Dropout layer", nptl.gradcheck(layer, rng.standard_normal((3, 4, 5)), seed=2))


if __name__ == "__main__":
    main()
