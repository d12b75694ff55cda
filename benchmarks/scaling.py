"""Scaling of one conv2d shape (seed-cnn-2: 13×13×32→64, 3×3) with batch size and threads.

Batches 1, 8, 64, 256 (1, 8 with --quick) × threads 1 and all cores. Each configuration runs in
its own subprocess (``python -m benchmarks.scaling``) with NUMBA_NUM_THREADS and the BLAS
thread variables pinned, so Numba's pool and OpenBLAS both use exactly that many threads;
PyTorch runs in its own peer with ``torch.set_num_threads`` equal to it.

One more configuration repeats the all-cores run with ``OMP_WAIT_POLICY=passive``: Numba's
``omp`` threading layer (libgomp) spins after each parallel region, and on a small machine
those spinning threads take the cores OpenBLAS's own threads need for nptl's GEMMs. The
difference between the two all-cores rows is that contention.
"""
import json
import os
import sys

SHAPE_NAME = "seed-cnn-2 (28x28 gray)"


def batches(quick):
    return [1, 8] if quick else [1, 8, 64, 256]


def configs():
    """(label, threads, extra environment) for each subprocess."""
    n = os.cpu_count() or 1
    out = [(str(t), t, {}) for t in sorted({1, n})]
    if n > 1 and "OMP_WAIT_POLICY" not in os.environ:
        out.append((f"{n}, OMP passive", n, {"OMP_WAIT_POLICY": "passive"}))
    return out


def _shape():
    from benchmarks.suite import load_shapes
    return next(s for s in load_shapes()["conv2d"] if s["name"] == SHAPE_NAME)


def _nptl_worker_run(ctx, threads, bs, extra_env):
    from benchmarks.suite import run_python, subprocess_env
    spec = json.dumps({"threads": threads, "batches": bs, "repeats": ctx.repeats,
                       "min_time": ctx.min_time})
    return json.loads(run_python(["-m", "benchmarks.scaling"], subprocess_env(threads, **extra_env), spec))


def run(ctx):
    from benchmarks import torch_peer
    from benchmarks.suite import log
    from benchmarks.timing import conv2d_flops, gflops
    s, bs = _shape(), batches(ctx.quick)
    rows, torch_errors, workers = [], [], {}
    torch_by_threads = {}
    for label, t, extra_env in configs():
        log(f"  scaling: {label} thread(s), batches {bs}")
        nres = _nptl_worker_run(ctx, t, bs, extra_env) if ctx.has_nptl else None
        if nres:
            workers[label] = nres["env"]
        if t not in torch_by_threads:  # torch does not use libgomp's wait policy knob here
            torch_by_threads[t] = torch_peer.run([dict(s, kind="conv2d", N=b) for b in bs], ctx, threads=t)
        tres, terr = torch_by_threads[t]
        if terr and terr not in torch_errors:
            torch_errors.append(terr)
        for i, (b, tr) in enumerate(zip(bs, tres)):
            flops = conv2d_flops(b, s["C"], s["H"], s["W"], s["F"], s["K"], s["stride"], s["padding"])
            for p, mult in (("fwd", 1), ("fwdbwd", 3)):
                tn = nres["results"][i][p]["seconds"] if nres else None
                tt = tr[p]["seconds"] if tr else None
                rows.append({"family": "scaling", "name": s["name"], "batch": b, "threads": t,
                             "config": label, "env": extra_env, "pass": p,
                             "flops": mult * flops,
                             "nptl_seconds": tn, "nptl_img_s": b / tn if tn else None,
                             "nptl_gflops": gflops(mult * flops, tn),
                             "nptl_pct_peak": ctx.pct_peak(gflops(mult * flops, tn)),
                             "torch_seconds": tt, "torch_img_s": b / tt if tt else None,
                             "speed_vs_torch": tt / tn if (tt and tn) else None})
    one = {(r["batch"], r["pass"]): r["nptl_seconds"] for r in rows if r["config"] == "1"}
    for r in rows:
        t1 = one.get((r["batch"], r["pass"]))
        r["speedup_vs_1_thread"] = t1 / r["nptl_seconds"] if (t1 and r["nptl_seconds"]) else None
    return {"rows": rows, "torch_error": "; ".join(torch_errors) or None, "workers": workers}


def worker():
    spec = json.load(sys.stdin)
    import numba
    numba.set_num_threads(spec["threads"])
    import nptl.ops
    from benchmarks import conv2d
    from benchmarks.timing import measure
    s = _shape()
    results = []
    for b in spec["batches"]:
        fns = conv2d.op_fns(nptl.ops, dict(s, N=b))
        results.append({p: measure(f, spec["repeats"], 1, spec["min_time"]) for p, f in fns.items()})
    env = {"numba_threads": numba.get_num_threads(), "threading_layer": numba.threading_layer(),
           "blas_threads_env": os.environ.get("OPENBLAS_NUM_THREADS")}
    print(json.dumps({"env": env, "results": results}))


if __name__ == "__main__":
    worker()
