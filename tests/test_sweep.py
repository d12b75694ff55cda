"""Transfer sweeps on the synthetic set: the grid, local workers, resume, refusal to mix, dask."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nptl import sweep
from nptl.sweep import SweepConfig, SweepError, Task, make_grid, read_results, run_sweep

ROOT = Path(__file__).resolve().parent.parent
# tiny but real: synthetic data, 1 source epoch, 2 epochs per arm, no augmentation
CONFIG = SweepConfig(data="synthetic", source_classes=(0, 1, 2, 3, 4), target_classes=(5, 6, 7, 8, 9),
                     source_epochs=1, scratch_epochs=2, head_epochs=2, finetune_epochs=1, augment=False, seed=0)
GRID = make_grid([2, 4], ["scratch", "finetune"], ["conv3", "none"], draws=2)


def test_grid_order_dedup_and_keys():
    tasks = make_grid([5, 10], ["scratch", "frozen", "finetune"], ["conv1", "none", "conv3"], draws=2)
    # frozen and "finetune from none" are one cell; 4 cells x 2 label counts x 2 draws
    assert len(tasks) == 16 and len({t.key for t in tasks}) == 16
    assert [(t.arm, t.fine_tune_from) for t in tasks[:8:2]] == [
        ("scratch", None), ("frozen", "none"), ("finetune", "conv1"), ("finetune", "conv3")]
    assert Task(5, "finetune", "conv2", 1).key == "lpc5/finetune/conv2/draw1"


@pytest.mark.parametrize("kwargs, message", [
    (dict(arms=["scratch", "linear"]), "unknown arm(s) ['linear']"),
    (dict(fine_tune_from=["conv9"]), "unknown fine-tune depth(s) ['conv9']"),
    (dict(labels_per_class=[]), "the grid is empty: no labels per class"),
    (dict(arms=[]), "the grid is empty: no arms"),
    (dict(labels_per_class=[0, 5]), "labels per class and draws must be >= 1"),
])
def test_bad_grids_are_refused(kwargs, message):
    args = dict(labels_per_class=[5], arms=["scratch"], fine_tune_from=["conv3"], draws=1) | kwargs
    with pytest.raises(SweepError) as err:
        make_grid(**args)
    assert message in str(err.value)


@pytest.fixture(scope="module")
def two_worker_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep2")
    rows = run_sweep(CONFIG, GRID, out, workers=2, progress=False, log=lambda m: None)
    return out, rows


def test_local_sweep_writes_results_summary_and_source_once(two_worker_run):
    out, rows = two_worker_run
    assert sorted(r["key"] for r in rows) == sorted(t.key for t in GRID)
    assert len({r["pid"] for r in rows}) == 2           # both workers took tasks
    for r in rows:
        assert 0 <= r["test_accuracy"] <= 1 and 0 <= r["macro_f1"] <= 1 and r["seconds"] > 0 and r["host"]
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("labels_per_class,arm,fine_tune_from,draws,accuracy_mean,accuracy_std")
    assert len(summary) == 1 + 2 * 3                   # 2 label counts x 3 cells
    assert (out / "source.npz").exists() and json.loads((out / "source.json").read_text())["test_accuracy"] > 0.2
    # a second run finds everything done: nothing is retrained, not even the source
    stamp = (out / "source.npz").stat().st_mtime_ns
    again = run_sweep(CONFIG, GRID, out, workers=2, progress=False, log=lambda m: None)
    assert len(again) == len(GRID) and (out / "source.npz").stat().st_mtime_ns == stamp


def test_accuracy_curves_png(two_worker_run):
    pytest.importorskip("matplotlib")
    out, rows = two_worker_run
    path = sweep.plot_curves(out, rows)
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (640, 420)


def test_results_do_not_depend_on_the_number_of_workers(two_worker_run, tmp_path):
    _, rows2 = two_worker_run
    rows1 = run_sweep(CONFIG, GRID, tmp_path, workers=1, progress=False, log=lambda m: None)
    by_key = lambda rows: {r["key"]: (r["test_accuracy"], r["macro_f1"]) for r in rows}
    assert by_key(rows1) == by_key(rows2)


def test_a_folder_from_other_settings_is_refused(two_worker_run):
    out, _ = two_worker_run
    other = SweepConfig(**{**CONFIG.__dict__, "head_epochs": 3, "seed": 1})
    with pytest.raises(SweepError) as err:
        run_sweep(other, GRID, out, progress=False, log=lambda m: None)
    msg = str(err.value)
    assert "head_epochs: 2 there, 3 now" in msg and "seed: 0 there, 1 now" in msg and "another --out" in msg


def test_a_results_file_not_written_by_a_sweep_is_refused(tmp_path):
    (tmp_path / "results.jsonl").write_text('{"x": 1}\n')
    with pytest.raises(SweepError, match="config.json does not"):
        run_sweep(CONFIG, GRID, tmp_path, progress=False, log=lambda m: None)


def test_truncated_last_line_is_ignored_and_other_garbage_refused(tmp_path):
    p = tmp_path / "results.jsonl"
    p.write_text('{"key": "a"}\n{"key": "b"')
    assert [r["key"] for r in read_results(p)] == ["a"]
    p.write_text('{"key": "a"\n{"key": "b"}\n')
    with pytest.raises(SweepError, match="line 1 is not JSON"):
        read_results(p)


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return kids


def test_killed_worker_then_resume_gives_every_task_exactly_once(tmp_path):
    """Kill one worker process mid-sweep: the sweep stops with a one-line message, keeps what
    finished; the same command again completes the grid, every task exactly once."""
    out = tmp_path / "sweep"
    argv = [sys.executable, "-m", "nptl", "sweep", "--data", "synthetic", "--labels-per-class", "2,3,4",
            "--arms", "scratch,frozen", "--draws", "2", "--epochs", "1", "--scratch-epochs", "3",
            "--head-epochs", "3", "--no-augment", "--workers", "2", "--out", str(out), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 900   # generous: source pretraining comes first, and machines get busy
    while time.monotonic() < deadline and len(read_results(out / "results.jsonl")) < 2 and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, "the sweep ended before a worker could be killed: " + proc.stderr.read()
    workers = [k for k in _children(proc.pid)
               if "spawn_main" in Path(f"/proc/{k}/cmdline").read_text(errors="ignore")]
    assert workers, "no worker process found to kill"
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=900)
    finished = read_results(out / "results.jsonl")
    if proc.returncode != 0:   # the kill landed while tasks were left: one line, no traceback
        assert proc.returncode == 1 and "a worker process died" in err and "Traceback" not in err
    assert len(finished) < 12 or proc.returncode == 0
    rerun = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr
    keys = [r["key"] for r in read_results(out / "results.jsonl")]
    assert len(keys) == 12 and len(set(keys)) == 12


def test_dask_local_cluster_gives_the_same_results(two_worker_run, tmp_path):
    distributed = pytest.importorskip("distributed")
    _, rows_local = two_worker_run
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  worker_dashboard_address=None) as cluster:
        rows = run_sweep(CONFIG, GRID, tmp_path, scheduler=cluster.scheduler_address, progress=False,
                         log=lambda m: None)
    assert {r["key"]: r["test_accuracy"] for r in rows} == {r["key"]: r["test_accuracy"] for r in rows_local}


def test_unreachable_scheduler_fails_within_the_timeout(tmp_path):
    pytest.importorskip("distributed")
    t0 = time.monotonic()
    with pytest.raises(SweepError) as err:
        sweep._dask_client("tcp://127.0.0.1:9", timeout=2)
    assert "cannot reach the scheduler at tcp://127.0.0.1:9 within 2 s (--connect-timeout)" in str(err.value)
    assert time.monotonic() - t0 < 30
