"""What the kernel families (conv2d, pool, dense) share: timing the three NumPy-process sides
(nptl fast, NumPy baseline, nptl reference on a reduced batch), filling one result row, and
checking that nptl and the baseline agree."""
import numpy as np
from threadpoolctl import threadpool_limits

from benchmarks import numpy_im2col
from benchmarks.suite import log, one_thread
from benchmarks.timing import gflops, measure

PASSES = ("fwd", "fwdbwd")


def torch_results(ctx, tasks):
    """PyTorch at the run's thread count and, when that is more than one, at one thread (each
    in its own peer process): ``(results, results_1t, error)``; lists of None where it failed."""
    from benchmarks import torch_peer
    res, err = torch_peer.run(tasks, ctx)
    res_1t = [None] * len(tasks)
    if ctx.threads > 1:
        res_1t, err_1t = torch_peer.run(tasks, ctx, threads=1)
        err = "; ".join(e for e in (err, err_1t and f"1 thread: {err_1t}") if e) or None
    if err:
        log(f"  torch: {err}")
    return res, res_1t, err


def rng():
    return np.random.default_rng(0)


def time_side(ctx, fn):
    return measure(fn, ctx.repeats, warmup=1, min_time=ctx.min_time)


def time_nptl(ctx, fns, times):
    """nptl's side of every pass ``p`` of ``fns`` into ``times[p]["nptl"]`` and, when the run uses
    more than one thread, again at one thread into ``times[p]["nptl_1t"]``."""
    for p, f in fns.items():
        times[p]["nptl"] = time_side(ctx, f)
    if ctx.threads > 1:
        with one_thread():
            for p, f in fns.items():
                times[p]["nptl_1t"] = time_side(ctx, f)


def time_reference(ctx, make_fns, N, tiny_fns):
    """Time the reference (plain loop) kernels on batch ``n_ref = min(N, 4)`` (1 in --quick).

    ``make_fns(n)`` returns {"fwd": fn, "fwdbwd": fn} on the first n images; ``tiny_fns`` is
    the same on a miniature input, called first so Numba compiles outside the timing.
    Returns {"fwd": {...}, "fwdbwd": {...}} with "seconds" scaled to the full batch
    (per-image time × N) and "measured_batch" = n_ref.
    """
    for fn in tiny_fns.values():
        fn()
    n_ref = min(N, 1 if ctx.quick else 4)
    out = {}
    for key, fn in make_fns(n_ref).items():
        r = measure(fn, max(1, min(ctx.repeats, 3)), warmup=0, min_time=0)
        r = dict(r, measured_seconds=r["seconds"], measured_batch=n_ref)
        r["seconds"] = r["seconds"] * N / n_ref
        r["min"] = r["min"] * N / n_ref
        out[key] = r
    return out


def max_rel_err(a, b):
    """max |a - b| / (max |b| + tiny): how far nptl is from the baseline, for the JSON."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-30)) if b.size else 0.0


def _tuple(out):
    return out if isinstance(out, tuple) else (out,)


def check_agreement(nptl_out, base_out, name, tol=1e-3):
    """Compare outputs (an array or a tuple of arrays); warn (never fail: tests own correctness)."""
    errs = [max_rel_err(a, b) for a, b in zip(_tuple(nptl_out), _tuple(base_out))]
    worst = max(errs) if errs else 0.0
    if worst > tol:
        log(f"  WARNING {name}: nptl and the NumPy baseline differ (max rel err {worst:.2e})")
    return worst


def make_row(ctx, family, shape, pass_, flops, times, extra=None):
    """One table/JSON row. ``times`` maps side ("nptl", "torch", "numpy", "reference", and
    "nptl_1t"/"torch_1t" for the 1-thread column) to a measure() dict or None. Speed ratios are
    other_time / nptl_time (>1: nptl is faster); "speed_vs_torch_1t" compares the 1-thread pair."""
    t_nptl = (times.get("nptl") or {}).get("seconds")
    g = gflops(flops, t_nptl)
    row = {"family": family, "name": shape["name"], "shape": shape, "pass": pass_,
           "flops": flops, "times": times,
           "nptl_seconds": t_nptl, "nptl_gflops": g, "nptl_pct_peak": ctx.pct_peak(g)}
    for side in ("torch", "numpy", "reference"):
        t = (times.get(side) or {}).get("seconds")
        row[f"{side}_seconds"] = t
        row[f"{side}_gflops"] = gflops(flops, t)
        row[f"speed_vs_{side}"] = (t / t_nptl) if (t and t_nptl) else None
    n1, t1 = ((times.get(k) or {}).get("seconds") for k in ("nptl_1t", "torch_1t"))
    row.update(nptl_1t_seconds=n1, torch_1t_seconds=t1, speed_vs_torch_1t=(t1 / n1) if (t1 and n1) else None)
    row.update(extra or {})
    return row


def kernel_rows(ctx, family, shape, op_fns, tiny_shape, torch_result, flops, bwd_mult, extra=None,
                torch_1t=None):
    """Measure one shape on every side; return its two rows (fwd, fwd+bwd).

    ``op_fns(impl, shape, N=None)`` returns {"fwd": fn, "fwdbwd": fn} calling ``impl``'s
    ops-style functions on fixed random inputs (batch N, default shape["N"]). ``tiny_shape``
    is a miniature used to compile the reference kernels before they are timed.
    fwd+bwd FLOPs = ``bwd_mult`` × ``flops`` (the forward FLOPs).
    When the run uses more than one thread, nptl is timed again on one thread (the "1 thread"
    columns, next to ``torch_1t``, PyTorch's result at one thread).
    """
    base = op_fns(numpy_im2col, shape)
    with threadpool_limits(limits=ctx.threads, user_api="blas"):  # nptl.configure leaves BLAS at 1
        times = {p: {"numpy": time_side(ctx, f)} for p, f in base.items()}
    extra = dict(extra or {})
    if ctx.has_nptl:
        import nptl.ops
        from nptl.kernels import reference
        fast = op_fns(nptl.ops, shape)
        time_nptl(ctx, fast, times)
        extra["max_rel_err_vs_numpy"] = max(
            check_agreement(fast[p](), base[p](), f"{family} {p} {shape['name']}") for p in PASSES)
        ref = time_reference(ctx, lambda n: op_fns(reference, shape, n), shape["N"],
                             op_fns(reference, tiny_shape, 1))
        for p in PASSES:
            times[p]["reference"] = ref[p]
    rows = []
    for p, mult in zip(PASSES, (1, bwd_mult)):
        times[p]["torch"] = torch_result and torch_result[p]
        times[p]["torch_1t"] = torch_1t and torch_1t[p]
        rows.append(make_row(ctx, family, shape, p, mult * flops, times[p], extra))
    return rows
