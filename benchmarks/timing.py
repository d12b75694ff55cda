"""Timing helpers shared by the nptl side and the torch peer (standard library only).

``measure`` reports the median per-call time over ``repeats`` samples. Each sample calls
the function ``number`` times, with ``number`` chosen (once, autorange style) so that a
sample lasts at least ``min_time`` seconds: microsecond-sized kernels are then timed over
many calls instead of against the timer's resolution.
"""
import statistics
import time

#: the clock ``measure`` reads: wall time, or the calling thread's CPU time after
#: :func:`use_cpu_time` (``--cpu-time``, one thread only)
CLOCK = time.perf_counter


def use_cpu_time():
    """Time kernels by the calling thread's CPU time (``time.thread_time``) instead of wall time.
    With one thread every kernel runs in the calling thread, so this counts its work and not the
    time other processes hold the core: kernel quality on a loaded machine."""
    global CLOCK
    CLOCK = time.thread_time


def measure(fn, repeats=5, warmup=1, min_time=0.05, max_number=100_000):
    """Time ``fn()``; return {"seconds": median per call, "min": best, "repeats", "number"}.

    The first ``warmup`` calls are not timed (they pay for JIT compilation and cold caches).
    The calibration sample that settles ``number`` counts as the first of the ``repeats``.
    """
    for _ in range(warmup):
        fn()
    number = 1
    while True:
        t0 = CLOCK()
        for _ in range(number):
            fn()
        dt = CLOCK() - t0
        if dt >= min_time or number >= max_number:
            break
        grow = int(number * 1.3 * min_time / max(dt, 1e-9))
        number = min(max_number, max(2 * number, grow))
    samples = [dt / number]
    for _ in range(repeats - 1):
        t0 = CLOCK()
        for _ in range(number):
            fn()
        samples.append((CLOCK() - t0) / number)
    return {
        "seconds": statistics.median(samples),
        "min": min(samples),
        "repeats": len(samples),
        "number": number,
    }


def median_phases(step, steps, warmup=1):
    """Run ``step()`` ``warmup + steps`` times; ``step`` returns {phase: seconds}.

    Returns the median of each phase over the timed steps (used for training steps, where
    forward, backward and the optimizer update are timed inside one call).
    """
    for _ in range(warmup):
        step()
    runs = [step() for _ in range(max(1, steps))]
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def gflops(flops, seconds):
    """Rate in GFLOP/s, or None when there is no time."""
    if not seconds:
        return None
    return flops / seconds / 1e9


# FLOP counts: one multiply-add is 2 FLOPs. The backward of conv2d and dense (dx and dw)
# costs twice the forward, so forward+backward is 3x the forward.

def conv2d_out(H, W, K, stride, padding):
    return (H + 2 * padding - K) // stride + 1, (W + 2 * padding - K) // stride + 1


def conv2d_flops(N, C, H, W, F, K, stride=1, padding=0):
    """Forward FLOPs: 2*N*F*C*KH*KW*Ho*Wo (the agreed definition, bench-shapes.json)."""
    Ho, Wo = conv2d_out(H, W, K, stride, padding)
    return 2 * N * F * C * K * K * Ho * Wo


def dense_flops(N, n_in, n_out):
    return 2 * N * n_in * n_out


def pool2d_ops(N, C, H, W, size, stride=None):
    """One operation (compare or add) per window element read: N*C*Ho*Wo*size*size."""
    stride = stride or size
    Ho, Wo = (H - size) // stride + 1, (W - size) // stride + 1
    return N * C * Ho * Wo * size * size


def pool2d_bytes(N, C, H, W, size, stride=None, op="avg", backward=False):
    """float32 bytes the pass must move at least: forward reads x and writes y; the backward
    adds reading dy and writing dx, and for max pooling reading x again (where the maxima are)."""
    stride = stride or size
    X = N * C * H * W
    Y = N * C * ((H - size) // stride + 1) * ((W - size) // stride + 1)
    fwd = X + Y
    bwd = Y + X + (X if op == "max" else 0)
    return 4 * (fwd + (bwd if backward else 0))
