"""Optimizers and learning-rate schedules.

* hand-computed steps (plain SGD, momentum, Nesterov, Adam, AdamW, L1/L2, lr changes): the
  expected values are worked out here with explicit arithmetic, not by the code under test;
* cross-checks against ``torch.optim`` (float64, same gradient sequence, rtol 1e-12), including
  a frozen layer ≡ a torch parameter whose ``.grad`` is ``None``;
* freeze/unfreeze with every optimizer: frozen parameters bit-identical, state not advanced,
  resumption equal to a hand-driven run that only sees the unfrozen steps;
* float32 stays float32, gradients are never modified, state_dict round trip, schedules, bad
  arguments, and an end-to-end loss decrease on ``seed_cnn``.

Torch is optional: its tests are skipped without it, unless ``NPTL_REQUIRE_TORCH=1`` (CI).
"""
from __future__ import annotations

import copy
import math
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nptl
from nptl import Dense, ReLU, ops
from nptl.optim import SGD, Adam, AdamW, ExponentialDecay, Optimizer, StepDecay, make_optimizer


@pytest.fixture(scope="module")
def torch():
    if os.environ.get("NPTL_REQUIRE_TORCH") == "1":
        import torch  # noqa: F401  -- CI requires torch: an ImportError here must fail the run
    else:
        torch = pytest.importorskip(
            "torch", reason="torch not installed; set NPTL_REQUIRE_TORCH=1 to make this fatal")
    torch.set_num_threads(1)
    return torch


# -- helpers ----------------------------------------------------------------------------------------
def tiny(dtype=np.float64, seed=0):
    """Two Dense layers, parameters a.w (3,2), a.b (2,), b.w (2,2), b.b (2,), biases non-zero."""
    m = nptl.Sequential([Dense(2, name="a"), ReLU(), Dense(2, name="b")], input_shape=(3,), seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 100)
    for layer in (m["a"], m["b"]):
        layer.params["b"][...] = rng.standard_normal(layer.params["b"].shape)
    return m


def scalar_model(theta, dtype=np.float64):
    """A model with one trainable parameter ``s.w`` of shape (1, len(theta)) and no bias."""
    theta = np.asarray(theta, dtype=dtype)
    m = nptl.Sequential([Dense(theta.size, use_bias=False, name="s")], input_shape=(1,), dtype=dtype)
    m["s"].params["w"][...] = theta.reshape(1, -1)
    return m


def set_grads(model, grads: dict):
    for p in model.parameters():
        if p.name in grads:
            p.grad[...] = grads[p.name]
        else:
            p.grad.fill(0)


def grad_sequence(model, steps, seed=1):
    rng = np.random.default_rng(seed)
    return [{p.name: rng.standard_normal(p.value.shape) for p in model.parameters()} for _ in range(steps)]


def snapshot(model):
    return {p.name: p.value.copy() for p in model.parameters()}


def state_snapshot(opt, names):
    return {n: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in opt.state.get(n, {}).items()}
            for n in names}


def assert_state_equal(a, b):
    assert a.keys() == b.keys()
    for n in a:
        assert a[n].keys() == b[n].keys(), n
        for k in a[n]:
            if isinstance(a[n][k], np.ndarray):
                assert np.array_equal(a[n][k], b[n][k]), (n, k)
            else:
                assert a[n][k] == b[n][k], (n, k)


# -- hand-computed values -----------------------------------------------------------------------------
G1 = np.array([0.5, -0.25])
G2 = np.array([-1.0, 2.0])
T0 = np.array([1.0, -2.0])


def run(opt_factory, grads, theta=T0, dtype=np.float64):
    m = scalar_model(theta, dtype)
    opt = opt_factory(m)
    out = []
    for g in grads:
        set_grads(m, {"s.w": np.reshape(g, (1, -1))})
        opt.step()
        out.append(m["s"].params["w"][0].copy())
    return out, opt


def test_sgd_keeps_the_two_argument_form_and_plain_update():
    (t1, t2), _ = run(lambda m: SGD(m, 0.1), [G1, G2])
    np.testing.assert_allclose(t1, [1.0 - 0.05, -2.0 - 0.1 * -0.25], rtol=0, atol=1e-15)
    np.testing.assert_allclose(t2, [0.95 + 0.1, -1.975 - 0.2], rtol=0, atol=1e-15)


