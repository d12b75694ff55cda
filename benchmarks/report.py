"""The report: environment facts, the Markdown tables printed to stdout, and the JSON file."""
import datetime
import json
import math
import os
import platform
import subprocess
import sys
from importlib import metadata


# ---------------------------------------------------------------- environment

def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return sorted(f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni") if f in flags)
    except OSError:
        pass
    return []


def _blas():
    import numpy as np
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version', '')}".strip()
    except Exception:
        return None


def _threading_layer():
    """numba.threading_layer() is only defined once a parallel function has run: run one."""
    import numba
    import numpy as np

    @numba.njit(parallel=True)
    def _touch(a):
        s = 0.0
        for i in numba.prange(a.size):
            s += a[i]
        return s

    _touch(np.ones(64))
    return numba.threading_layer()


def _loadavg():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _git_commit(repo):
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(ctx, torch_env):
    import numba
    from benchmarks.suite import REPO
    thread_vars = ("NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "OMP_NUM_THREADS", "OMP_WAIT_POLICY",
                   "GOMP_SPINCOUNT", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "numpy": _version("numpy"), "numba": _version("numba"),
        "torch": (torch_env or {}).get("torch"),  # as imported by the peer; None if it could not
        "torch_distribution": _version("torch"),
        "nptl": _version("nptl"), "git_commit": _git_commit(REPO),
        "numpy_blas": _blas(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(), "cpu_flags": _cpu_flags(), "cpu_count": os.cpu_count(),
        "numba_threads": numba.get_num_threads(),
        "numba_threading_layer": _threading_layer(),
        "torch_threads": (torch_env or {}).get("torch_threads"),
        "torch_interop_threads": (torch_env or {}).get("torch_interop_threads"),
        "torch_parallel_info": (torch_env or {}).get("torch_parallel_info"),
        "thread_env": {v: os.environ.get(v) for v in thread_vars},
        "nptl_available": ctx.has_nptl, "nptl_error": ctx.nptl_error,
        "load_average_1_5_15min": _loadavg(),  # at the end; other processes make figures noisy
    }


# ---------------------------------------------------------------- formatting

NA = "n/a"


def ms(seconds):
    return NA if seconds is None else f"{seconds * 1e3:.3g}"


def num(x, fmt="{:.3g}"):
    return NA if x is None else fmt.format(x)


def pct(x):
    return NA if x is None else f"{x:.1f}%"


def ratio(x):
    return NA if x is None else f"{x:.3g}×"


def rate(x):
    return NA if x is None else f"{x:,.0f}"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _shape_label(s, family):
    if family == "conv2d":
        return (f"{s['name']}: N{s['N']} C{s['C']} {s['H']}×{s['W']} F{s['F']} "
                f"k{s['K']} s{s['stride']} p{s['padding']}")
    if family == "pool2d":
        return f"{s['name']}: N{s['N']} C{s['C']} {s['H']}×{s['W']} {s['size']}/{s.get('stride') or s['size']}"
    if family == "activations":
        return f"{s['name']}: N{s['N']} C{s['C']} {s['H']}×{s['W']}"
    return f"{s['name']}: N{s['N']} {s['in']}→{s['out']}"


PASS = {"fwd": "fwd", "fwdbwd": "fwd+bwd"}

#: (header, cell) of every kernel-table column; which ones a family shows is in KERNEL_COLUMNS
_COLUMNS = {
    "shape": lambda r, fam: _shape_label(r["shape"], fam),
    "op": lambda r, fam: r["op"],
    "pass": lambda r, fam: PASS[r["pass"]],
    "nptl ms": lambda r, fam: ms(r["nptl_seconds"]),
    "GFLOP/s": lambda r, fam: num(r["nptl_gflops"], "{:.1f}"),
    "% peak": lambda r, fam: pct(r["nptl_pct_peak"]),
    "GB/s": lambda r, fam: num(r.get("nptl_gbytes_per_s"), "{:.1f}"),
    "% copy": lambda r, fam: pct(r.get("nptl_pct_copy")),
    "torch ms": lambda r, fam: ms(r["torch_seconds"]),
    "vs torch": lambda r, fam: ratio(r["speed_vs_torch"]),
    "numpy ms": lambda r, fam: ms(r["numpy_seconds"]),
    "vs numpy": lambda r, fam: ratio(r["speed_vs_numpy"]),
    "ref ms": lambda r, fam: ms(r["reference_seconds"]),
    "vs ref": lambda r, fam: ratio(r["speed_vs_reference"]),
    "1 thread: nptl ms": lambda r, fam: ms(r.get("nptl_1t_seconds")),
    "torch ms (1 thread)": lambda r, fam: ms(r.get("torch_1t_seconds")),
    "vs torch (1 thread)": lambda r, fam: ratio(r.get("speed_vs_torch_1t")),
}
_ONE_THREAD = ["1 thread: nptl ms", "torch ms (1 thread)", "vs torch (1 thread)"]
KERNEL_COLUMNS = {
    "conv2d": ["shape", "pass", "nptl ms", "GFLOP/s", "% peak", "torch ms", "vs torch", *_ONE_THREAD,
               "numpy ms", "vs numpy", "ref ms", "vs ref"],
    "dense": ["shape", "pass", "nptl ms", "GFLOP/s", "% peak", "torch ms", "vs torch", *_ONE_THREAD,
              "numpy ms", "vs numpy", "ref ms", "vs ref"],
    "pool2d": ["shape", "op", "pass", "nptl ms", "GB/s", "% copy", "torch ms", "vs torch", *_ONE_THREAD,
               "numpy ms", "vs numpy", "ref ms", "vs ref"],
    "activations": ["shape", "op", "pass", "nptl ms", "GB/s", "% copy", "torch ms", "vs torch", *_ONE_THREAD,
                    "numpy ms", "vs numpy"],
}


def kernel_table(rows, family):
    """The family's columns; the 1-thread ones only when the run measured them (more than one
    thread)."""
    header = [c for c in KERNEL_COLUMNS[family]
              if c not in _ONE_THREAD or any(r.get("nptl_1t_seconds") or r.get("torch_1t_seconds") for r in rows)]
    return table(header, [[_COLUMNS[c](r, family) for c in header] for r in rows])


def layers_table(rows):
    header = ["shape", "pass", "nptl ms", "GB/s", "% copy", "torch ms", "torch GB/s", "vs torch", "numpy ms",
              "vs numpy", "ref ms", "vs ref"]
    body = [[f"{r['name']}: {r['op']} {'×'.join(map(str, r['shape']['x']))}", PASS[r["pass"]],
             ms(r["nptl_seconds"]), num(r.get("nptl_gbytes_per_s"), "{:.1f}"), pct(r.get("nptl_pct_copy")),
             ms(r["torch_seconds"]),
             num(r.get("torch_gbytes_per_s"), "{:.1f}"), ratio(r["speed_vs_torch"]),
             ms(r["numpy_seconds"]), ratio(r["speed_vs_numpy"]), ms(r["reference_seconds"]),
             ratio(r["speed_vs_reference"])] for r in rows]
    return table(header, body)


def models_table(rows):
    header = ["model", "batch", "nptl train img/s", "torch train img/s", "vs torch",
              "nptl frozen img/s", "torch frozen img/s", "nptl infer img/s", "torch infer img/s",
              "nptl bwd ms (all / frozen)", "torch bwd ms (all / frozen)"]
    body = []
    for r in rows:
        n, t = r["nptl_train_img_s"], r["torch_train_img_s"]
        body.append([f"{r['name']} {'×'.join(map(str, r['input']))}", r["batch"], rate(n), rate(t),
                     ratio(n / t if (n and t) else None),
                     rate(r["nptl_train_frozen_img_s"]), rate(r["torch_train_frozen_img_s"]),
                     rate(r["nptl_infer_img_s"]), rate(r["torch_infer_img_s"]),
                     f"{ms(r['nptl_backward_s'])} / {ms(r['nptl_backward_frozen_s'])}",
                     f"{ms(r['torch_backward_s'])} / {ms(r['torch_backward_frozen_s'])}"])
    return table(header, body)


def compile_table(rows):
    header = ["what", "seconds"]
    body = []
    for r in rows:
        for mod, secs in r["import_seconds"].items():
            body.append([f"cold `import {mod}` (median of {len(r['import_runs'][mod])} fresh processes)",
                         num(secs)])
        for label in ("empty_cache", "warm_cache"):
            c = r[label]
            what = label.replace("_", " ")
            if c is None:
                body.append([f"{what}: first training step", "n/a (skipped with --quick; see a full run)"])
                continue
            body.append([f"{what}: build the model (first use loads NumPy, Numba, kernels)", num(c["build_seconds"])])
            body.append([f"{what}: first training step (seed CNN 1×28×28, batch {r['batch']})",
                         num(c["first_step_seconds"])])
        body.append(["steady-state training step (second step, warm cache)",
                     num(r["warm_cache"]["second_step_seconds"])])
    return table(header, body)


def scaling_table(rows):
    header = ["batch", "threads", "pass", "nptl ms", "nptl img/s", "GFLOP/s", "% peak",
              "speedup vs 1 thread", "torch img/s", "vs torch"]
    body = [[r["batch"], r["config"], PASS[r["pass"]], ms(r["nptl_seconds"]), rate(r["nptl_img_s"]),
             num(r["nptl_gflops"], "{:.1f}"), pct(r["nptl_pct_peak"]), ratio(r["speedup_vs_1_thread"]),
             rate(r["torch_img_s"]), ratio(r["speed_vs_torch"])]
            for r in sorted(rows, key=lambda r: (r["pass"], r["batch"], r["threads"], r["config"]))]
    return table(header, body)


TITLES = {"conv2d": "conv2d", "pool2d": "pool2d (max and avg)", "dense": "dense",
          "layers": "BatchNorm, global/adaptive average pooling, dropout (float32, GB/s)",
          "activations": "Elementwise activations", "busy": "Seed CNN training next to a busy neighbour",
          "models": "Seed CNN training and inference",
          "deep": "ResNet18 and VGG16: images/s and peak memory (each side in its own process)", "compile": "Start-up and JIT compilation",
          "scaling": "Scaling: seed-cnn-2 conv2d by batch and threads",
          "caching": "Head-only epoch with and without frozen-feature caching",
          "guards": "Non-finite guards of fit per training step"}


def _deep_table(rows):
    from benchmarks.deep import table as deep_table
    return deep_table(rows)


def _caching_table(rows):
    from benchmarks.caching import table as caching_table
    return caching_table(rows, table)


def _guards_table(rows):
    from benchmarks.guards import table as guards_table
    return guards_table(rows, table)


def markdown(results):
    env, gemm, cfg = results["environment"], results["gemm"], results["config"]
    out = [f"# nptl benchmarks{' (--quick: miniature shapes, 1 repeat)' if cfg['quick'] else ''}", ""]
    out.append(f"{env['cpu_model']} ({env['cpu_count']} CPUs), Python {env['python']}, NumPy {env['numpy']} "
               f"({env['numpy_blas']}), Numba {env['numba']} ({env['numba_threads']} threads, "
               f"{env['numba_threading_layer']} layer), PyTorch {env['torch'] or NA} "
               f"({env['torch_threads'] or NA} threads), commit {env['git_commit'] or NA}.")
    busy = env.get("other_processes")
    if busy and busy["other_cpu_fraction_of_machine"] is not None:
        frac = busy["other_cpu_fraction_of_machine"]
        out.append("")
        out.append(f"Other processes used {busy['other_cpu_seconds']:.0f} CPU-s ({100 * frac:.0f}% of the machine) "
                   f"during this {busy['wall_seconds']:.0f} s run, steal {busy['steal_seconds']:.1f} s."
                   + (" **The machine was busy: multi-threaded figures are unreliable; re-run when it is quiet "
                      "or compare with `--threads 1`.**" if frac > 0.05 else ""))
    out.append("")
    out.append(f"GEMM peak (float32 {gemm['n']}², best of {gemm['numpy']['repeats']} samples): NumPy **{num(gemm['numpy_gflops'], '{:.1f}')} GFLOP/s**"
               f" (the 100% of every \"% peak\"), PyTorch {num(gemm['torch_gflops'], '{:.1f}')} GFLOP/s.")
    out.append("")
    if cfg.get("cpu_time"):
        out += ["**Kernel times are thread CPU time (`--cpu-time`, one thread), not wall time.**", ""]
    out.append("Times are medians per call in ms. \"vs X\" = X's time ÷ nptl's time (>1× means nptl is "
               "faster). Reference (plain-loop) kernels run on a reduced batch and are scaled per image "
               "to the full batch.")
    if not env["nptl_available"]:
        out += ["", f"**nptl columns skipped: nptl is not importable ({env['nptl_error']}).**"]
    renderers = {"conv2d": lambda r: kernel_table(r, "conv2d"), "pool2d": lambda r: kernel_table(r, "pool2d"),
                 "dense": lambda r: kernel_table(r, "dense"), "layers": layers_table,
                 "activations": lambda r: kernel_table(r, "activations"), "busy": busy_table, "models": models_table,
                 "compile": compile_table, "scaling": scaling_table,
                 "caching": lambda r: _caching_table(r), "deep": _deep_table, "guards": _guards_table}
    for fam, res in results["families"].items():
        out += ["", f"## {TITLES[fam]}", ""]
        if res.get("error"):
            out.append(f"**failed:** {res['error']}")
            continue
        if res.get("skipped"):
            out.append(f"skipped: {res['skipped']}")
            continue
        out.append(renderers[fam](res["rows"]))
        notes = []
        ref_batches = sorted({v["measured_batch"] for r in res["rows"] for v in [r.get("times", {}).get("reference")]
                              if v})
        if ref_batches:
            notes.append(f"ref ms: measured on batch {', '.join(map(str, ref_batches))}, scaled per image.")
        if fam in ("conv2d", "pool2d", "dense", "layers", "activations"):
            notes += summary_notes(res["rows"])
        if fam in ("pool2d", "activations", "layers"):
            copies = sorted({(r.get("copy_bytes") or math.prod(r["shape"][k] for k in "NCHW") * 4,
                              r["copy_gbytes_per_s"]) for r in res["rows"] if r.get("copy_gbytes_per_s")})
            notes.append("copy bandwidth (read + write, at the input's size): "
                         + ", ".join(f"{b / 2**20:.1f} MB {g:.1f} GB/s" for b, g in copies))
        if fam == "busy":
            notes += busy_notes(res)
        if fam == "models":
            r0 = res["rows"][0]
            notes.append(f"Optimizer {r0['optimizer'].upper()} lr {r0['lr']} on both sides; frozen = conv base "
                         "frozen, Dense head trains.")
        if res.get("torch_error"):
            notes.append(f"torch: {res['torch_error']}")
        if notes:
            out += ["", *("- " + n for n in notes)]
    out += ["", f"Total wall time {results['wall_seconds']:.0f} s."]
    return "\n".join(out)


def busy_table(rows):
    header = ["run", "nptl train img/s", "torch train img/s", "vs torch"]
    return table(header, [[r["run"], rate(r["nptl_train_img_s"]), rate(r["torch_train_img_s"]),
                           ratio(r["speed_vs_torch"])] for r in rows])


def busy_notes(res):
    notes = [f"{res['model']} at batch {res['batch']}, all layers trainable, {res['threads']} threads on both "
             f"sides, while `{res['neighbour']}` spins {res['neighbour_cpus']}."]
    s = res.get("summary")
    if s:
        notes.append(f"ratio to torch over {s['runs']} runs: median {s['median']:.2f}×, "
                     f"spread {s['min']:.2f}–{s['max']:.2f}×")
    return notes


def geometric_mean(values):
    values = [v for v in values if v]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def summary_notes(rows):
    """Geometric means of the speed ratios per pass, and the smallest ratio to the reference."""
    notes = []
    for key, label in (("speed_vs_torch", "vs torch"), ("speed_vs_torch_1t", "vs torch at 1 thread"),
                       ("speed_vs_numpy", "vs numpy")):
        parts = []
        for p in ("fwd", "fwd+bwd"):
            g = geometric_mean([r.get(key) for r in rows if PASS.get(r["pass"], r["pass"]) == p])
            if g:
                parts.append(f"{p} {g:.2f}×")
        g = geometric_mean([r.get(key) for r in rows])
        if g:
            notes.append(f"geometric mean {label}: " + ", ".join(parts) + f", all rows {g:.2f}×")
    refs = [r.get("speed_vs_reference") for r in rows if r.get("speed_vs_reference")]
    if refs:
        notes.append(f"vs ref: smallest {min(refs):.1f}×, geometric mean {geometric_mean(refs):.0f}×")
    return notes


def write_json(results, path):
    with open(path, "w") as f:
        json.dump(results, f, indent=1, default=str)
        f.write("\n")


if __name__ == "__main__":  # re-render a saved JSON: python -m benchmarks.report FILE.json
    with open(sys.argv[1]) as f:
        print(markdown(json.load(f)))
