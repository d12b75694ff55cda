"""Process settings (nptl.settings): nothing at import, defaults at first use, each setting on
its own, values parsed before anything is marked done, explicit values, the context manager.
Each case runs in a fresh interpreter: these settings are process-wide."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PRELUDE = """
import json, os
from threadpoolctl import threadpool_info
import numpy as np
def blas():
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"][0]
out = {"blas_at_start": blas()}
"""


def run(body, **env):
    """Run ``body`` in a fresh interpreter with BLAS at 2 threads and the NPTL_* variables of
    ``env`` only; returns the JSON it prints (``out``)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("NPTL_") and k != "OMP_WAIT_POLICY"}
    e.update(PYTHONPATH=str(REPO), OPENBLAS_NUM_THREADS="2", **env)
    proc = subprocess.run([sys.executable, "-c", PRELUDE + body + "\nprint(json.dumps(out))"],
                          capture_output=True, text=True, env=e, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_changes_nothing_and_first_use_applies_the_defaults():
    out = run("""
import nptl, nptl.ops, nptl.layers, nptl.graph, nptl.models
out["after_import"] = [blas(), os.environ.get("OMP_WAIT_POLICY"), nptl.settings.current()]
nptl.seed_cnn(seed=0).forward(np.zeros((2, 1, 28, 28), np.float32))
out["after_use"] = [blas(), os.environ.get("OMP_WAIT_POLICY"), nptl.settings.current()]
out["second"] = str(nptl.configure())
""")
    assert out["blas_at_start"] == 2
    assert out["after_import"] == [2, None, {"blas_threads_now": 2}]
    blas, omp_env, applied = out["after_use"]
    assert blas == 1 and omp_env is None  # the variable is put back once the pool has started
    assert applied == {"blas_threads": 1, "malloc": "reuse", "omp_wait_policy": "passive", "blas_threads_now": 1}
    assert out["second"] == "nptl.configure: nothing changed"


def test_a_standalone_op_or_layer_also_applies_them():
    out = run("""
import nptl
nptl.ops.relu(np.ones(3))
out["op"] = blas()
""")
    assert out["op"] == 1


def test_each_setting_is_tracked_on_its_own_and_reported():
    out = run("""
import nptl
out["first"] = {k: list(v) for k, v in nptl.configure(blas_threads=2).items()}
out["applied"] = nptl.settings.current()
nptl.ops.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)))
out["after_use"] = nptl.settings.current()
""")
    assert out["first"] == {"omp_wait_policy": ["unset", "PASSIVE"], "malloc": ["glibc default", "reuse"]}
    # an explicit thread count stays; malloc and the wait policy were applied anyway
    assert out["applied"]["blas_threads"] == 2 and out["applied"]["malloc"] == "reuse"
    assert out["after_use"]["blas_threads_now"] == 2


def test_environment_opt_outs():
    out = run("""
import nptl
nptl.ops.relu(np.ones(3))
out["applied"] = nptl.settings.current()
out["omp"] = os.environ.get("OMP_WAIT_POLICY")
""", NPTL_BLAS_THREADS="keep", NPTL_MALLOC="keep", OMP_WAIT_POLICY="active")
    assert out["applied"] == {"blas_threads": "keep", "malloc": "glibc default", "omp_wait_policy": "keep",
                              "blas_threads_now": 2}
    assert out["omp"] == "active"  # the user's own value is left alone


def test_a_bad_environment_value_raises_every_time_and_marks_nothing_done():
    out = run("""
import nptl
errors = []
for _ in range(2):
    try:
        nptl.ops.relu(np.ones(3))
    except ValueError as e:
        errors.append(str(e))
out["errors"] = errors
out["applied"] = nptl.settings.current()
""", NPTL_BLAS_THREADS="two")
    assert out["errors"] == ["nptl.configure: environment variable NPTL_BLAS_THREADS (blas_threads): expected "
                             "a thread count >= 1 or 'keep', got 'two'"] * 2
    assert out["applied"] == {"blas_threads_now": 2}  # parsed before anything was applied


@pytest.mark.parametrize("kwargs,match", [
    (dict(blas_threads=0), r"'blas_threads': expected a thread count >= 1 or 'keep', got 0"),
    (dict(blas_threads=True), r"'blas_threads': expected a thread count >= 1 or 'keep', got True"),
    (dict(malloc="free"), r"'malloc': expected one of 'reuse', 'keep', got 'free'"),
    (dict(omp_wait_policy="spin"), r"'omp_wait_policy': expected one of 'passive', 'active', 'keep', got 'spin'"),
])
def test_bad_explicit_values(kwargs, match):
    from nptl import settings

    before = dict(settings._applied)
    with pytest.raises(ValueError, match=match):
        settings.configure(**kwargs)
    assert settings._applied == before


def test_context_manager_restores_the_thread_count_and_wait_policy_is_fixed_once_started():
    out = run("""
import nptl
nptl.configure()
with nptl.configured(blas_threads=2):
    out["inside"] = blas()
out["after"] = blas()
try:
    nptl.configure(omp_wait_policy="active")
except RuntimeError as e:
    out["late"] = str(e)
""")
    assert (out["inside"], out["after"]) == (2, 1)
    assert "omp_wait_policy can only be set before Numba's thread pool starts" in out["late"]