def test_momentum_two_steps_by_hand():
    (t1, t2), opt = run(lambda m: SGD(m, 0.1, momentum=0.9), [G1, G2])
    # step 1: buf = g1 = [0.5, -0.25];  θ = [1, -2] - 0.1*buf = [0.95, -1.975]
    np.testing.assert_allclose(t1, [0.95, -1.975], atol=1e-15)
    # step 2: buf = 0.9*[0.5, -0.25] + [-1, 2] = [-0.55, 1.775];  θ = [0.95 + 0.055, -1.975 - 0.1775]
    np.testing.assert_allclose(opt.state["s.w"]["momentum_buffer"][0], [-0.55, 1.775], atol=1e-15)
    np.testing.assert_allclose(t2, [1.005, -2.1525], atol=1e-15)


def test_nesterov_two_steps_by_hand():
    (t1, t2), _ = run(lambda m: SGD(m, 0.1, momentum=0.9, nesterov=True), [G1, G2])
    # step 1: buf = g1; d = g1 + 0.9*g1 = [0.95, -0.475];  θ = [1 - 0.095, -2 + 0.0475]
    np.testing.assert_allclose(t1, [0.905, -1.9525], atol=1e-15)
    # step 2: buf = [-0.55, 1.775]; d = g2 + 0.9*buf = [-1.495, 3.5975];  θ = θ1 - 0.1*d
    np.testing.assert_allclose(t2, [0.905 + 0.1495, -1.9525 - 0.35975], atol=1e-15)


def test_adam_two_steps_by_hand():
    lr, eps = 0.01, 1e-8  # default betas (0.9, 0.999)
    (t1, t2), opt = run(lambda m: Adam(m, lr), [G1, G2])
    # step 1: m = 0.1*g1, v = 0.001*g1²; m̂ = m/0.1 = g1, v̂ = v/0.001 = g1²  →  θ -= lr*g1/(|g1| + eps)
    exp1 = T0 - lr * G1 / (np.abs(G1) + eps)
    np.testing.assert_allclose(t1, exp1, rtol=1e-13)
    np.testing.assert_allclose(t1, [0.99, -1.99], atol=1e-9)
    # step 2: m = 0.9*0.1*g1 + 0.1*g2, v = 0.999*0.001*g1² + 0.001*g2²
    m2 = 0.09 * G1 + 0.1 * G2                      # = [-0.055, 0.1775]
    v2 = 0.000999 * G1 ** 2 + 0.001 * G2 ** 2      # = [0.00124975, 0.0040624375]
    np.testing.assert_allclose(m2, [-0.055, 0.1775], atol=1e-15)
    mhat, vhat = m2 / (1 - 0.81), v2 / (1 - 0.998001)
    exp2 = exp1 - lr * mhat / (np.sqrt(vhat) + eps)
    np.testing.assert_allclose(t2, exp2, rtol=1e-13)
    st_ = opt.state["s.w"]
    assert st_["step"] == 2
    np.testing.assert_allclose(st_["m"][0], m2, rtol=1e-14)
    np.testing.assert_allclose(st_["v"][0], v2, rtol=1e-14)


def test_adamw_and_coupled_adam_weight_decay_by_hand():
    lr, wd, eps = 0.01, 0.5, 1e-8
    # AdamW, one step: θ ← θ(1 - lr*wd) - lr*g/(|g| + eps)
    (t1,), _ = run(lambda m: Adam(m, lr, weight_decay=wd, decoupled=True), [G1])
    np.testing.assert_allclose(t1, T0 * (1 - 0.005) - lr * G1 / (np.abs(G1) + eps), rtol=1e-13)
    (t1w,), _ = run(lambda m: AdamW(m, lr, weight_decay=wd), [G1])
    assert np.array_equal(t1, t1w)
    # coupled (torch.optim.Adam weight_decay): g' = g + wd*θ = [1.0, -1.25]; first step moves by lr*sign(g')
    (t1c,), _ = run(lambda m: Adam(m, lr, weight_decay=wd), [G1])
    gc = np.array([1.0, -1.25])
    np.testing.assert_allclose(t1c, T0 - lr * gc / (np.abs(gc) + eps), rtol=1e-13)
    (t1l,), _ = run(lambda m: Adam(m, lr, l2=wd), [G1])
    assert np.array_equal(t1c, t1l)


