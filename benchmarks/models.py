"""The seed CNN end to end: training-step and inference throughput, nptl vs PyTorch.

Conv32-ReLU-MaxPool2-Conv64-ReLU-MaxPool2-Conv64-ReLU-Flatten-Dense64-ReLU-Dense10, batch 64
(16 with --quick), on 1×28×28 and 3×32×32. Both sides use plain SGD (lr 0.01, no momentum)
and softmax cross-entropy. A training step = forward + loss + backward + update + zero grads;
each phase is timed inside the step and the medians over the timed steps are reported.
"Frozen": the conv base (everything up to Flatten) is frozen, only the Dense head trains.
"""
import time

import numpy as np

from benchmarks import torch_peer
from benchmarks.suite import load_shapes, log
from benchmarks.timing import median_phases

OPTIMIZER, LR = "sgd", 0.01
CONV_BASE = ("conv1", "conv2", "conv3")


#: untimed steps first: oneDNN (torch) builds and caches its primitives over the first few
#: iterations, Numba/BLAS warm their caches; 2 left torch at half its steady-state speed
WARMUP_STEPS = 5

def model_shapes(quick):
    return [dict(m, batch=16 if quick else m["batch"]) for m in load_shapes()["models"]]


def steps_for(ctx):
    return 3 if ctx.quick else max(30, 6 * ctx.repeats)


def freeze_base(model):
    """Freeze the conv base with whichever spelling nptl's Sequential offers."""
    try:
        model.freeze(up_to="flatten")
    except TypeError:
        model.freeze(*CONV_BASE)


def build(input_shape, frozen):
    import nptl
    from nptl.models import seed_cnn
    model = seed_cnn(input_shape=tuple(input_shape), num_classes=10, seed=0)
    if frozen:
        freeze_base(model)
    opt = nptl.optim.SGD(model, lr=LR)
    return model, opt


def nptl_step_fn(model, opt, x, y):
    import nptl.ops

    def step():
        t0 = time.perf_counter()
        logits = model.forward(x, training=True)
        loss, dlogits = nptl.ops.cross_entropy(logits, y)
        t1 = time.perf_counter()
        model.backward(dlogits)
        t2 = time.perf_counter()
        opt.step()
        model.zero_grad()
        t3 = time.perf_counter()
        return {"forward": t1 - t0, "backward": t2 - t1, "update": t3 - t2, "step": t3 - t0}

    return step


def batch(m, seed=0):
    g = np.random.default_rng(seed)
    x = g.standard_normal((m["batch"], *m["input"]), dtype=np.float32)
    y = g.integers(0, 10, m["batch"])
    return x, y


def nptl_model(ctx, m):
    x, y = batch(m)
    steps = steps_for(ctx)
    out = {}
    for frozen in (False, True):
        model, opt = build(m["input"], frozen)
        step = nptl_step_fn(model, opt, x, y)
        out["train_frozen" if frozen else "train"] = median_phases(step, steps, warmup=WARMUP_STEPS)

    def infer():
        t0 = time.perf_counter()
        model.forward(x, training=False)
        return {"forward": time.perf_counter() - t0}

    out["inference"] = median_phases(infer, steps, warmup=WARMUP_STEPS)
    return out


def run(ctx):
    shapes = model_shapes(ctx.quick)
    tasks = [dict(kind="model", input=m["input"], batch=m["batch"], optimizer=OPTIMIZER, lr=LR,
                  steps=steps_for(ctx)) for m in shapes]
    torch_res, torch_err = torch_peer.run(tasks, ctx)
    if torch_err:
        log(f"  torch: {torch_err}")
    rows = []
    for m, tr in zip(shapes, torch_res):
        log(f"  model {m['name']}")
        nr = nptl_model(ctx, m) if ctx.has_nptl else None
        B = m["batch"]
        row = {"family": "models", "name": m["name"], "input": m["input"], "batch": B,
               "optimizer": OPTIMIZER, "lr": LR, "nptl": nr, "torch": tr}
        for side, r in (("nptl", nr), ("torch", tr)):
            r = r or {}
            row[f"{side}_train_img_s"] = B / r["train"]["step"] if "train" in r else None
            row[f"{side}_train_frozen_img_s"] = B / r["train_frozen"]["step"] if "train_frozen" in r else None
            row[f"{side}_infer_img_s"] = B / r["inference"]["forward"] if "inference" in r else None
            row[f"{side}_backward_s"] = r["train"]["backward"] if "train" in r else None
            row[f"{side}_backward_frozen_s"] = r["train_frozen"]["backward"] if "train_frozen" in r else None
        rows.append(row)
    return {"rows": rows, "torch_error": torch_err}
