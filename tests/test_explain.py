"""explain: every trace's terms are exactly the formula's index set, and they add up to the fast
kernel's value (and the reference loop's), forward and backward, on generated small shapes.

The expected index sets are enumerated here by brute force over all index combinations, filtered
by the formula's condition — independently of how the trace functions enumerate them.
"""
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from nptl import explain, ops
from nptl.kernels import reference as ref
from tests.strategies import conv_geometries, pool_geometries, seeds


def _close(a, b):
    assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-10), (a, b)


def _data(rng, shape, integers):
    return explain.small_integers(rng, shape) if integers else rng.standard_normal(shape)


def _any_index(draw, shape):
    return tuple(draw(st.integers(0, s - 1)) for s in shape)


def _sums(trace):
    """The trace adds its own terms, agrees with the fast kernel, and says so."""
    assert trace.combine == "sum"
    assert trace.matches
    _close(trace.total, trace.kernel_value)


# -- conv2d ------------------------------------------------------------------------------------
@given(g=conv_geometries(max_batch=2, max_channels=3, max_size=7), seed=seeds, integers=st.booleans(), data=st.data())
def test_conv2d_forward_terms_are_the_formula(g, seed, integers, data):
    rng = np.random.default_rng(seed)
    x, w, b = _data(rng, g.x_shape, integers), _data(rng, g.w_shape, integers), _data(rng, (g.F,), integers)
    n, f, i, j = at = _any_index(data.draw, g.y_shape)
    t = explain.conv2d(x, w, b, g.stride, g.padding, at=at)
    s, P = g.stride, g.padding
    want_x = {(n, c, i * s + p - P, j * s + q - P) for c in range(g.C) for p in range(g.KH) for q in range(g.KW)}
    assert set(t.indices("x")) == want_x and len(t.indices("x")) == len(want_x)
    assert sorted(t.indices("w")) == sorted((f, c, p, q) for c in range(g.C) for p in range(g.KH) for q in range(g.KW))
    assert t.indices("b") == [(f,)]
    for term in t.terms:
        for fc in term.factors:
            if fc.name == "x":
                outside = not (0 <= fc.index[2] < g.H and 0 <= fc.index[3] < g.W)
                assert fc.padding == outside
                assert fc.value == (0.0 if outside else x[fc.index])
    _close(t.total, math.fsum(term.value for term in t.terms))
    _sums(t)
    _close(t.total, ref.conv2d(x, w, b, s, P)[at])


@given(g=conv_geometries(max_batch=2, max_channels=3, max_size=7), seed=seeds, integers=st.booleans(), data=st.data())
def test_conv2d_backward_terms_are_the_formula(g, seed, integers, data):
    rng = np.random.default_rng(seed)
    x, w, dy = _data(rng, g.x_shape, integers), _data(rng, g.w_shape, integers), _data(rng, g.y_shape, integers)
    dx_at, dw_at, db_at = (_any_index(data.draw, s) for s in (g.x_shape, g.w_shape, (g.F,)))
    tdx, tdw, tdb = explain.conv2d_backward(dy, x, w, g.stride, g.padding, dx_at, dw_at, db_at)
    s, P = g.stride, g.padding
    _, _, Ho, Wo = g.y_shape
    n, c, h, v = dx_at
    want = {((n, f, i, j), (f, c, p, q))
            for f, i, j, p, q in itertools.product(range(g.F), range(Ho), range(Wo), range(g.KH), range(g.KW))
            if i * s + p == h + P and j * s + q == v + P}
    assert {tuple(fc.index for fc in term.factors) for term in tdx.terms} == want and len(tdx.terms) == len(want)
    f, c, p, q = dw_at
    want = {((m, f, i, j), (m, c, i * s + p - P, j * s + q - P))
            for m, i, j in itertools.product(range(g.N), range(Ho), range(Wo))}
    assert {tuple(fc.index for fc in term.factors) for term in tdw.terms} == want and len(tdw.terms) == len(want)
    assert sorted(tdb.indices("dy")) == sorted(itertools.product(range(g.N), [db_at[0]], range(Ho), range(Wo)))
    slow = ref.conv2d_backward(dy, x, w, s, P)
    for trace, grad, at in zip((tdx, tdw, tdb), slow, (dx_at, dw_at, db_at)):
        _sums(trace)
        _close(trace.total, grad[at])