def test_sgd_regularisers_by_hand():
    lr = 0.1
    # l2 = 0.5: g' = g + 0.5θ = [1.0, -1.25];  θ = [0.9, -1.875]
    (t1,), _ = run(lambda m: SGD(m, lr, l2=0.5), [G1])
    np.testing.assert_allclose(t1, [0.9, -1.875], atol=1e-15)
    # l1 = 0.5: g' = g + 0.5 sign θ = [1.0, -0.75];  θ = [0.9, -1.925]
    (t1,), _ = run(lambda m: SGD(m, lr, l1=0.5), [G1])
    np.testing.assert_allclose(t1, [0.9, -1.925], atol=1e-15)
    # decoupled weight_decay = 0.5 with momentum: θ(1 - 0.05) - 0.1*buf, decay not in the buffer
    (t1, t2), opt = run(lambda m: SGD(m, lr, momentum=0.9, weight_decay=0.5), [G1, G2])
    exp1 = T0 * 0.95 - 0.1 * G1
    np.testing.assert_allclose(t1, exp1, atol=1e-15)
    np.testing.assert_allclose(t2, exp1 * 0.95 - 0.1 * (0.9 * G1 + G2), atol=1e-15)
    np.testing.assert_allclose(opt.state["s.w"]["momentum_buffer"][0], 0.9 * G1 + G2, atol=1e-15)


def test_lr_is_read_at_every_step():
    m = scalar_model(T0)
    opt = SGD(m, 0.1)
    set_grads(m, {"s.w": G1[None]})
    opt.step()
    opt.lr = 0.01
    opt.step()
    np.testing.assert_allclose(m["s"].params["w"][0], T0 - 0.1 * G1 - 0.01 * G1, atol=1e-15)


def test_regularize_bias_false_exempts_biases():
    for factory in (lambda m: SGD(m, 0.1, weight_decay=0.3, l1=0.2, l2=0.1, regularize_bias=False),
                    lambda m: Adam(m, 0.1, weight_decay=0.3, l1=0.2, l2=0.1, decoupled=True, regularize_bias=False)):
        m = tiny()
        before = snapshot(m)
        set_grads(m, {})  # zero loss gradient: only regularisation could move anything
        opt = factory(m)
        opt.step()
        for p in m.parameters():
            if p.key == "b":
                assert np.array_equal(p.value, before[p.name]), p.name
            else:
                assert not np.array_equal(p.value, before[p.name]), p.name
        m2 = tiny()
        set_grads(m2, {})
        opt2 = factory(m2)
        opt2.regularize_bias = True
        opt2.step()
        assert not np.array_equal(m2["a"].params["b"], before["a.b"])


# -- torch.optim ---------------------------------------------------------------------------------------
def _torch_opt(torch, spec, params):
    cls, kw = spec
    return getattr(torch.optim, cls)(params, **kw)


