"""ResNet18 and VGG16 (1000 classes): inference and training-step images/s, and the peak
resident memory of the process that ran them, nptl vs PyTorch.

Every (side, architecture, image size) runs in a fresh process of its own
(``python -m benchmarks.deep SPEC``), so each peak RSS (``ru_maxrss``) is that side's alone:
model, gradients, optimizer and the activations of one training step at batch 16.  A training
step = forward (training mode: BatchNorm on batch statistics, Dropout on) + softmax
cross-entropy + backward + SGD update (lr 0.01) + zero grads; inference = forward in eval mode.
Medians over the timed steps, after untimed warm-up steps.  The torch networks are
:mod:`tests.torch_reference` (plain ``torch.nn``, keyed like torchvision).
"""
import json
import resource
import sys
import time

if __package__ in (None, ""):  # run as a plain script: make `benchmarks` importable
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.suite import log, run_python, subprocess_env  # noqa: E402
from benchmarks.timing import median_phases  # noqa: E402

ARCHS = ("resnet18", "vgg16")
WARMUP_STEPS = 2
LR = 0.01


def cases(quick):
    """(arch, image size, batch, timed steps, warm-up steps); --quick: ResNet18 only, 64×64,
    batch 2, one step of each (a smoke run: its figures mean little)."""
    if quick:
        return [("resnet18", 64, 2, 1, 1)]
    return [(arch, size, 16, 5, WARMUP_STEPS) for arch in ARCHS for size in (112, 224)]


# ---------------------------------------------------------------- child side
def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _nptl(spec):
    import numpy as np

    import nptl
    from nptl import models, ops

    arch, size, batch, steps, warmup = spec["arch"], spec["size"], spec["batch"], spec["steps"], spec["warmup"]
    model = getattr(models, arch)(num_classes=1000, input_shape=(3, size, size))
    opt = nptl.optim.SGD(model, lr=LR)
    g = np.random.default_rng(0)
    x = g.standard_normal((batch, 3, size, size), dtype=np.float32)
    y = g.integers(0, 1000, batch)
    built = _peak_rss_mb()

    def infer():
        t0 = time.perf_counter()
        model.forward(x)
        return {"forward": time.perf_counter() - t0}

    def step():
        t0 = time.perf_counter()
        loss, d = ops.cross_entropy(model.forward(x, training=True), y)
        t1 = time.perf_counter()
        model.backward(d)
        t2 = time.perf_counter()
        opt.step()
        model.zero_grad()
        return {"forward": t1 - t0, "backward": t2 - t1, "step": time.perf_counter() - t0}

    return {"inference": median_phases(infer, steps, warmup=warmup),
            "train": median_phases(step, steps, warmup=warmup), "rss_after_build_mb": built}


def _torch(spec):
    import torch

    from benchmarks.torch_peer import training_step
    from tests.torch_reference import ResNet18, VGG16

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    arch, size, batch, steps, warmup = spec["arch"], spec["size"], spec["batch"], spec["steps"], spec["warmup"]
    net = {"resnet18": ResNet18, "vgg16": VGG16}[arch]()
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 1000, (batch,))
    built = _peak_rss_mb()

    def infer():
        net.eval()
        t0 = time.perf_counter()
        with torch.no_grad():
            net(x)
        return {"forward": time.perf_counter() - t0}

    def step():
        net.train()
        return training_step(net, opt, x, y)

    return {"inference": median_phases(infer, steps, warmup=warmup),
            "train": median_phases(step, steps, warmup=warmup), "rss_after_build_mb": built}


def child(spec):
    out = (_nptl if spec["side"] == "nptl" else _torch)(spec)
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


# ---------------------------------------------------------------- parent side
def _run_side(side, arch, size, batch, steps, warmup, threads):
    spec = dict(side=side, arch=arch, size=size, batch=batch, steps=steps, warmup=warmup, threads=threads)
    try:
        return json.loads(run_python(["-m", "benchmarks.deep", json.dumps(spec)], subprocess_env(threads),
                                     timeout=1800)), None
    except (RuntimeError, ValueError) as e:
        return None, f"{side} {arch} {size}: {e}"


def run(ctx):
    rows, errors = [], []
    for arch, size, batch, steps, warmup in cases(ctx.quick):
        log(f"  {arch} {size}x{size} batch {batch}")
        row = {"family": "deep", "name": arch, "size": size, "batch": batch}
        for side in ("nptl", "torch"):
            if side == "nptl" and not ctx.has_nptl:
                res, err = None, "nptl unavailable"
            else:
                res, err = _run_side(side, arch, size, batch, steps, warmup, ctx.threads)
            if err:
                errors.append(err)
            row[side] = res
            row[f"{side}_infer_img_s"] = batch / res["inference"]["forward"] if res else None
            row[f"{side}_train_img_s"] = batch / res["train"]["step"] if res else None
            row[f"{side}_peak_rss_mb"] = res["peak_rss_mb"] if res else None
        rows.append(row)
    return {"rows": rows, "errors": errors}


def table(rows):
    """The Markdown table of the report."""
    def ratio(a, b):
        return f"{a / b:.2f}×" if a and b else "n/a"

    def num(v, fmt="{:,.1f}"):
        return fmt.format(v) if v is not None else "n/a"

    lines = ["| model | image | batch | nptl infer img/s | torch infer img/s | vs torch | nptl train img/s | "
             "torch train img/s | vs torch | nptl peak RSS MB | torch peak RSS MB | memory vs torch |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['size']}×{r['size']} | {r['batch']} | {num(r['nptl_infer_img_s'])} | "
            f"{num(r['torch_infer_img_s'])} | {ratio(r['nptl_infer_img_s'], r['torch_infer_img_s'])} | "
            f"{num(r['nptl_train_img_s'])} | {num(r['torch_train_img_s'])} | "
            f"{ratio(r['nptl_train_img_s'], r['torch_train_img_s'])} | {num(r['nptl_peak_rss_mb'], '{:,.0f}')} | "
            f"{num(r['torch_peak_rss_mb'], '{:,.0f}')} | {ratio(r['nptl_peak_rss_mb'], r['torch_peak_rss_mb'])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(json.dumps(child(json.loads(sys.argv[1]))))