@given(H=st.integers(1, 7), W=st.integers(1, 7), data=st.data(), seed=seeds)
def test_textbook_convolution_terms(H, W, data, seed):
    KH, KW = data.draw(st.integers(1, H)), data.draw(st.integers(1, W))
    rng = np.random.default_rng(seed)
    x, k = explain.small_integers(rng, (H, W)), explain.small_integers(rng, (KH, KW))
    a, b = data.draw(st.integers(0, H - KH)), data.draw(st.integers(0, W - KW))
    t = explain.conv2d_true(x, k, at=(a, b))
    i, j = a + KH, b + KW  # 1-based
    assert sorted(tuple(fc.index for fc in term.factors) for term in t.terms) == sorted(
        ((i - p + 1, j - q + 1), (p, q)) for p in range(1, KH + 1) for q in range(1, KW + 1))
    _sums(t)
    _close(t.total, ref.conv2d_true(x, k)[a, b])


# -- pooling -----------------------------------------------------------------------------------
def _windows(g, n, c):
    for i, j in itertools.product(range(g.y_shape[2]), range(g.y_shape[3])):
        yield (i, j), [(n, c, i * g.stride + p, j * g.stride + q) for p in range(g.size) for q in range(g.size)]


@given(g=pool_geometries(max_hw=8), seed=seeds, integers=st.booleans(), data=st.data())
def test_max_pool_trace_and_routing(g, seed, integers, data):
    rng = np.random.default_rng(seed)
    x = _data(rng, g.x_shape, integers)  # small integers: ties are common, the first maximum must win
    n, c, i, j = at = _any_index(data.draw, g.y_shape)
    t = explain.max_pool2d(x, g.size, g.stride, at=at)
    window = dict(_windows(g, n, c))[(i, j)]
    assert t.indices("x") == window and t.combine == "max"
    assert t.matches and t.total == max(x[k] for k in window)
    dy = _data(rng, g.y_shape, integers)
    dx_at = _any_index(data.draw, g.x_shape)
    tb = explain.max_pool2d_backward(dy, x, g.size, g.stride, at=dx_at)
    won = [(dx_at[0], dx_at[1]) + ij for ij, win in _windows(g, dx_at[0], dx_at[1])
           if win[int(np.argmax([x[k] for k in win]))] == dx_at]
    assert sorted(tb.indices("dy")) == sorted(won)
    _sums(tb)
    _close(tb.total, ref.max_pool2d_backward(dy, x, g.size, g.stride)[dx_at])


@given(g=pool_geometries(max_hw=8), seed=seeds, data=st.data())
def test_avg_pool_trace_and_spreading(g, seed, data):
    rng = np.random.default_rng(seed)
    x, dy = rng.standard_normal(g.x_shape), rng.standard_normal(g.y_shape)
    n, c, i, j = at = _any_index(data.draw, g.y_shape)
    t = explain.avg_pool2d(x, g.size, g.stride, at=at)
    assert t.indices("x") == dict(_windows(g, n, c))[(i, j)]
    _close(t.total, math.fsum(term.value for term in t.terms) / g.size ** 2)
    assert t.matches
    dx_at = _any_index(data.draw, g.x_shape)
    tb = explain.avg_pool2d_backward(dy, x, g.size, g.stride, at=dx_at)
    covering = [dx_at[:2] + ij for ij, win in _windows(g, *dx_at[:2]) if dx_at in win]
    assert sorted(tb.indices("dy")) == sorted(covering)
    assert tb.matches
    _close(tb.total, ref.avg_pool2d_backward(dy, x, g.size, g.stride)[dx_at])