# (nptl factory kwargs, torch optimizer) — same semantics
TORCH_CASES = {
    "sgd": (("sgd", dict(lr=0.1)), ("SGD", dict(lr=0.1))),
    "sgd_l2": (("sgd", dict(lr=0.1, l2=0.05)), ("SGD", dict(lr=0.1, weight_decay=0.05))),
    "sgd_decoupled_no_momentum": (("sgd", dict(lr=0.1, weight_decay=0.05)), ("SGD", dict(lr=0.1, weight_decay=0.05))),
    "momentum": (("momentum", dict(lr=0.05, momentum=0.8)), ("SGD", dict(lr=0.05, momentum=0.8))),
    "momentum_l2": (("momentum", dict(lr=0.05, l2=0.1)), ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.1))),
    "nesterov": (("nesterov", dict(lr=0.05, momentum=0.7)), ("SGD", dict(lr=0.05, momentum=0.7, nesterov=True))),
    "nesterov_l2": (("nesterov", dict(lr=0.05, l2=0.02)),
                    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.02))),
    "adam": (("adam", dict(lr=0.01)), ("Adam", dict(lr=0.01))),
    "adam_betas_eps": (("adam", dict(lr=0.02, betas=(0.5, 0.9), eps=1e-3)),
                       ("Adam", dict(lr=0.02, betas=(0.5, 0.9), eps=1e-3))),
    "adam_l2": (("adam", dict(lr=0.01, l2=0.1)), ("Adam", dict(lr=0.01, weight_decay=0.1))),
    "adam_coupled_wd": (("adam", dict(lr=0.01, weight_decay=0.1)), ("Adam", dict(lr=0.01, weight_decay=0.1))),
    "adamw": (("adamw", dict(lr=0.01, weight_decay=0.1)), ("AdamW", dict(lr=0.01, weight_decay=0.1))),
    "adamw_default_wd": (("adamw", dict(lr=0.01)), ("AdamW", dict(lr=0.01))),
    "adam_decoupled": (("adam", dict(lr=0.01, weight_decay=0.1, decoupled=True)),
                       ("Adam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True))),
}


def _compare_with_torch(torch, nptl_spec, torch_spec, steps=6, frozen_at=(), lr_at=None):
    """Drive both with the same gradients; ``frozen_at[i]`` = set of layer names frozen at step i
    (torch: those parameters get ``grad = None``); ``lr_at[i]`` = lr at step i."""
    m = tiny()
    name, kw = nptl_spec
    opt = make_optimizer(name, m, **kw)
    tparams = {p.name: torch.tensor(p.value.copy(), dtype=torch.float64, requires_grad=True) for p in m.parameters()}
    topt = _torch_opt(torch, torch_spec, list(tparams.values()))
    for i, grads in enumerate(grad_sequence(m, steps)):
        frozen = frozen_at[i] if i < len(frozen_at) else set()
        m.unfreeze()
        if frozen:
            m.freeze(*frozen)
        set_grads(m, grads)
        for n, tp in tparams.items():
            tp.grad = None if n.split(".")[0] in frozen else torch.tensor(grads[n])
        if lr_at is not None:
            opt.lr = lr_at[i]
            for group in topt.param_groups:
                group["lr"] = lr_at[i]
        opt.step()
        topt.step()
        for p in m.parameters():
            np.testing.assert_allclose(p.value, tparams[p.name].detach().numpy(), rtol=1e-12, atol=1e-14,
                                       err_msg=f"{p.name} after step {i + 1}")
    return m, opt


@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_matches_torch_optim(torch, case):
    _compare_with_torch(torch, *TORCH_CASES[case])


@pytest.mark.parametrize("case", ["momentum_l2", "nesterov", "adam_l2", "adamw"])
def test_freezing_matches_torch_grad_none(torch, case):
    """A frozen layer behaves as a torch parameter with ``grad=None``: skipped, state kept."""
    frozen = [set(), {"a"}, {"a"}, {"b"}, set(), {"a", "b"}, set(), set()]
    _, opt = _compare_with_torch(torch, *TORCH_CASES[case], steps=8, frozen_at=frozen)
    if "adam" in case:
        assert opt.state["a.w"]["step"] == 5 and opt.state["b.w"]["step"] == 6


def test_changing_lr_matches_torch(torch):
    for case in ("nesterov_l2", "adamw"):
        _compare_with_torch(torch, *TORCH_CASES[case], steps=5, lr_at=[0.1, 0.05, 0.05, 0.2, 0.01])


@given(momentum=st.sampled_from([0.0, 0.5, 0.9, 0.99]), nesterov=st.booleans(),
       l2=st.sampled_from([0.0, 1e-3, 0.3]), lr=st.floats(1e-4, 1.0))
def test_sgd_matches_torch_property(momentum, nesterov, l2, lr):
    torch = _torch_module()
    nesterov = nesterov and momentum > 0
    _compare_with_torch(torch, ("sgd", dict(lr=lr, momentum=momentum, nesterov=nesterov, l2=l2)),
                        ("SGD", dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=l2)), steps=4)


@given(b1=st.sampled_from([0.0, 0.5, 0.9]), b2=st.sampled_from([0.0, 0.9, 0.999]),
       eps=st.sampled_from([1e-8, 1e-3]), wd=st.sampled_from([0.0, 0.01, 0.5]), decoupled=st.booleans(),
       lr=st.floats(1e-4, 0.1))
def test_adam_matches_torch_property(b1, b2, eps, wd, decoupled, lr):
    torch = _torch_module()
    _compare_with_torch(torch, ("adam", dict(lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, decoupled=decoupled)),
                        ("AdamW" if decoupled else "Adam", dict(lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)),
                        steps=4)


def _torch_module():
    if os.environ.get("NPTL_REQUIRE_TORCH") == "1":
        import torch
        return torch
    return pytest.importorskip("torch")


def test_step_decay_matches_torch_steplr(torch):
    m = tiny()
    opt = SGD(m, 0.3)
    sched = StepDecay(opt, step_size=3, gamma=0.5)
    tp = torch.zeros(1, requires_grad=True)
    topt = torch.optim.SGD([tp], lr=0.3)
    tsched = torch.optim.lr_scheduler.StepLR(topt, step_size=3, gamma=0.5)
    for _ in range(10):
        topt.step()
        tsched.step()
        sched.step()
        assert math.isclose(sched.lr, topt.param_groups[0]["lr"], rel_tol=1e-14)


