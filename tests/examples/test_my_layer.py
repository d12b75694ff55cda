"""Testing your own layer and op the way nptl tests its own: a file to copy.

Copy it next to your code, replace ``LeakyReLU`` / ``leaky_relu`` by yours, and run
``python -m pytest -q test_my_layer.py``.  It needs ``pip install "nptl[test]"`` (hypothesis);
``pip install "nptl[torch]"`` adds the optional torch comparison.

What the kit checks (``nptl.testing``):

- ``check_layer(layer, input_shape, reference=..., torch=...)``: the output shape the layer
  predicts (``output_shape``) equals the real one, the output keeps the layer's dtype, the
  output equals a plain reference function, the gradients w.r.t. the input and every parameter
  equal central differences in float64, a frozen layer computes no parameter gradient but the
  same ``dx``, and (optionally) torch autograd agrees.
- ``check_op(Op(...))``: an op's fast forward/backward equal its plain-loop reference on
  generated cases (float32 and float64), its gradients equal central differences.
"""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nptl.layers import Layer
from nptl.registry import Case, Op
from nptl.testing import check_layer, check_op


# -- the code under test: a layer with a parameter, and its op ------------------------------------
def leaky_relu(x, alpha):
    """(K1) ``y = x if x > 0 else α·x`` elementwise."""
    return np.where(x > 0, x, alpha * x)


def leaky_relu_backward(dy, x, alpha):
    """(K2) ``dx = dy · (1 if x > 0 else α)``;  (K3) ``dα = Σ dy · x · [x ≤ 0]``."""
    return np.where(x > 0, dy, alpha * dy), np.sum(dy * np.where(x > 0, 0, x)).reshape(1)


def leaky_relu_loops(x, alpha):
    """(K1) as a plain loop: the reference twin."""
    y = np.empty_like(x)
    for k, v in enumerate(x.reshape(-1)):
        y.reshape(-1)[k] = v if v > 0 else alpha[0] * v
    return y


def leaky_relu_backward_loops(dy, x, alpha):
    """(K2), (K3) as plain loops."""
    dx, dalpha = np.empty_like(dy), np.zeros(1, dy.dtype)
    for k, (g, v) in enumerate(zip(dy.reshape(-1), x.reshape(-1))):
        dx.reshape(-1)[k] = g if v > 0 else alpha[0] * g
        if not v > 0:
            dalpha[0] += g * v
    return dx, dalpha


class LeakyReLU(Layer):
    """A learnable negative slope ``alpha`` (one parameter), any input shape."""

    kind = "leaky"

    def __init__(self, alpha: float = 0.1, name=None):
        super().__init__(name)
        self.alpha0 = alpha
        self._x = None

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def _init_params(self, rng):
        self.params["alpha"] = np.full(1, self.alpha0, dtype=self.dtype)

    def forward(self, x, training=False):
        x = self._input(x, self.input_shape, "(N, ...)")
        if training:
            self._x = x
        return leaky_relu(x, self.params["alpha"]).astype(self.dtype)

    def backward(self, dy, input_grad=True):
        x = self._take_cache("_x")
        dx, dalpha = leaky_relu_backward(self._as_dtype(dy), x, self.params["alpha"])
        if self.trainable:
            self.grads["alpha"] += dalpha
        return dx if input_grad else None


# -- the tests ------------------------------------------------------------------------------------
shapes = st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple)


@settings(deadline=None, max_examples=20)
@given(shape=shapes, seed=st.integers(0, 1000))
def test_leaky_relu_layer(shape, seed):
    report = check_layer(LeakyReLU(0.2), shape, batch=3, seed=seed,
                         reference=lambda x, p: leaky_relu_loops(x, p["alpha"]))
    assert report.checks == ["output shape", "dtype", "reference", "gradients", "frozen"]


@st.composite
def leaky_cases(draw, dtype=np.float64, small=False):
    """Cases ``Case((x, alpha))`` away from the kink at 0 (central differences straddle it)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    x = rng.standard_normal(tuple(draw(shapes)))
    x[np.abs(x) < 1e-3] = 0.5
    return Case((x.astype(dtype), np.array([draw(st.floats(0.01, 0.5))], dtype)))


LEAKY = Op("leaky_relu", formulas=("K1", "K2", "K3"), forward=leaky_relu, backward=leaky_relu_backward,
           backward_args=("x", "alpha"), reference=(leaky_relu_loops, leaky_relu_backward_loops),
           kernels=(), arg_names=("x", "alpha"), cases="")


def test_leaky_relu_op():
    check_op(LEAKY, examples=20, strategy=leaky_cases)
