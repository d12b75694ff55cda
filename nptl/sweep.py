"""Transfer sweeps: the recipe of :mod:`nptl.transfer` over a grid of settings.

One ``nptl transfer`` run answers "does transfer help?" for one setting.  The questions a
practitioner is left with — *how many labels until transfer stops helping*, *how much of the
base to fine-tune* — need a grid::

    labels per class  ×  arm (scratch / frozen / finetune from a depth)  ×  draws of the labels

Every cell of that grid is an independent **task**, a pure function of its settings
(:func:`nptl.transfer.train_arm`): the same task gives the same accuracy whichever process or
machine runs it, and however many run at once (each task runs on a fixed number of threads,
``threads_per_task``, so even the order of floating-point sums is the same).  Hence:

- tasks run on local worker processes (``workers``), or on a ``dask.distributed`` cluster
  (``scheduler="tcp://host:8786"``, extra ``distributed``); every worker loads the data itself
  from its name (nothing large crosses the network) and receives the pretrained source model as
  the bytes of its checkpoint (trained once, before the tasks, and kept as ``source.npz``);
- ``results.jsonl`` gets one line per finished task, flushed to disk at once; running the same
  sweep again skips every task already there, so a sweep stopped half-way (Ctrl-C, a lost
  worker, a reboot) resumes and loses nothing that had finished;
- ``config.json`` holds the settings every task depends on; a sweep into a folder whose
  results came from other settings is refused, naming each setting that differs.

Grid axes: an arm is ``scratch``, ``frozen`` (base frozen, head trained; "fine-tuned from
``none``") or ``finetune`` from each depth in ``fine_tune_from`` (``conv3``: the top block,
``conv1``: the whole base; ``none`` maps to the frozen arm).

>>> [t.key for t in make_grid([5], ["scratch", "finetune"], ["conv3", "none"], draws=1)]
['lpc5/scratch/-/draw0', 'lpc5/finetune/conv3/draw0', 'lpc5/frozen/none/draw0']
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import json
import os
import socket
from pathlib import Path

import numpy as np

ARMS = ("scratch", "frozen", "finetune")
DEPTHS = ("conv1", "conv2", "conv3", "none")
RESULTS, SUMMARY, CONFIG, SOURCE = "results.jsonl", "summary.csv", "config.json", "source.npz"
CONFIG_FORMAT = "nptl-sweep/1"


class SweepError(ValueError):
    """A sweep that cannot start: the message says which setting, file or scheduler."""


class WorkerLostError(RuntimeError):
    """A local worker process died mid-sweep; finished tasks are kept and the sweep resumes when
    run again."""


@dataclasses.dataclass(frozen=True)
class Task:
    """One cell of the grid and one draw of its labelled images."""
    labels_per_class: int
    arm: str
    fine_tune_from: str | None  # None for scratch, "none" for frozen, a conv layer for finetune
    draw: int

    @property
    def key(self) -> str:
        return f"lpc{self.labels_per_class}/{self.arm}/{self.fine_tune_from or '-'}/draw{self.draw}"


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Everything a task's result depends on, apart from its grid coordinates."""
    data: str
    source_classes: tuple
    target_classes: tuple
    source_epochs: int = 2
    scratch_epochs: int = 60
    head_epochs: int = 60
    finetune_epochs: int = 30
    batch_size: int = 64
    target_batch_size: int = 20
    lr: float = 1e-3
    optimizer: str = "adam"
    augment: bool = True
    seed: int = 0
    threads_per_task: int = 1

    def as_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["source_classes"], d["target_classes"] = list(self.source_classes), list(self.target_classes)
        return {"format": CONFIG_FORMAT, **d}


