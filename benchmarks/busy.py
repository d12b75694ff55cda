"""The seed-CNN training step next to a busy neighbour: robustness of the thread hand-out.

A second process spins on one core (pinned to the last CPU where the OS allows it) for the whole
family.  Under that load the seed CNN (1×28×28, batch 64, all layers trainable, SGD) is timed
``RUNS`` times (2 with --quick), each run measuring nptl and then PyTorch (own process, same thread
count) as in ``models.py``; the ratio nptl img/s ÷ torch img/s of each run compares the two under
the same load, and the report gives the median and the spread (smallest–largest) of those ratios.
A kernel that hands work out in fixed per-thread slices waits for the thread that shares its
core with the neighbour; one that hands out chunks on demand does not.
"""
import os
import statistics
import subprocess
import sys
import time

from benchmarks import models, torch_peer
from benchmarks.suite import log
from benchmarks.timing import median_phases

RUNS = 5
#: spins until its parent is gone (so a benchmark killed mid-run leaves no spinner behind)
SPIN = "parent = os.getppid()\nwhile os.getppid() == parent: pass"


def start_neighbour():
    """A process that keeps one core busy; ``(Popen, description of its CPUs)``."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    code = "import os\n" + SPIN
    where = "on any core (no CPU affinity on this OS)"
    if len(cpus) > 1:
        code = f"import os\nos.sched_setaffinity(0, {{{cpus[-1]}}})\n{SPIN}"
        where = f"pinned to CPU {cpus[-1]}"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL)
    time.sleep(0.2)
    return proc, where


def run(ctx):
    m = models.model_shapes(ctx.quick)[0]
    runs = 2 if ctx.quick else RUNS
    steps = models.steps_for(ctx)
    task = dict(kind="model", input=m["input"], batch=m["batch"], optimizer=models.OPTIMIZER, lr=models.LR,
                steps=steps, phases=["train"])
    x, y = models.batch(m)
    rows, errors = [], []
    neighbour, where = start_neighbour()
    try:
        for i in range(runs):
            log(f"  busy neighbour: run {i + 1}/{runs}")
            nptl_s = None
            if ctx.has_nptl:
                model, opt = models.build(m["input"], frozen=False)
                step = models.nptl_step_fn(model, opt, x, y)
                nptl_s = median_phases(step, steps, warmup=models.WARMUP_STEPS)["step"]
            (tr,), err = torch_peer.run([task], ctx)
            if err:
                errors.append(err)
            torch_s = tr["train"]["step"] if tr else None
            n, t = (m["batch"] / s if s else None for s in (nptl_s, torch_s))
            rows.append({"run": i + 1, "nptl_step_seconds": nptl_s, "torch_step_seconds": torch_s,
                         "nptl_train_img_s": n, "torch_train_img_s": t,
                         "speed_vs_torch": n / t if (n and t) else None})
    finally:
        neighbour.kill()
        neighbour.wait()
    ratios = [r["speed_vs_torch"] for r in rows if r["speed_vs_torch"]]
    summary = ({"runs": len(ratios), "median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
               if ratios else None)
    return {"rows": rows, "summary": summary, "model": f"{m['name']} {'×'.join(map(str, m['input']))}",
            "batch": m["batch"], "threads": ctx.threads, "neighbour": "a Python loop",
            "neighbour_cpus": where, "torch_error": "; ".join(errors) or None}
