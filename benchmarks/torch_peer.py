"""PyTorch peer: run as a subprocess, never imported next to Numba's parallel runtime.

    python -m benchmarks.torch_peer  < spec.json  > results.json

spec = {"threads": int, "repeats": int, "min_time": float, "cpu_time": bool, "tasks": [task, ...]}
task kinds (same geometry and FLOP definitions as the nptl side, float32, NCHW):
    {"kind": "gemm", "n": 2048}
    {"kind": "conv2d", N C H W F K stride padding}      -> fwd, fwdbwd (autograd dx and dw, db)
    {"kind": "pool2d", "op": "max"|"avg", N C H W size stride}  -> fwd, fwdbwd
    {"kind": "activation", "op": "relu"|"sigmoid", N C H W}     -> fwd, fwdbwd
    {"kind": "dense", N in out}                          -> fwd, fwdbwd
    {"kind": "layer", "op": "batch_norm"|"global_avg_pool2d"|"adaptive_avg_pool2d"|"dropout",
     "x": shape, "output_size", "rate"}                  -> fwd, fwdbwd
    {"kind": "model", "input": [C,H,W], "batch", "optimizer": "sgd"|"adam", "lr", "steps", "phases"?}
        -> train (all trainable), train_frozen (conv base frozen), inference; per-phase medians
           ("phases": the subset to run, default all three)
Output: {"ok": true, "env": {...}, "results": [one dict per task, or {"error": ...}]}.
If torch is missing the output is {"ok": false, "error": "..."} and the caller shows "n/a".

The parent side of the protocol is ``run`` below (it imports nothing heavy).
"""
import json
import sys
import time

if __package__ in (None, ""):  # run as a plain script: make `benchmarks` importable
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import timing  # noqa: E402
from benchmarks.timing import measure, median_phases  # noqa: E402


def training_step(model, opt, x, y):
    """One timed torch training step (cross-entropy, autograd backward, optimizer step, grads
    set to None, as nptl's benchmarks do on their side): ``{"forward", "backward", "update",
    "step"}`` seconds."""
    import torch

    t0 = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    opt.step()
    opt.zero_grad(set_to_none=True)
    t3 = time.perf_counter()
    return {"forward": t1 - t0, "backward": t2 - t1, "update": t3 - t2, "step": t3 - t0}


# ---------------------------------------------------------------- parent side

#: untimed steps first: oneDNN (torch) builds and caches its primitives over the first few
#: iterations, Numba/BLAS warm their caches; 2 left torch at half its steady-state speed
WARMUP_STEPS = 5

def run(tasks, ctx, threads=None, timeout=900):
    """Run ``tasks`` in a fresh torch subprocess; return (results list, error or None).

    On any failure (torch missing, crash, timeout) results is a list of None of the same
    length, so callers can zip and show "n/a".
    """
    from benchmarks.suite import run_python, subprocess_env
    threads = threads or ctx.threads
    spec = {"threads": threads, "repeats": ctx.repeats, "min_time": ctx.min_time, "cpu_time": ctx.cpu_time,
            "tasks": tasks}
    empty = [None] * len(tasks)
    try:
        out = json.loads(run_python(["-m", "benchmarks.torch_peer"], subprocess_env(threads),
                                    json.dumps(spec), timeout))
    except (RuntimeError, ValueError) as e:
        return empty, f"torch peer: {e}"
    if not out.get("ok"):
        return empty, out.get("error", "torch peer failed")
    results = [None if (r is None or "error" in r) else r for r in out["results"]]
    errors = [r["error"] for r in out["results"] if r and "error" in r]
    run.env = out.get("env")
    return results, ("; ".join(errors) or None)


run.env = None  # torch's own environment report, from the last successful peer


# ---------------------------------------------------------------- child side

def _gemm(torch, t, spec):
    n = t["n"]
    a, b = torch.randn(n, n), torch.randn(n, n)
    r = measure(lambda: torch.mm(a, b), spec["repeats"], 1, spec["min_time"])
    return {"mm": r}


def _fwd_bwd(torch, spec, forward, inputs):
    """Time forward alone (no autograd) and forward + autograd backward of all inputs."""
    with torch.no_grad():
        fwd = measure(lambda: forward(*inputs), spec["repeats"], 1, spec["min_time"])
    leaves = [i.detach().requires_grad_(True) for i in inputs]
    dy = torch.randn_like(forward(*leaves))

    def fb():
        for leaf in leaves:
            leaf.grad = None
        forward(*leaves).backward(dy)

    return {"fwd": fwd, "fwdbwd": measure(fb, spec["repeats"], 1, spec["min_time"])}