# -- freeze / unfreeze ---------------------------------------------------------------------------------
ALL_CONFIGS = {
    "sgd": dict(lr=0.1, weight_decay=0.05, l1=0.01, l2=0.02),
    "momentum": dict(lr=0.05, weight_decay=0.05, l1=0.01, l2=0.02),
    "nesterov": dict(lr=0.05, weight_decay=0.05, l1=0.01, l2=0.02),
    "adam": dict(lr=0.01, weight_decay=0.05, l1=0.01, l2=0.02),
    "adamw": dict(lr=0.01, weight_decay=0.05, l1=0.01, l2=0.02),
}


@pytest.mark.parametrize("name", sorted(ALL_CONFIGS))
def test_freeze_unfreeze(name):
    """Layer ``a`` is trainable at steps 0-1, frozen at 2-4, trainable again at 5-6.  While frozen
    its parameters are bit-identical and its state does not advance; after unfreezing every
    parameter equals a hand-driven run in which each layer only ever sees the steps at which it
    was trainable (separate single-layer models, never frozen)."""
    kw = ALL_CONFIGS[name]
    m = tiny()
    start = snapshot(m)
    opt = make_optimizer(name, m, **kw)
    grads = grad_sequence(m, 7, seed=5)
    a_trainable = [True, True, False, False, False, True, True]
    a_names = ["a.w", "a.b"]
    for i, g in enumerate(grads):
        if a_trainable[i]:
            m.unfreeze("a")
        else:
            m.freeze("a")
        if i == 2:
            frozen_vals = {n: m["a"].params[n.split(".")[1]].copy() for n in a_names}
            frozen_state = state_snapshot(opt, a_names)
        set_grads(m, g)
        opt.step()
        if not a_trainable[i]:
            for n in a_names:
                assert np.array_equal(m["a"].params[n.split(".")[1]], frozen_vals[n]), (n, i)
            assert_state_equal(state_snapshot(opt, a_names), frozen_state)
    assert opt.steps == 7

    # hand-driven reference: one single-layer model per layer, fed only its trainable steps
    for layer, keep in (("a", a_trainable), ("b", [True] * 7)):
        ref = nptl.Sequential([Dense(2, name=layer)], input_shape=m[layer].input_shape, dtype=np.float64)
        for k in ("w", "b"):
            ref[layer].params[k][...] = start[f"{layer}.{k}"]
        ref_opt = make_optimizer(name, ref, **kw)
        for g, on in zip(grads, keep):
            if on:
                set_grads(ref, {f"{layer}.{k}": g[f"{layer}.{k}"] for k in ("w", "b")})
                ref_opt.step()
        for k in ("w", "b"):
            assert np.array_equal(m[layer].params[k], ref[layer].params[k]), f"{name}: {layer}.{k}"
        if name.startswith("adam"):
            assert opt.state[f"{layer}.w"]["step"] == sum(keep)


def test_momentum_resumes_after_unfreeze_by_hand():
    m = scalar_model(T0)
    opt = SGD(m, 0.1, momentum=0.9)
    set_grads(m, {"s.w": G1[None]})
    opt.step()                                   # buf = g1, θ = T0 - 0.1 g1
    m.freeze()
    for _ in range(3):
        set_grads(m, {"s.w": np.full((1, 2), 7.0)})
        opt.step()
    np.testing.assert_allclose(opt.state["s.w"]["momentum_buffer"][0], G1, atol=0)
    m.unfreeze()
    set_grads(m, {"s.w": G2[None]})
    opt.step()                                   # buf = 0.9 g1 + g2 = [-0.55, 1.775]
    np.testing.assert_allclose(m["s"].params["w"][0], T0 - 0.1 * G1 - 0.1 * np.array([-0.55, 1.775]), atol=1e-15)


def test_adam_resumes_after_unfreeze_by_hand():
    lr, eps = 0.01, 1e-8
    m = scalar_model(T0)
    opt = Adam(m, lr)
    set_grads(m, {"s.w": G1[None]})
    opt.step()
    m.freeze()
    for _ in range(4):
        opt.step()
    assert opt.state["s.w"]["step"] == 1 and opt.steps == 5
    m.unfreeze()
    set_grads(m, {"s.w": G2[None]})
    opt.step()
    # identical to two consecutive steps: bias correction uses the parameter's own count (2)
    exp1 = T0 - lr * G1 / (np.abs(G1) + eps)
    m2, v2 = 0.09 * G1 + 0.1 * G2, 0.000999 * G1 ** 2 + 0.001 * G2 ** 2
    exp2 = exp1 - lr * (m2 / 0.19) / (np.sqrt(v2 / 0.001999) + eps)
    np.testing.assert_allclose(m["s"].params["w"][0], exp2, rtol=1e-13)
    assert opt.state["s.w"]["step"] == 2


