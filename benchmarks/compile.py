"""Start-up costs: cold ``import nptl``, and the first seed-CNN training step with an empty
and with a warm Numba cache (JIT compilation dominates the first step).

Every figure comes from a fresh subprocess. The cache runs point ``NUMBA_CACHE_DIR`` at a new
temporary directory: the first run compiles everything into it, the second reuses it.
With --quick the empty-cache run is skipped (it recompiles every kernel: 10-60 s on 2 busy
cores, most of the CI budget); the warm-cache run then uses the default cache, which the
tests and the kernel families have just filled.
Worker mode (``python -m benchmarks.compile``) times, in order: import nptl, build the model,
the first training step, the second step (steady state, for comparison).
"""
import json
import statistics
import sys
import tempfile
import time

IMPORT_SNIPPET = "import time;t=time.perf_counter();import {};print(time.perf_counter()-t)"
# nptl imports its submodules lazily, so `import nptl.ops` (NumPy, Numba, the kernels) is timed too.
IMPORTS = ("nptl", "nptl.ops")


def run(ctx):
    from benchmarks.suite import log, run_python, subprocess_env
    if not ctx.has_nptl:
        return {"rows": [], "skipped": f"nptl not importable: {ctx.nptl_error}"}
    env = subprocess_env(ctx.threads)
    n_import = 1 if ctx.quick else max(3, ctx.repeats)
    imports = {}
    for mod in IMPORTS:
        log(f"  cold import {mod} x{n_import}")
        imports[mod] = [float(run_python(["-c", IMPORT_SNIPPET.format(mod)], env)) for _ in range(n_import)]
    batch = 16 if ctx.quick else 64
    spec = json.dumps({"input": [1, 28, 28], "batch": batch})
    steps = {}
    if ctx.quick:
        log("  first training step, warm (default) cache; empty cache: full run only")
        steps["empty_cache"] = None
        steps["warm_cache"] = json.loads(run_python(["-m", "benchmarks.compile"], env, stdin=spec))
    else:
        with tempfile.TemporaryDirectory(prefix="nptl-numba-cache-") as cache:
            for label in ("empty_cache", "warm_cache"):
                log(f"  first training step, {label.replace('_', ' ')}")
                out = run_python(["-m", "benchmarks.compile"], dict(env, NUMBA_CACHE_DIR=cache), stdin=spec)
                steps[label] = json.loads(out)
    row = {"family": "compile", "batch": batch, "input": [1, 28, 28],
           "import_seconds": {m: statistics.median(v) for m, v in imports.items()},
           "import_runs": imports, **steps}
    return {"rows": [row]}


def worker():
    spec = json.load(sys.stdin)
    t0 = time.perf_counter()
    import nptl  # noqa: F401
    t1 = time.perf_counter()
    from benchmarks import models
    m = dict(input=spec["input"], batch=spec["batch"])
    model, opt = models.build(m["input"], frozen=False)
    x, y = models.batch(m)
    step = models.nptl_step_fn(model, opt, x, y)
    t2 = time.perf_counter()
    first = step()["step"]
    second = step()["step"]
    print(json.dumps({"import_seconds": t1 - t0, "build_seconds": t2 - t1,
                      "first_step_seconds": first, "second_step_seconds": second,
                      "process_seconds": time.perf_counter() - t0}))


if __name__ == "__main__":
    worker()