# -- dense -------------------------------------------------------------------------------------
@given(N=st.integers(1, 4), I=st.integers(1, 6), O=st.integers(1, 5), seed=seeds, integers=st.booleans(), data=st.data())
def test_dense_traces(N, I, O, seed, integers, data):
    rng = np.random.default_rng(seed)
    x, w, b, dy = (_data(rng, s, integers) for s in ((N, I), (I, O), (O,), (N, O)))
    n, o = at = _any_index(data.draw, (N, O))
    t = explain.dense(x, w, b, at=at)
    assert t.indices("x") == [(n, i) for i in range(I)] and t.indices("w") == [(i, o) for i in range(I)]
    _sums(t)
    _close(t.total, ref.dense(x, w, b)[at])
    ats = [_any_index(data.draw, s) for s in ((N, I), (I, O), (O,))]
    traces = explain.dense_backward(dy, x, w, *ats)
    (n, i), (i2, o2), (o3,) = ats
    assert sorted(traces[0].indices("dy")) == [(n, o) for o in range(O)]
    assert sorted(traces[1].indices("x")) == [(m, i2) for m in range(N)]
    assert sorted(traces[2].indices("dy")) == [(m, o3) for m in range(N)]
    for trace, grad, at in zip(traces, ref.dense_backward(dy, x, w), ats):
        _sums(trace)
        _close(trace.total, grad[at])


# -- activations -------------------------------------------------------------------------------
shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


@given(shape=shapes, seed=seeds, data=st.data())
def test_activation_traces(shape, seed, data):
    rng = np.random.default_rng(seed)
    x, dy = 3 * rng.standard_normal(shape), rng.standard_normal(shape)
    x.reshape(-1)[0] = 0.0  # the ReLU kink: both sides say 0 there
    at = _any_index(data.draw, shape)
    for fwd, want in ((explain.relu, ref.relu(x)), (explain.sigmoid, ref.sigmoid(x)), (explain.softmax, ref.softmax(x))):
        t = fwd(x, at=at)
        assert t.matches
        _close(t.total, want[at])
    assert explain.relu(x, at=at).indices("x") == [at]
    sm = explain.softmax(x, at=at)
    assert sm.indices("x") == [at[:-1] + (k,) for k in range(shape[-1])]  # the whole row
    y = ref.softmax(x)
    for bwd, want in ((explain.relu_backward, dy * (x > 0)), (explain.sigmoid_backward, dy * ref.sigmoid(x) * (1 - ref.sigmoid(x))),
                      (explain.softmax_backward, y * (dy - (dy * y).sum(axis=-1, keepdims=True)))):
        t = bwd(dy, x, at=at)
        assert t.matches
        _close(t.total, want[at])
    assert sorted(explain.softmax_backward(dy, x, at=at).indices("dy")) == [at[:-1] + (k,) for k in range(shape[-1])]


# -- losses ------------------------------------------------------------------------------------
@given(N=st.integers(1, 4), K=st.integers(1, 5), seed=seeds, data=st.data())
def test_loss_traces(N, K, seed, data):
    rng = np.random.default_rng(seed)
    z = 3 * rng.standard_normal((N, K))
    labels = rng.integers(0, K, N)
    t = explain.cross_entropy(z, labels)
    assert sorted(t.indices("z")) == [(n, int(labels[n])) for n in range(N)]
    assert t.matches
    _close(t.total, float(ref.cross_entropy(z, labels)[0]))
    at = _any_index(data.draw, (N, K))
    tb = explain.cross_entropy_backward(z, labels, at=at)
    assert tb.indices("z") == [(at[0], k) for k in range(K)]
    assert tb.matches
    _close(tb.total, ref.cross_entropy(z, labels)[1][at])

    targets = rng.integers(0, 2, (N, K)).astype(float)
    t = explain.binary_cross_entropy(z, targets)
    assert sorted(t.indices("z")) == sorted(itertools.product(range(N), range(K)))
    assert t.matches
    _close(t.total, float(ref.binary_cross_entropy(z, targets)[0]))
    tb = explain.binary_cross_entropy_backward(z, targets, at=at)
    assert tb.matches
    _close(tb.total, ref.binary_cross_entropy(z, targets)[1][at])

    t = explain.mse(z, targets)
    assert sorted(t.indices("p")) == sorted(itertools.product(range(N), range(K)))
    assert t.matches
    _close(t.total, float(ref.mse(z, targets)[0]))
    tb = explain.mse_backward(z, targets, at=at)
    assert tb.matches
    _close(tb.total, ref.mse(z, targets)[1][at])