def test_parameter_first_trained_later_starts_fresh():
    m = tiny()
    m.freeze("a")
    opt = Adam(m, 0.01)
    for g in grad_sequence(m, 3):
        set_grads(m, g)
        opt.step()
    assert set(opt.state) == {"b.w", "b.b"}
    m.unfreeze("a")
    set_grads(m, grad_sequence(m, 1)[0])
    opt.step()
    assert opt.state["a.w"]["step"] == 1 and opt.state["b.w"]["step"] == 4


# -- dtype, gradients untouched, state_dict ------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ALL_CONFIGS))
def test_float32_stays_float32_and_tracks_float64(name):
    m32, m64 = tiny(np.float32), tiny(np.float64)
    o32, o64 = make_optimizer(name, m32, **ALL_CONFIGS[name]), make_optimizer(name, m64, **ALL_CONFIGS[name])
    ids = {p.name: id(p.value) for p in m32.parameters()}
    for g in grad_sequence(m64, 5):
        set_grads(m32, {k: v.astype(np.float32) for k, v in g.items()})
        set_grads(m64, g)
        o32.step()
        o64.step()
    for p in m32.parameters():
        assert p.value.dtype == np.float32 and id(p.value) == ids[p.name], p.name  # in place
        np.testing.assert_allclose(p.value, m64[p.layer.name].params[p.key], rtol=1e-4, atol=1e-5)
    for name_, st_ in o32.state.items():
        for k, v in st_.items():
            if isinstance(v, np.ndarray):
                assert v.dtype == np.float32, (name_, k)


@pytest.mark.parametrize("name", sorted(ALL_CONFIGS))
def test_slicewise_update_equals_the_whole_array_update(name, monkeypatch):
    """A parameter larger than a slice (and one not contiguous, updated whole) ends bit-identical
    to the update computed on whole arrays, and the scratch arrays never exceed one slice."""
    from nptl import optim

    units = 2 * optim.SLICE // 5 + 7                      # w: 5·units > 2 slices, the last one partial

    def build():
        m = nptl.Sequential([Dense(units, name="big")], input_shape=(5,), dtype=np.float32)
        m["big"].params["b"][...] = np.linspace(-1, 1, m["big"].units, dtype=np.float32)
        return m

    grads = [{k: v.astype(np.float32) for k, v in g.items()} for g in grad_sequence(build(), 3)]
    sliced, whole = build(), build()
    o_sliced = make_optimizer(name, sliced, **ALL_CONFIGS[name])
    o_whole = make_optimizer(name, whole, **ALL_CONFIGS[name])
    for g in grads:
        set_grads(sliced, g)
        o_sliced.step()
    assert sliced["big"].params["w"].size > 2 * optim.SLICE
    assert all(a.size == optim.SLICE for work in o_sliced._work.values() for a in work)
    monkeypatch.setattr(optim, "SLICE", whole["big"].params["w"].size)      # one slice: the whole array
    for g in grads:
        set_grads(whole, g)
        o_whole.step()
    for p in sliced.parameters():
        np.testing.assert_array_equal(p.value, whole[p.layer.name].params[p.key], err_msg=p.name)

    strided = build()                                     # a transposed view: not contiguous
    layer = strided["big"]
    layer.params["w"] = np.ascontiguousarray(layer.params["w"].T).T
    layer.grads["w"] = np.ascontiguousarray(layer.grads["w"].T).T
    o_strided = make_optimizer(name, strided, **ALL_CONFIGS[name])
    for g in grads:
        set_grads(strided, g)
        o_strided.step()
    for p in strided.parameters():
        np.testing.assert_array_equal(p.value, whole[p.layer.name].params[p.key], err_msg=p.name)


@pytest.mark.parametrize("name", sorted(ALL_CONFIGS))
def test_step_never_modifies_gradients(name):
    m = tiny()
    opt = make_optimizer(name, m, **ALL_CONFIGS[name])
    for g in grad_sequence(m, 3):
        set_grads(m, g)
        opt.step()
        for p in m.parameters():
            assert np.array_equal(p.grad, g[p.name]), p.name


def _plain(obj):
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in obj.items())
    if isinstance(obj, list):
        return all(_plain(v) for v in obj)
    return isinstance(obj, (np.ndarray, bool, int, float, str))