def _conv2d(torch, t, spec):
    F = torch.nn.functional
    x = torch.randn(t["N"], t["C"], t["H"], t["W"])
    w = torch.randn(t["F"], t["C"], t["K"], t["K"]) * 0.1
    b = torch.randn(t["F"])
    fwd = lambda x, w, b: F.conv2d(x, w, b, stride=t["stride"], padding=t["padding"])  # noqa: E731
    return _fwd_bwd(torch, spec, fwd, [x, w, b])


def _pool2d(torch, t, spec):
    F = torch.nn.functional
    x = torch.randn(t["N"], t["C"], t["H"], t["W"])
    op = F.max_pool2d if t["op"] == "max" else F.avg_pool2d
    return _fwd_bwd(torch, spec, lambda x: op(x, t["size"], t.get("stride") or t["size"]), [x])


def _activation(torch, t, spec):
    x = torch.randn(t["N"], t["C"], t["H"], t["W"])
    op = torch.nn.functional.relu if t["op"] == "relu" else torch.sigmoid
    return _fwd_bwd(torch, spec, op, [x])


def _dense(torch, t, spec):
    F = torch.nn.functional
    x = torch.randn(t["N"], t["in"])
    w = torch.randn(t["out"], t["in"]) * 0.1   # torch stores (out, in); same FLOPs as nptl's (in, out)
    b = torch.randn(t["out"])
    return _fwd_bwd(torch, spec, F.linear, [x, w, b])


def _layer(torch, t, spec):
    F = torch.nn.functional
    x = torch.randn(*t["x"])
    if t["op"] == "batch_norm":
        C = t["x"][1]
        fwd = lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True)  # noqa: E731
        return _fwd_bwd(torch, spec, fwd, [x, torch.randn(C), torch.randn(C)])
    forwards = {
        "global_avg_pool2d": lambda x: F.adaptive_avg_pool2d(x, 1).flatten(1),
        "adaptive_avg_pool2d": lambda x: F.adaptive_avg_pool2d(x, t.get("output_size")),
        "dropout": lambda x: F.dropout(x, t.get("rate", 0.5), training=True),   # draws its mask
    }
    return _fwd_bwd(torch, spec, forwards[t["op"]], [x])


def seed_cnn(torch, input_shape, num_classes=10):
    """Conv32-ReLU-MaxPool2-Conv64-ReLU-MaxPool2-Conv64-ReLU-Flatten-Dense64-ReLU-Dense10."""
    nn = torch.nn
    base = nn.Sequential(
        nn.Conv2d(input_shape[0], 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3), nn.ReLU(), nn.Flatten())
    with torch.no_grad():
        flat = base(torch.zeros(1, *input_shape)).shape[1]
    head = nn.Sequential(nn.Linear(flat, 64), nn.ReLU(), nn.Linear(64, num_classes))
    return base, head


def _model(torch, t, spec):
    torch.manual_seed(0)
    B, steps = t["batch"], t["steps"]
    x = torch.randn(B, *t["input"])
    y = torch.randint(0, 10, (B,))
    phases = t.get("phases", ["train", "train_frozen", "inference"])
    out = {}
    for frozen in (False, True):
        if ("train_frozen" if frozen else "train") not in phases:
            continue
        base, head = seed_cnn(torch, t["input"])
        model = torch.nn.Sequential(base, head)
        for p in base.parameters():
            p.requires_grad_(not frozen)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = (torch.optim.Adam(params, lr=t["lr"]) if t["optimizer"] == "adam"
               else torch.optim.SGD(params, lr=t["lr"]))
        model.train()

        out["train_frozen" if frozen else "train"] = median_phases(
            lambda: training_step(model, opt, x, y), steps, warmup=WARMUP_STEPS)
    if "inference" not in phases:
        return out
    model.eval()

    def infer():
        t0 = time.perf_counter()
        with torch.no_grad():
            model(x)
        return {"forward": time.perf_counter() - t0}

    out["inference"] = median_phases(infer, steps, warmup=WARMUP_STEPS)
    return out


KINDS = {"gemm": _gemm, "conv2d": _conv2d, "pool2d": _pool2d, "activation": _activation, "dense": _dense,
         "layer": _layer, "model": _model}


def main():
    spec = json.load(sys.stdin)
    try:
        import torch
    except Exception as e:
        print(json.dumps({"ok": False, "error": f"torch not installed ({type(e).__name__}: {e})"}))
        return
    torch.set_num_threads(spec["threads"])
    if spec.get("cpu_time"):
        timing.use_cpu_time()
    results = []
    for t in spec["tasks"]:
        try:
            results.append(KINDS[t["kind"]](torch, t, spec))
        except Exception as e:  # one broken task must not hide the others
            results.append({"error": f"{t['kind']}: {type(e).__name__}: {e}"})
    env = {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
           "torch_interop_threads": torch.get_num_interop_threads(),
           "torch_parallel_info": torch.__config__.parallel_info().splitlines()[:12]}
    print(json.dumps({"ok": True, "env": env, "results": results}))


if __name__ == "__main__":
    main()