def make_grid(labels_per_class, arms, fine_tune_from=("conv3",), draws: int = 3) -> list[Task]:
    """The tasks of a grid, in a fixed order, without duplicates (``finetune`` from ``none`` is
    the frozen arm).  Raises :class:`SweepError` for an unknown arm or depth, or an empty axis."""
    labels_per_class, arms, fine_tune_from = list(labels_per_class), list(arms), list(fine_tune_from)
    for axis, values in (("labels per class", labels_per_class), ("arms", arms), ("fine-tune depths", fine_tune_from)):
        if not values:
            raise SweepError(f"sweep: the grid is empty: no {axis} given")
    bad = [a for a in arms if a not in ARMS]
    if bad:
        raise SweepError(f"sweep: unknown arm(s) {bad}; arms are {list(ARMS)}")
    bad = [d for d in fine_tune_from if d not in DEPTHS]
    if bad:
        raise SweepError(f"sweep: unknown fine-tune depth(s) {bad}; depths are {list(DEPTHS)}")
    bad = [n for n in labels_per_class if int(n) < 1]
    if bad or draws < 1:
        raise SweepError(f"sweep: labels per class and draws must be >= 1, got {labels_per_class} and {draws}")
    cells: list[tuple] = []
    for arm in arms:
        if arm == "scratch":
            cells.append(("scratch", None))
        elif arm == "frozen":
            cells.append(("frozen", "none"))
        else:
            cells += [("frozen", "none") if d == "none" else ("finetune", d) for d in fine_tune_from]
    cells = list(dict.fromkeys(cells))
    return [Task(int(n), arm, depth, draw) for n in labels_per_class for arm, depth in cells for draw in range(draws)]


# -- one task, in whichever process runs it ---------------------------------------------------
def _pin_threads(n: int) -> None:
    """Run this task on ``n`` Numba threads and ``n`` BLAS threads (N workers × n threads ≤ cores)."""
    import numba
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    threadpool_limits(limits=n)


@functools.lru_cache(maxsize=2)
def _target_data(data: str, seed: int, target_classes: tuple):
    """The target classes' training and test images, loaded once per worker process."""
    from .data import load_dataset, select_classes

    splits = load_dataset(data, seed=seed) if data == "synthetic" else load_dataset(data)
    names = [splits.class_names[c] for c in target_classes]
    return (*select_classes(splits.x_train, splits.y_train, target_classes),
            *select_classes(splits.x_test, splits.y_test, target_classes), names)


@functools.lru_cache(maxsize=2)
def _source_file(source: bytes) -> str:
    """The source checkpoint's bytes, shipped to a dask worker, as a file in the worker's local
    directory (which dask removes with the worker); tasks load weights by path."""
    from distributed import get_worker

    path = os.path.join(get_worker().local_directory,
                        f"nptl-sweep-source-{hashlib.sha256(source).hexdigest()[:16]}.npz")
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(source)
    os.replace(tmp, path)
    return path


def run_task(config: dict, task: dict, source: str | bytes) -> dict:
    """Train and test one task (plain dicts in and out, so any executor can ship it); ``source``
    is the source checkpoint's path (local workers) or its bytes (dask workers)."""
    from .data import take_per_class
    from .train import evaluate
    from .transfer import train_arm

    cfg = SweepConfig(**{k: v for k, v in config.items() if k != "format"})
    t = Task(**task)
    _pin_threads(cfg.threads_per_task)
    x_all, y_all, x_test, y_test, names = _target_data(cfg.data, cfg.seed, tuple(cfg.target_classes))
    s = cfg.seed + t.draw
    x, y = take_per_class(x_all, y_all, t.labels_per_class, seed=s, num_classes=len(names))
    source_path = source if isinstance(source, str) else _source_file(source)
    model, seconds = train_arm(
        t.arm, source_path, x, y, len(names), s, fine_tune_from=t.fine_tune_from or "conv3",
        scratch_epochs=cfg.scratch_epochs, head_epochs=cfg.head_epochs, finetune_epochs=cfg.finetune_epochs,
        batch_size=cfg.target_batch_size, lr=cfg.lr, optimizer=cfg.optimizer, augment=cfg.augment,
        progress=False)
    ev = evaluate(model, x_test, y_test, class_names=names)
    return {"key": t.key, **dataclasses.asdict(t), "test_accuracy": ev.accuracy, "macro_f1": ev.macro_f1,
            "seconds": seconds, "host": socket.gethostname(), "pid": os.getpid()}