@pytest.mark.parametrize("name", sorted(ALL_CONFIGS))
def test_state_dict_round_trip(name):
    kw = ALL_CONFIGS[name]
    m = tiny()
    opt = make_optimizer(name, m, **kw)
    grads = grad_sequence(m, 5)
    m.freeze("a")
    for g in grads[:3]:
        set_grads(m, g)
        opt.step()
    opt.lr = kw["lr"] / 2
    sd = opt.state_dict()
    assert _plain(sd), sd
    m2 = copy.deepcopy(m)
    opt2 = make_optimizer(name, m2, lr=1.0)  # different settings: load restores them
    opt2.load_state_dict(copy.deepcopy(sd))
    assert opt2.lr == opt.lr and opt2.steps == 3 and repr(opt2) == repr(opt)
    if name == "sgd":
        assert sd["state"] == {}  # plain SGD keeps no state
    else:
        for v in sd["state"]["b.w"].values():  # state_dict returns copies: this must not matter
            if isinstance(v, np.ndarray):
                v += 1
    m.unfreeze("a")
    m2.unfreeze("a")
    for g in grads[3:]:
        for mm, oo in ((m, opt), (m2, opt2)):
            set_grads(mm, g)
            oo.step()
    for p in m.parameters():
        assert np.array_equal(p.value, m2[p.layer.name].params[p.key]), p.name


def test_load_state_dict_rejects_other_optimizer():
    m = tiny()
    with pytest.raises(ValueError, match="state dict is for optimizer 'SGD'"):
        Adam(m).load_state_dict(SGD(m, 0.1).state_dict())


def test_state_follows_parameter_dtype_after_astype():
    m = tiny(np.float32)
    opt = Adam(m, 0.01)
    for g in grad_sequence(m, 2):
        set_grads(m, g)
        opt.step()
    m.astype(np.float64)
    set_grads(m, grad_sequence(m, 1)[0])
    opt.step()
    assert opt.state["a.w"]["m"].dtype == np.float64 and m["a"].params["w"].dtype == np.float64


# -- schedules ------------------------------------------------------------------------------------------
def test_step_decay_values():
    opt = SGD(tiny(), 0.8)
    sched = StepDecay(opt, step_size=2, gamma=0.5)
    assert sched.lr == 0.8
    seen = [sched.step() for _ in range(6)]
    assert seen == [0.8, 0.4, 0.4, 0.2, 0.2, 0.1]
    assert opt.lr == sched.lr == 0.1
    sd = sched.state_dict()
    opt2 = SGD(tiny(), 0.8)
    s2 = StepDecay(opt2, step_size=2, gamma=0.5)
    s2.load_state_dict(sd)
    assert opt2.lr == 0.1 and s2.step() == 0.1 and s2.step() == 0.05


def test_exponential_decay_values():
    opt = Adam(tiny(), 1.0)
    sched = ExponentialDecay(opt, gamma=0.5)
    assert [sched.step() for _ in range(3)] == [0.5, 0.25, 0.125]


def test_schedule_drives_the_update():
    m = scalar_model(T0)
    opt = SGD(m, 0.1)
    sched = StepDecay(opt, step_size=1, gamma=0.1)
    for _ in range(2):
        set_grads(m, {"s.w": G1[None]})
        opt.step()
        sched.step()
    np.testing.assert_allclose(m["s"].params["w"][0], T0 - 0.1 * G1 - 0.01 * G1, atol=1e-15)


# -- factory and validation -----------------------------------------------------------------------------
def test_make_optimizer():
    m = tiny()
    assert type(make_optimizer("sgd", m)) is SGD
    mo = make_optimizer("Momentum", m, lr=0.1)
    assert mo.momentum == 0.9 and not mo.nesterov
    ne = make_optimizer("nesterov", m, momentum=0.5)
    assert ne.nesterov and ne.momentum == 0.5
    ad = make_optimizer("adam", m)
    assert isinstance(ad, Adam) and not ad.decoupled and ad.lr == 1e-3 and ad.weight_decay == 0
    aw = make_optimizer("adamw", m)
    assert type(aw) is AdamW and isinstance(aw, Adam) and aw.decoupled and aw.weight_decay == 0.01
    sd = aw.state_dict()
    assert sd["optimizer"] == "AdamW" and "decoupled" not in sd["hyperparameters"]
    AdamW(m, weight_decay=0.5).load_state_dict(sd)
    with pytest.raises(ValueError, match="state dict is for optimizer 'AdamW'"):
        Adam(m).load_state_dict(sd)
    assert all(isinstance(make_optimizer(n, m), Optimizer) for n in ("sgd", "momentum", "nesterov", "adam", "adamw"))
    with pytest.raises(ValueError, match=r"unknown optimizer 'rmsprop'; choose from \['adam', 'adamw'"):
        make_optimizer("rmsprop", m)


