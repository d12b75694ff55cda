"""python -m benchmarks [--quick] [--out FILE.json] [--md FILE.md] [--only FAMILIES] [--repeats N] [--threads N] [--cpu-time]

Runs the nptl benchmark suite (benchmarks/bench-shapes.json), prints Markdown tables to stdout
(progress goes to stderr) and writes every figure plus the environment to JSON.
See benchmarks/README.md for what each column means.
"""
import argparse
import os
import sys
import time
import traceback

FAMILIES = ("conv2d", "pool2d", "activations", "dense", "layers", "models", "busy", "deep", "caching", "guards",
            "compile", "scaling")
ALIASES = {"pool": "pool2d", "conv": "conv2d", "model": "models", "activation": "activations"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[1])
    p.add_argument("--quick", action="store_true",
                   help="miniature shapes and 1 repeat (the CI smoke run, < 2 minutes)")
    p.add_argument("--out", metavar="FILE.json", help="write all figures and the environment here")
    p.add_argument("--md", metavar="FILE.md", help="also write the Markdown report here")
    p.add_argument("--only", metavar="LIST", help=f"comma-separated subset of {','.join(FAMILIES)}")
    p.add_argument("--repeats", type=int, help="timing samples per figure (default 5, --quick 1)")
    p.add_argument("--threads", type=int,
                   help="threads for nptl (Numba and BLAS) and PyTorch (default: Numba's default, all cores)")
    p.add_argument("--cpu-time", action="store_true",
                   help="with --threads 1: time the kernel families by thread CPU time, not wall time "
                        "(kernel quality on a loaded machine)")
    args = p.parse_args(argv)
    if args.cpu_time and args.threads != 1:
        p.error("--cpu-time needs --threads 1 (other threads' work would not be counted)")
    if args.only:
        names = [ALIASES.get(n.strip(), n.strip()) for n in args.only.split(",") if n.strip()]
        bad = [n for n in names if n not in FAMILIES]
        if bad:
            p.error(f"--only: unknown {', '.join(bad)} (choose from {', '.join(FAMILIES)})")
        args.families = [f for f in FAMILIES if f in names]
    else:
        args.families = list(FAMILIES)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 5
    if args.repeats < 1 or (args.threads is not None and args.threads < 1):
        p.error("--repeats and --threads must be >= 1")
    return args


def pin_threads(n):
    """Must run before NumPy/Numba are imported: OpenBLAS and Numba read these at load time."""
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        pin_threads(args.threads)
    t_start = time.perf_counter()
    load_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    from benchmarks.suite import ForeignLoad
    foreign = ForeignLoad()

    import numba
    import numpy as np
    from benchmarks import report, torch_peer
    from benchmarks.suite import Context, import_nptl, log
    from benchmarks.timing import gflops, measure

    nptl_module, nptl_error = import_nptl()
    if nptl_module is not None:
        # the process settings nptl's users get (nptl.settings), applied before anything below
        # starts Numba's thread pool (numba.get_num_threads does): once the pool runs, its wait
        # policy can no longer be made passive and its threads spin against the convolutions'
        nptl_module.configure()
    if args.cpu_time:
        from benchmarks.timing import use_cpu_time
        use_cpu_time()
    ctx = Context(quick=args.quick, repeats=args.repeats, threads=numba.get_num_threads(),
                  min_time=0.005 if args.quick else 0.05, nptl_error=nptl_error, cpu_time=args.cpu_time)
    if nptl_error:
        log(f"nptl is not importable ({nptl_error}): nptl columns are skipped, baselines still run.")

    n = 2048
    log(f"GEMM peak: float32 {n}x{n} matmul (NumPy here, PyTorch in its subprocess)")
    g = np.random.default_rng(0)
    a, b = (g.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    c = np.empty_like(a)
    # the practical peak is the best of several samples (the median of a 2-core shared machine
    # swung from 88 to 207 GFLOP/s between runs), with BLAS at the thread count nptl uses
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=ctx.threads, user_api="blas"):
        gemm_np = measure(lambda: np.matmul(a, b, out=c), max(7, args.repeats), 1, ctx.min_time)
    del a, b, c
    ctx.peak = gflops(2 * n ** 3, gemm_np["min"])
    (gemm_t,), torch_err = torch_peer.run([{"kind": "gemm", "n": n}], ctx)
    gemm = {"n": n, "flops": 2 * n ** 3, "numpy": gemm_np, "numpy_gflops": ctx.peak,
            "torch": gemm_t and gemm_t["mm"],
            "torch_gflops": gflops(2 * n ** 3, gemm_t["mm"]["seconds"]) if gemm_t else None,
            "torch_error": torch_err}
    if torch_err:
        log(f"  torch: {torch_err} (torch columns show n/a)")
    torch_env = torch_peer.run.env

    families, failed = {}, []
    for fam in args.families:
        log(f"{fam}:")
        module = __import__(f"benchmarks.{'pool' if fam == 'pool2d' else fam}", fromlist=["run"])
        t0 = time.perf_counter()
        try:
            families[fam] = module.run(ctx)
        except Exception as e:  # report the others, then exit non-zero
            traceback.print_exc()
            families[fam] = {"rows": [], "error": f"{type(e).__name__}: {e}"}
            failed.append(fam)
        families[fam]["seconds"] = time.perf_counter() - t0
        log(f"  ({families[fam]['seconds']:.1f} s)")

    results = {
        "config": {"quick": args.quick, "repeats": args.repeats, "threads": ctx.threads, "cpu_time": args.cpu_time,
                   "min_time": ctx.min_time, "families": args.families, "argv": sys.argv[1:]},
        "environment": dict(report.environment(ctx, torch_env), load_average_at_start=load_start,
                            other_processes=foreign.report()),
        "gemm": gemm,
        "families": families,
        "wall_seconds": time.perf_counter() - t_start,
    }
    md = report.markdown(results)
    print(md)
    if args.out:
        report.write_json(results, args.out)
        log(f"wrote {args.out}")
    if args.md:
        with open(args.md, "w") as f:
            f.write(md + "\n")
        log(f"wrote {args.md}")
    if failed:
        log(f"FAILED: {', '.join(failed)} (see the tracebacks above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
