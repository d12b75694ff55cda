"""The agreed shapes (bench-shapes.json), their --quick miniatures, and the run context."""
import contextlib
import dataclasses
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHAPES_FILE = HERE / "bench-shapes.json"


def load_shapes():
    with open(SHAPES_FILE) as f:
        return json.load(f)


def quick_conv(s):
    """A miniature of a conv2d shape: few images, channels/4, at most 32x32 (each op < 10 ms)."""
    return dict(s, N=min(s["N"], 4), C=max(1, s["C"] // 4), F=max(4, s["F"] // 4),
                H=min(s["H"], 32), W=min(s["W"], 32))


def quick_pool(s):
    return dict(s, N=min(s["N"], 4), C=max(1, s["C"] // 4))


def quick_dense(s):
    return dict(s, N=min(s["N"], 16))


def quick_layer(s):
    return dict(s, x=[min(s["x"][0], 4), max(1, s["x"][1] // 4)] + s["x"][2:])


def shapes_for(family, quick):
    shrink = {"conv2d": quick_conv, "pool2d": quick_pool, "dense": quick_dense, "layers": quick_layer}.get(family)
    shapes = load_shapes()[family]
    return [shrink(s) for s in shapes] if quick and shrink else shapes


@dataclasses.dataclass
class Context:
    """What every family's ``run(ctx)`` needs."""
    quick: bool
    repeats: int
    threads: int           # nptl's thread count (numba.get_num_threads()); torch gets the same
    min_time: float        # seconds per timing sample (see timing.measure)
    peak: float = None     # measured NumPy float32 GEMM GFLOP/s
    nptl_error: str = None  # why nptl is unavailable, or None
    cpu_time: bool = False  # kernels timed by thread CPU time (--cpu-time)

    @property
    def has_nptl(self):
        return self.nptl_error is None

    def pct_peak(self, gflops):
        if gflops is None or not self.peak:
            return None
        return 100.0 * gflops / self.peak


@contextlib.contextmanager
def one_thread():
    """Run nptl on one thread for the block (the "1 thread" columns): Numba's thread count for
    the calling thread, which the parallel kernels and the conv2d planner read at each call.
    BLAS already runs single-threaded under nptl's default policy."""
    import numba
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def log(*args):
    """Progress goes to stderr; stdout carries only the Markdown report."""
    print(*args, file=sys.stderr, flush=True)


#: the environment before nptl was used: the PyTorch peer must not inherit an OMP_WAIT_POLICY
#: meant for nptl (its OpenMP pool would then sleep between parallel regions and measure slow;
#: nptl.configure puts the variable back after starting Numba's pool, this keeps it that way)
ORIGINAL_ENV = dict(os.environ)


def subprocess_env(threads=None, **extra):
    """Environment for a child python: the environment as it was before nptl was imported, the
    repo importable, optional thread pinning."""
    env = dict(ORIGINAL_ENV)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    if threads is not None:
        for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_python(args, env, stdin=None, timeout=900):
    """Run ``python ARGS`` from the repo root; return the last line of stdout.

    Raises RuntimeError with the tail of stderr if the child fails or times out.
    """
    import subprocess
    try:
        proc = subprocess.run([sys.executable, *args], input=stdin, capture_output=True, text=True,
                              timeout=timeout, cwd=REPO, env=env)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"`python {' '.join(args)}` timed out after {timeout} s") from None
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"`python {' '.join(args)}` failed (exit {proc.returncode}): {tail}")
    return lines[-1]


def import_nptl():
    """Return (nptl module, None) or (None, reason). nptl.ops must exist for the nptl columns."""
    try:
        import nptl  # noqa: F401
        import nptl.ops  # noqa: F401
        return sys.modules["nptl"], None
    except Exception as e:  # ImportError, or nptl broken while it is being written
        return None, f"{type(e).__name__}: {e}"


class ForeignLoad:
    """CPU time that *other* processes used while the benchmarks ran: a noise meter.

    busy jiffies of the whole machine (/proc/stat) minus the CPU time of this process and its
    children (getrusage). On a 2-core machine, other processes that used even 0.5 CPU-seconds per
    second stall multi-threaded kernels (a thread waits a scheduler tick for its core).
    """

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        import resource
        import time
        ours = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                   for f in ("ru_utime", "ru_stime"))
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
            tick = os.sysconf("SC_CLK_TCK")
            busy = (v[0] + v[1] + v[2] + v[5] + v[6]) / tick        # user nice system irq softirq
            steal = (v[7] if len(v) > 7 else 0) / tick
        except (OSError, ValueError, IndexError):
            busy = steal = None
        return time.perf_counter(), ours, busy, steal

    def report(self):
        (t0, o0, b0, s0), (t1, o1, b1, s1) = self.start, self._sample()
        if b0 is None or b1 is None:
            return None
        wall, ncpu = t1 - t0, os.cpu_count() or 1
        other = max(0.0, (b1 - b0) - (o1 - o0))
        return {"wall_seconds": wall, "own_cpu_seconds": o1 - o0, "other_cpu_seconds": other,
                "steal_seconds": s1 - s0,
                "other_cpu_fraction_of_machine": other / (wall * ncpu) if wall > 0 else None}