BAD = [
    (lambda m: SGD(m, 0), r"SGD: 'lr' must be > 0, got 0"),
    (lambda m: SGD(m, -0.1), r"SGD: 'lr' must be > 0"),
    (lambda m: SGD(m, float("nan")), r"SGD: 'lr' must be finite"),
    (lambda m: SGD(m, 0.1, momentum=1.0), r"SGD: 'momentum' must be in \[0, 1\), got 1.0"),
    (lambda m: SGD(m, 0.1, momentum=-0.1), r"SGD: 'momentum' must be in \[0, 1\)"),
    (lambda m: SGD(m, 0.1, nesterov=True), r"SGD: 'nesterov' requires 'momentum' > 0"),
    (lambda m: SGD(m, 0.1, weight_decay=-1), r"SGD: 'weight_decay' must be >= 0"),
    (lambda m: SGD(m, 0.1, l1=-1), r"SGD: 'l1' must be >= 0"),
    (lambda m: SGD(m, 0.1, l2=-1), r"SGD: 'l2' must be >= 0"),
    (lambda m: Adam(m, 0), r"Adam: 'lr' must be > 0"),
    (lambda m: Adam(m, betas=(1.0, 0.9)), r"Adam: 'betas\[0\]' must be in \[0, 1\), got 1.0"),
    (lambda m: Adam(m, betas=(0.9, -0.5)), r"Adam: 'betas\[1\]' must be in \[0, 1\)"),
    (lambda m: Adam(m, betas=0.9), r"Adam: 'betas' must be a pair"),
    (lambda m: Adam(m, eps=-1e-8), r"Adam: 'eps' must be >= 0"),
    (lambda m: Adam(m, l2=-1), r"Adam: 'l2' must be >= 0"),
    (lambda m: AdamW(m, weight_decay=-0.1), r"AdamW: 'weight_decay' must be >= 0"),
    (lambda m: AdamW(m, lr=-1), r"AdamW: 'lr' must be > 0"),
    (lambda m: make_optimizer("nesterov", m, momentum=0.0), r"SGD: 'nesterov' requires 'momentum' > 0"),
    (lambda m: StepDecay(SGD(m, 0.1), step_size=0), r"StepDecay: 'step_size' must be a positive integer"),
    (lambda m: StepDecay(SGD(m, 0.1), step_size=2, gamma=0), r"StepDecay: 'gamma' must be > 0"),
    (lambda m: ExponentialDecay(SGD(m, 0.1), gamma=-1), r"ExponentialDecay: 'gamma' must be > 0"),
]


@pytest.mark.parametrize("make,match", BAD, ids=[b[1][:40] for b in BAD])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make(tiny())


def test_bad_lr_assignment_and_types():
    opt = Adam(tiny())
    with pytest.raises(ValueError, match=r"Adam: 'lr' must be > 0, got 0"):
        opt.lr = 0
    assert opt.lr == 1e-3
    with pytest.raises(TypeError, match=r"SGD: 'lr' must be a real number"):
        SGD(tiny(), "0.1")
    with pytest.raises(TypeError, match="trainable_parameters"):
        SGD(object(), 0.1)


# -- end to end -----------------------------------------------------------------------------------------
def _separable(n=36, seed=0):
    """Class k has a bright 6×6 square in a different place (top-left / centre / bottom-right)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = 0.1 * rng.standard_normal((n, 1, 18, 18)).astype(np.float32)
    for i, k in enumerate(y):
        r = 6 * k
        x[i, 0, r:r + 6, r:r + 6] += 1.0
    return x, y


def test_adam_reduces_loss_on_seed_cnn():
    # (1, 12, 12) is too small for seed_cnn's three valid 3x3 convolutions; 18x18 is the minimum
    model = nptl.models.seed_cnn(input_shape=(1, 18, 18), num_classes=3, seed=0)
    x, y = _separable()
    opt = Adam(model, 1e-3)
    losses = []
    for _ in range(15):
        model.zero_grad()
        loss, d = ops.cross_entropy(model.forward(x, training=True), y)
        model.backward(d)
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], losses
    assert np.argmax(model.forward(x), axis=1).tolist() == y.tolist()