# -- batch normalisation -----------------------------------------------------------------------
@given(shape=st.one_of(st.tuples(st.integers(2, 5), st.integers(1, 3)),
                       st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.integers(2, 3))),
       seed=seeds, running=st.booleans(), data=st.data())
def test_batch_norm_traces(shape, seed, running, data):
    rng = np.random.default_rng(seed)
    C = shape[1]
    x, dy = 2 + 3 * rng.standard_normal(shape), rng.standard_normal(shape)
    gamma, beta = rng.standard_normal(C) + 1.5, rng.standard_normal(C)
    mean, var = (rng.standard_normal(C), rng.random(C) + 0.5) if running else (None, None)
    at = _any_index(data.draw, shape)
    channel = sorted(k for k in itertools.product(*map(range, shape)) if k[1] == at[1])
    t = explain.batch_norm(x, gamma, beta, mean, var, at=at)
    assert sorted(t.indices("x")) == ([] if running else channel)     # the values μ_c averages
    assert t.matches
    _close(t.total, ref.batch_norm(x, gamma, beta, mean, var)[at])
    ats = [at, (data.draw(st.integers(0, C - 1)),), (data.draw(st.integers(0, C - 1)),)]
    tdx, tg, tb = explain.batch_norm_backward(dy, x, gamma, mean, var, 1e-5, *ats)
    # every output of the channel fed dx (through μ and σ²), or only its own in inference mode
    assert sorted(tdx.indices("dy")) == ([at] if running else channel)
    for trace, c in ((tg, ats[1][0]), (tb, ats[2][0])):
        assert sorted(trace.indices("dy")) == sorted(k for k in itertools.product(*map(range, shape)) if k[1] == c)
    for trace, grad, i in zip((tdx, tg, tb), ref.batch_norm_backward(dy, x, gamma, mean, var), ats):
        assert trace.matches
        _close(trace.total, grad[i])


# -- adaptive and global average pooling, dropout ---------------------------------------------
@given(N=st.integers(1, 2), C=st.integers(1, 2), H=st.integers(1, 7), W=st.integers(1, 7), data=st.data(), seed=seeds)
def test_adaptive_and_global_average_pooling_traces(N, C, H, W, data, seed):
    rng = np.random.default_rng(seed)
    Ho, Wo = data.draw(st.integers(1, H)), data.draw(st.integers(1, W))
    x, dy = rng.standard_normal((N, C, H, W)), rng.standard_normal((N, C, Ho, Wo))
    n, c, i, j = at = _any_index(data.draw, (N, C, Ho, Wo))
    def meets(i, size, out):  # the pixels [h, h+1) that meet the interval [i·size/out, (i+1)·size/out)
        return [h for h in range(size) if h * out < (i + 1) * size and (h + 1) * out > i * size]

    t = explain.adaptive_avg_pool2d(x, (Ho, Wo), at=at)
    assert t.indices("x") == [(n, c, h, w) for h in meets(i, H, Ho) for w in meets(j, W, Wo)]
    assert t.matches
    _close(t.total, ref.adaptive_avg_pool2d(x, (Ho, Wo))[at])
    dx_at = _any_index(data.draw, x.shape)
    tb = explain.adaptive_avg_pool2d_backward(dy, x, (Ho, Wo), at=dx_at)
    containing = [(dx_at[0], dx_at[1], a, b) for a in range(Ho) for b in range(Wo)
                  if dx_at[2] in meets(a, H, Ho) and dx_at[3] in meets(b, W, Wo)]
    assert sorted(tb.indices("dy")) == containing and tb.matches
    _close(tb.total, ref.adaptive_avg_pool2d_backward(dy, x, (Ho, Wo))[dx_at])
    g = explain.global_avg_pool2d(x, at=(n, c))
    assert sorted(g.indices("x")) == sorted((n, c, h, w) for h in range(H) for w in range(W)) and g.matches
    _close(g.total, ref.global_avg_pool2d(x)[n, c])
    gb = explain.global_avg_pool2d_backward(dy[:, :, 0, 0], x, at=dx_at)
    assert gb.indices("dy") == [dx_at[:2]] and gb.matches
    _close(gb.total, ref.global_avg_pool2d_backward(dy[:, :, 0, 0], x)[dx_at])