# -- the results folder ----------------------------------------------------------------------
def read_results(path) -> list[dict]:
    """The finished tasks in ``results.jsonl``; a last line cut short by a kill is ignored."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i != len(lines) - 1:
                raise SweepError(f"sweep: {path} line {i + 1} is not JSON; it was not written by nptl sweep")
    return rows


def _append(path: Path, row: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(row) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _check_config(out: Path, config: SweepConfig) -> None:
    """Write ``config.json``, or refuse a folder whose results came from other settings."""
    path, want = out / CONFIG, config.as_json()
    if path.exists():
        try:
            have = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise SweepError(f"sweep: {path} is not a sweep configuration ({err})")
        diff = [f"{k}: {have.get(k)!r} there, {want[k]!r} now" for k in want if have.get(k) != want[k]]
        if diff:
            raise SweepError(f"sweep: {out} holds results of a sweep with other settings, which cannot be "
                             f"mixed with this one ({'; '.join(diff)}); use another --out folder")
    elif (out / RESULTS).exists():
        raise SweepError(f"sweep: {out / RESULTS} exists but {path} does not: not the results of nptl sweep")
    else:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(want, indent=2))
        os.replace(tmp, path)


def summarize(rows: list[dict]) -> list[dict]:
    """Mean ± std (over draws) of accuracy, macro F1 and seconds per (labels, arm, depth) cell."""
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        cells.setdefault((r["labels_per_class"], r["arm"], r["fine_tune_from"] or "-"), []).append(r)
    out = []
    for (lpc, arm, depth), rs in sorted(cells.items(), key=lambda kv: (kv[0][0], ARMS.index(kv[0][1]), kv[0][2])):
        acc = np.array([r["test_accuracy"] for r in rs])
        out.append({"labels_per_class": lpc, "arm": arm, "fine_tune_from": depth, "draws": len(rs),
                    "accuracy_mean": float(acc.mean()), "accuracy_std": float(acc.std()),
                    "macro_f1_mean": float(np.mean([r["macro_f1"] for r in rs])),
                    "seconds_mean": float(np.mean([r["seconds"] for r in rs]))})
    return out


def write_summary(out: Path, rows: list[dict]) -> Path:
    table = summarize(rows)
    path = out / SUMMARY
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(table[0]) if table else ["labels_per_class"])
        writer.writeheader()
        writer.writerows(table)
    os.replace(tmp, path)
    return path


def plot_curves(out: Path, rows: list[dict]) -> Path:
    """``accuracy.png``: mean test accuracy (± std over draws) against labels per class, one
    line per arm and fine-tune depth.  Needs matplotlib (extra ``plot``)."""
    try:
        import matplotlib
    except ImportError:
        raise SweepError('sweep: plots need matplotlib: pip install "nptl[plot]"') from None
    import matplotlib.ticker
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    table = summarize(rows)
    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for arm, depth in dict.fromkeys((r["arm"], r["fine_tune_from"]) for r in table):
        cell = [r for r in table if (r["arm"], r["fine_tune_from"]) == (arm, depth)]
        label = arm if arm != "finetune" else f"finetune from {depth}"
        ax.errorbar([r["labels_per_class"] for r in cell], [r["accuracy_mean"] for r in cell],
                    yerr=[r["accuracy_std"] for r in cell], marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xticks(sorted({r["labels_per_class"] for r in table}))
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("labelled images per class")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    path = out / "accuracy.png"
    fig.savefig(path)
    return path


# -- the sweep ---------------------------------------------------------------------------------
def _local_executor(workers: int, threads: int):
    """Spawned worker processes (a fork after Numba's thread pool started is unsafe), each
    with its thread counts set before Numba loads."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(threads,))


def _init_worker(threads: int) -> None:
    os.environ["NUMBA_NUM_THREADS"] = str(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def _dask_client(scheduler: str, timeout: float):
    try:
        from distributed import Client
    except ImportError:
        raise SweepError('sweep: --scheduler needs dask.distributed: pip install "nptl[distributed]"') from None
    try:
        return Client(scheduler, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as err:
        raise SweepError(f"sweep: cannot reach the scheduler at {scheduler} within {timeout:g} s "
                         f"(--connect-timeout): {err}") from None


def run_sweep(config: SweepConfig, tasks: list[Task], out, workers: int = 1, scheduler: str | None = None,
              connect_timeout: float = 10.0, progress: bool = True, plots: bool = False, log=print) -> list[dict]:
    """Run every task of ``tasks`` not yet in ``out/results.jsonl``; returns all results.

    The source model is pretrained once into ``out/source.npz`` (reused when present).  Local
    worker processes by default; ``scheduler`` sends the tasks to a dask.distributed cluster,
    whose workers need nptl and the data set named by ``config.data``.  A worker that dies
    stops a local sweep with :class:`WorkerLostError` (finished tasks are kept; run again to
    resume); on a cluster, dask re-runs a lost worker's task elsewhere.
    """
    from tqdm.auto import tqdm

    if workers < 1 or config.threads_per_task < 1:
        raise SweepError(f"sweep: workers and threads per task must be >= 1, got {workers} and {config.threads_per_task}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_config(out, config)
    results_path = out / RESULTS
    done = {r["key"] for r in read_results(results_path)}
    pending = [t for t in tasks if t.key not in done]
    log(f"sweep: {len(tasks)} tasks, {len(tasks) - len(pending)} already in {results_path}, {len(pending)} to run")

    source_path = out / SOURCE
    if pending and not source_path.exists():
        from .data import load_dataset
        from .transfer import pretrain_source

        data = load_dataset(config.data, seed=config.seed) if config.data == "synthetic" else load_dataset(config.data)
        summary = pretrain_source(data, list(config.source_classes), source_path, epochs=config.source_epochs,
                                  batch_size=config.batch_size, lr=config.lr, optimizer=config.optimizer,
                                  seed=config.seed, progress=progress, log=log)
        (out / "source.json").write_text(json.dumps(summary, indent=2))
    cfg = config.as_json()
    client = _dask_client(scheduler, connect_timeout) if scheduler and pending else None
    bar = tqdm(total=len(tasks), initial=len(tasks) - len(pending), desc="sweep", unit="task", disable=not progress)
    try:
        if pending and client is not None:
            from distributed import as_completed

            source = client.scatter(source_path.read_bytes(), broadcast=True)
            futures = [client.submit(run_task, cfg, dataclasses.asdict(t), source, key=f"nptl-sweep-{t.key}",
                                     pure=False, retries=2) for t in pending]
            for fut in as_completed(futures, loop=client.loop):
                _append(results_path, fut.result())
                bar.update()
        elif pending:
            from concurrent.futures import as_completed
            from concurrent.futures.process import BrokenProcessPool

            source = str(source_path)
            with _local_executor(workers, config.threads_per_task) as pool:
                futures = [pool.submit(run_task, cfg, dataclasses.asdict(t), source) for t in pending]
                try:
                    for fut in as_completed(futures):
                        _append(results_path, fut.result())
                        bar.update()
                except BrokenProcessPool:
                    raise WorkerLostError(f"sweep: a worker process died; the {bar.n} finished tasks are in "
                                     f"{results_path}: run the same command again to resume") from None
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
    finally:
        bar.close()
        if client is not None:
            client.close()
    rows = read_results(results_path)
    write_summary(out, rows)
    if plots:
        plot_curves(out, rows)
    return rows


def format_summary(rows: list[dict]) -> str:
    """The summary as a Markdown table."""
    lines = ["| labels/class | arm | fine-tuned from | draws | test accuracy | ± std | macro F1 | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for r in summarize(rows):
        lines.append(f"| {r['labels_per_class']} | {r['arm']} | {r['fine_tune_from']} | {r['draws']} | "
                     f"{r['accuracy_mean']:.4f} | {r['accuracy_std']:.4f} | {r['macro_f1_mean']:.4f} | "
                     f"{r['seconds_mean']:.1f} |")
    return "\n".join(lines)