@given(shape=shapes, rate=st.floats(0, 0.9), seed=seeds, data=st.data())
def test_dropout_traces(shape, rate, seed, data):
    rng = np.random.default_rng(seed)
    x, dy = rng.standard_normal(shape), rng.standard_normal(shape)
    mask = ref.dropout_mask(shape, rate, seed % 1000)
    at = _any_index(data.draw, shape)
    t = explain.dropout(x, mask, rate, at=at)
    assert t.indices("x") == [at] and t.indices("keep") == [at] and t.matches
    _close(t.total, ref.dropout(x, mask, rate)[at])
    tb = explain.dropout_backward(dy, mask, rate, at=at)
    assert tb.matches
    _close(tb.total, ref.dropout_backward(dy, mask, rate)[at])


# -- transposed convolution, upsampling --------------------------------------------------------
@given(N=st.integers(1, 2), C=st.integers(1, 2), F=st.integers(1, 2), H=st.integers(1, 4), W=st.integers(1, 4),
       KH=st.integers(1, 3), KW=st.integers(1, 3), stride=st.integers(1, 3), data=st.data(), seed=seeds)
def test_conv_transpose2d_traces(N, C, F, H, W, KH, KW, stride, data, seed):
    padding = data.draw(st.integers(0, (min((H - 1) * stride + KH, (W - 1) * stride + KW) - 1) // 2))
    op = data.draw(st.integers(0, stride - 1))
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal((N, C, H, W)), rng.standard_normal((C, F, KH, KW)), rng.standard_normal(F)
    y_ref = ref.conv_transpose2d(x, w, b, stride, padding, op)
    n, f, h, v = at = _any_index(data.draw, y_ref.shape)
    t = explain.conv_transpose2d(x, w, b, stride, padding, op, at=at)
    want = {((n, c, i, j), (c, f, p, q)) for c, i, j, p, q in
            itertools.product(range(C), range(H), range(W), range(KH), range(KW))
            if i * stride + p - padding == h and j * stride + q - padding == v}
    assert {tuple(fc.index for fc in term.factors) for term in t.terms[1:]} == want and t.indices("b") == [(f,)]
    assert t.matches
    _close(t.total, y_ref[at])
    dy = rng.standard_normal(y_ref.shape)
    ats = [_any_index(data.draw, s) for s in (x.shape, w.shape, (F,))]
    traces = explain.conv_transpose2d_backward(dy, x, w, stride, padding, op, *ats)
    (n, c, i, j), (c2, f2, p2, q2), (f3,) = ats
    Ho, Wo = y_ref.shape[2:]
    # every output the input fed (inside y) and every product the weight made
    assert {fc.index for term in traces[0].terms for fc in term.factors if fc.name == "dy" and not fc.padding} == {
        (n, g, i * stride + p - padding, j * stride + q - padding) for g, p, q in
        itertools.product(range(F), range(KH), range(KW))
        if 0 <= i * stride + p - padding < Ho and 0 <= j * stride + q - padding < Wo}
    assert sorted(traces[1].indices("x")) == sorted(itertools.product(range(N), [c2], range(H), range(W)))
    assert len(traces[2].terms) == N * Ho * Wo
    for trace, grad, a in zip(traces, ref.conv_transpose2d_backward(dy, x, w, stride, padding), ats):
        assert trace.matches
        _close(trace.total, grad[a])


@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 4), st.integers(1, 4)),
       sh=st.integers(1, 3), sw=st.integers(1, 3), seed=seeds, data=st.data())
def test_upsample2d_traces(shape, sh, sw, seed, data):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    y = ref.upsample2d(x, (sh, sw))
    at = _any_index(data.draw, y.shape)
    t = explain.upsample2d(x, (sh, sw), at=at)
    assert t.indices("x") == [(at[0], at[1], at[2] // sh, at[3] // sw)] and t.matches
    dy = rng.standard_normal(y.shape)
    dx_at = _any_index(data.draw, shape)
    tb = explain.upsample2d_backward(dy, x, (sh, sw), at=dx_at)
    copies = [k for k in itertools.product(*map(range, y.shape)) if k[:2] == dx_at[:2]
              and (k[2] // sh, k[3] // sw) == dx_at[2:]]
    assert sorted(tb.indices("dy")) == copies and tb.matches
    _close(tb.total, ref.upsample2d_backward(dy, x, (sh, sw))[dx_at])


# -- the printed trace -------------------------------------------------------------------------
def test_issue_example_prints_every_term_with_padding_as_zero():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    w = np.arange(9.0).reshape(1, 1, 3, 3) - 4
    t = explain.conv2d(x, w, np.array([3.0]), stride=1, padding=1, at=(0, 0, 0, 0))
    text = str(t)
    assert "y[0,0,0,0] = b[0] + x[0,0,-1,-1]·w[0,0,0,0] + x[0,0,-1,0]·w[0,0,0,1]" in text
    assert "= 3 + 0·(-4) + 0·(-3)" in text            # padded positions read 0
    want = 3 + sum(x[0, 0, h, v] * w[0, 0, h + 1, v + 1] for h in (0, 1) for v in (0, 1))
    assert f"= {int(want)}\n" in text and "matches" in text
    assert "5 term(s) read the zero padding" in text
    assert "output:" in text and "y  shape (1, 1, 4, 4)" in text


def test_formats():
    t = explain.conv2d_backward(np.ones((1, 2, 2, 2)), np.ones((1, 1, 3, 3)), np.ones((2, 1, 2, 2)))
    md = explain.render(t, "markdown", title="t")
    assert md.startswith("## t") and "### conv2d backward: `dw[1,0,1,1]`" in md
    import json

    d = json.loads(explain.render(t, "json"))
    assert [tr["target"] for tr in d["traces"]] == ["dx[0,0,1,1]", "dw[1,0,1,1]", "db[1]"]
    assert d["traces"][2]["total"] == 4 and d["traces"][2]["matches"]
    assert d["inputs"]["x"] == np.ones((1, 1, 3, 3)).tolist()


@pytest.mark.parametrize("call, message", [
    (lambda: explain.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), at=(0, 0, 2, 0)),
     "at=0,0,2,0 is outside the output y of shape (1, 1, 2, 2)"),
    (lambda: explain.conv2d(np.ones((1, 1, 2, 2)), np.ones((1, 1, 3, 3))), "larger than the padded input"),
    (lambda: explain.dense(np.ones((2, 3)), np.ones((4, 2)), np.ones(2)), "x has 3 features"),
    (lambda: explain.relu(np.ones((0, 3))), "it is empty"),
    (lambda: explain.max_pool2d(np.ones((1, 1, 4, 4)), 2, at=(0, 0, 1)), "must be 4 integer indices"),
])
def test_bad_arguments_name_what_is_wrong(call, message):
    with pytest.raises(explain.ExplainError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_every_registered_op_has_a_trace_under_its_formula_labels():
    """A new op in nptl.registry cannot skip its explain entry; the trace cites the same labels."""
    from nptl import registry

    registry.get("conv2d")  # the built-in entries are registered
    rng = np.random.default_rng(0)
    for name, op in registry.OPS.items():
        if name in explain.UNTRACED:
            assert name not in explain.EXPLAINERS
            continue
        assert name in explain.EXPLAINERS, (
            f"nptl.explain has no entry for the registered op {name!r}: add its trace functions and an "
            "Explainer to nptl.explain.EXPLAINERS (or, until then, the op and the reason to explain.UNTRACED)")
        ex = explain.EXPLAINERS[name]
        g = {"shape": ex.default_shape, "kernel": (2, 2), "filters": 2, "units": 2, "stride": None, "padding": 0,
             "rate": 0.5, "output_size": (2, 2)}
        arrays = ex.inputs(g, rng)
        forward = ex.forward(arrays, g, None)
        assert forward.formula.startswith(f"({op.formulas[0]})"), (name, forward.formula)
        if ex.upstream:
            arrays[ex.upstream] = explain.small_integers(rng, ex.out_shape(arrays, g))
        for trace in ex.backward(arrays, g, [None, None, None]):
            label = trace.formula[1:trace.formula.index(")")]
            assert label in op.formulas and trace.matches, (name, trace.formula)


def test_docstring_examples_run():
    import doctest

    assert doctest.testmod(explain).failed == 0
