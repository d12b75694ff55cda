"""The op registry: for every op, its formula → its kernels → its twin → its checks → its benchmark.

One :class:`Op` entry per op of :mod:`nptl.ops` names the formula labels (in the docstrings of
:mod:`nptl.kernels.reference`), the reference (plain-loop) forward and backward, the fast
kernels, the ``ops`` forward and backward, which arguments are differentiable, the hypothesis
strategy of valid cases (:mod:`nptl.testing.strategies`), the benchmark family, the torch
function that serves as external oracle, and the fast-path branches of its kernels with a case
that reaches each.  ``tests/test_ops_contract.py`` runs every check on every entry (twin
equality, central differences, torch), and :func:`nptl.gradcheck` finds an op's backward here,
so an op cannot be added without its twin and its checks.

How to add an op
----------------
1. The formula: ``<op>(...)`` and ``<op>_backward(dy, ...)`` as plain loops in
   ``nptl/kernels/reference.py``, the docstring stating shapes, the forward formula and the
   derived gradients with labels ``(X1)``, ``(X2)`` … that the loop body points to.
2. The fast twins ``<op>_forward`` / ``<op>_backward`` (``(dx, dw, db)`` order) in a kernel
   module under ``nptl/kernels/``; their docstrings refer to the labels.
3. ``ops.<op>`` / ``ops.<op>_backward`` in ``nptl/ops.py``: check arguments, pick the dtype,
   call the kernels; Parameters/Returns with shapes and a doctest.
4. A strategy ``<op>_cases(dtype=np.float64, small=False)`` drawing :class:`Case` objects in
   ``nptl/testing/strategies.py`` (``small``: sizes a float64 central-difference check over
   every entry can afford).
5. An entry in :func:`_register_builtin_ops` below (where ``ops`` and ``ref`` are imported), e.g.::

       register(Op(
           "relu", formulas=("R1", "R2"),
           forward=ops.relu, backward=ops.relu_backward, backward_args=("x",),
           reference=(ref.relu, ref.relu_backward),
           kernels=("activations.relu_forward", "activations.relu_backward"),
           arg_names=("x",), cases="relu_cases", benchmark=None,
           torch=lambda F, x: F.relu(x)))

   Kernel names must start with ``<op>_``; list the kernels' fast-path branches as
   :class:`Branch` entries (condition, a case that takes it, a predicate) so each is tested.
6. Its trace for learners: ``nptl.explain.<op>`` / ``<op>_backward`` enumerating the formula's
   terms and an entry in ``nptl.explain.EXPLAINERS`` (``tests/test_explain.py`` requires one
   for every op registered here that is not listed, with its reason, in ``explain.UNTRACED``).

That's all: ``python -m pytest tests/test_ops_contract.py tests/test_torch_ops.py`` now checks
the new op against its reference twin (float32 and float64), against central differences in
float64 and against ``torch.nn.functional``, and reaches each listed branch.  An op whose
forward depends on more than its arguments (a random mask, batch statistics) takes them as
arguments or keyword parameters, so that every call is a pure function of ``Case``.

Calling conventions (what the generic checks rely on): ``forward(*case.args, **case.params)``
returns one array (``kind="loss"``: ``(loss, d loss/d first argument)``);
``backward(dy, *saved, **case.params)`` with ``saved`` the entries of ``backward_args`` (names
of forward arguments, or ``"y"`` for the forward output) returns the gradients of the
``grad_args`` — a tuple in that order when there are several (``(dx, dw, db)``), the array
itself when there is one.  The reference functions have the same signatures.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

__all__ = ["Case", "Branch", "Op", "register", "OPS", "get", "find"]


@dataclass
class Case:
    """Arguments of one call: ``args`` positional (arrays, ``None`` for an omitted optional one,
    integer labels for a loss) and ``params`` keyword (stride, size, ...)."""

    args: tuple
    params: dict = field(default_factory=dict)

    def astype(self, dtype) -> "Case":
        """The float arrays in ``dtype`` (others unchanged)."""
        conv = lambda a: a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
        return Case(tuple(conv(a) for a in self.args), dict(self.params))


@dataclass(frozen=True)
class Branch:
    """A fast path of a kernel: ``condition`` as the kernel states it, ``shapes`` and ``params``
    of a case that takes it, and ``when(shapes, params)`` deciding whether a case takes it
    (checked against ``shapes`` so the listed case cannot drift off its branch)."""

    name: str
    condition: str
    shapes: tuple
    params: dict
    when: Callable[[tuple, dict], bool]

    def case(self, dtype=np.float64, seed: int = 0) -> Case:
        rng = np.random.default_rng(seed)
        args = tuple(None if s is None else rng.standard_normal(s).astype(dtype) for s in self.shapes)
        return Case(args, dict(self.params))


@dataclass(frozen=True)
class Op:
    """One op's contract.  See the module docstring for the calling conventions."""

    name: str
    formulas: tuple[str, ...]
    forward: Callable
    reference: tuple[Callable, Callable | None]
    kernels: tuple[str, ...]
    arg_names: tuple[str, ...]
    cases: str
    backward: Callable | None = None
    backward_args: tuple[str, ...] = ()
    grad_args: tuple[str, ...] | None = None
    kind: str = "op"
    benchmark: str | None = None
    torch: Callable | None = None
    branches: tuple[Branch, ...] = ()

    @property
    def differentiable(self) -> tuple[str, ...]:
        """Names of the arguments gradients are computed for (default: every argument)."""
        return self.arg_names if self.grad_args is None else self.grad_args

    def strategy(self, dtype=np.float64, small: bool = False):
        """The hypothesis strategy of valid :class:`Case` objects (needs the ``test`` extra)."""
        from .testing import strategies

        return getattr(strategies, self.cases)(dtype=dtype, small=small)

    def gradients(self, dy, case: Case, reference: bool = False) -> tuple:
        """Gradients of ``Σ dy ⊙ forward(case)`` w.r.t. :attr:`differentiable`, always a tuple,
        from the ``ops`` backward or (``reference=True``) the reference backward."""
        backward = self.reference[1] if reference else self.backward
        forward = self.reference[0] if reference else self.forward
        env = dict(zip(self.arg_names, case.args))
        if "y" in self.backward_args:
            env["y"] = forward(*case.args, **case.params)
        extra = case.args[len(self.arg_names):]  # hyperparameters given positionally
        grads = backward(dy, *(env[n] for n in self.backward_args), *extra, **case.params)
        return grads if isinstance(grads, tuple) else (grads,)


#: every registered op by name, in registration order
OPS: dict[str, Op] = {}


def register(op: Op) -> Op:
    """Add ``op`` to :data:`OPS` (its name must be new)."""
    if op.name in OPS:
        raise ValueError(f"registry: op {op.name!r} is already registered")
    if op.kind not in ("op", "loss"):
        raise ValueError(f"registry: op {op.name!r}: kind must be 'op' or 'loss', got {op.kind!r}")
    if op.kind == "op" and (op.backward is None or op.reference[1] is None):
        raise ValueError(f"registry: op {op.name!r} needs an ops backward and a reference backward")
    OPS[op.name] = op
    return op


def get(name: str) -> Op:
    """The entry called ``name``."""
    if name not in OPS:
        raise KeyError(f"registry: no op {name!r}; registered: {sorted(OPS)}")
    return OPS[name]


def find(forward) -> Op | None:
    """The entry whose ``ops`` forward is ``forward`` (None if there is none)."""
    for op in OPS.values():
        if op.forward is forward:
            return op
    return None


# ----------------------------------------------------------------------------------------------
# the entries
# ----------------------------------------------------------------------------------------------
def _register_builtin_ops() -> None:
    from . import ops
    from .kernels import reference as ref
    from .kernels.conv2d import PHASE_TAPS, SMALL_WO
    from .kernels.conv2d_winograd import input_grad_tile_size, tile_size, weight_grad_tile_size
    from .kernels.schedule import CHUNK_COLUMNS

    def conv_wo(shapes, p):
        return ops.conv2d_output_shape(shapes[0], shapes[1], p["stride"], p["padding"])[3]

    def conv_l(shapes, p):
        _, _, Ho, Wo = ops.conv2d_output_shape(shapes[0], shapes[1], p["stride"], p["padding"])
        return Ho * Wo

    def phases(shapes, p):
        return shapes[1][2] * shapes[1][3] >= PHASE_TAPS * p["stride"] ** 2

    def pointwise(shapes, p):
        return shapes[1][2:] == (1, 1) and p["stride"] == 1 and p["padding"] == 0

    conv_branches = (
        Branch("im2col row copy, stride 1", "Wo >= SMALL_WO and stride == 1",
               ((2, 3, 6, 11), (4, 3, 3, 3), (4,)), dict(stride=1, padding=1),
               lambda s, p: conv_wo(s, p) >= SMALL_WO and p["stride"] == 1 and not pointwise(s, p)),
        Branch("im2col row copy, strided", "Wo >= SMALL_WO, stride >= 2, KH·KW < PHASE_TAPS·stride²",
               ((2, 3, 7, 20), (4, 3, 3, 3), (4,)), dict(stride=2, padding=1),
               lambda s, p: conv_wo(s, p) >= SMALL_WO and p["stride"] >= 2 and not phases(s, p)),
        Branch("im2col through stride phases", "Wo >= SMALL_WO, stride >= 2, KH·KW >= PHASE_TAPS·stride²",
               ((2, 3, 9, 21), (4, 3, 7, 7), (4,)), dict(stride=2, padding=3),
               lambda s, p: conv_wo(s, p) >= SMALL_WO and p["stride"] >= 2 and phases(s, p)),
        Branch("tap table (narrow output)", "Wo < SMALL_WO",
               ((3, 2, 6, 6), (5, 2, 3, 2), (5,)), dict(stride=2, padding=2),
               lambda s, p: conv_wo(s, p) < SMALL_WO),
        Branch("pointwise, x[n] read in place", "1×1, stride 1, padding 0, Ho·Wo >= 64 (nb = 1)",
               ((3, 5, 9, 9), (4, 5, 1, 1), (4,)), dict(stride=1, padding=0),
               lambda s, p: pointwise(s, p) and conv_l(s, p) >= 64),
        Branch("pointwise, chunked", "1×1, stride 1, padding 0, Ho·Wo < 64 (nb > 1)",
               ((5, 3, 4, 5), (6, 3, 1, 1), (6,)), dict(stride=1, padding=0),
               lambda s, p: pointwise(s, p) and conv_l(s, p) < 64),
        Branch("one image per GEMM", "Ho·Wo >= CHUNK_COLUMNS (nb = 1, GEMM straight into y[n])",
               ((2, 2, 25, 25), (3, 2, 3, 3), (3,)), dict(stride=1, padding=1),
               lambda s, p: conv_l(s, p) >= CHUNK_COLUMNS),
        Branch("Winograd F(4×4, 3×3) forward",
               "3×3, stride 1, C >= 16, F >= 16, Ho, Wo >= 7, >= MIN_BATCH_TILES tiles (tile_size)",
               ((8, 16, 9, 10), (16, 16, 3, 3), (16,)), dict(stride=1, padding=0),
               lambda s, p: tile_size(s[0][0], s[0][1], s[1][0], *ops.conv2d_output_shape(
                   s[0], s[1], p["stride"], p["padding"])[2:], *s[1][2:], p["stride"]) > 0),
        Branch("Winograd input gradient", "as the forward, for padding 1 or 2 (input_grad_tile_size)",
               ((6, 16, 8, 9), (16, 16, 3, 3), (16,)), dict(stride=1, padding=1),
               lambda s, p: input_grad_tile_size(s[0][0], s[0][1], s[1][0], *s[0][2:], *s[1][2:], p["stride"],
                                                 p["padding"]) > 0),
        Branch("Winograd weight gradient", "as the forward, with C >= 64 and F >= 64 (weight_grad_tile_size)",
               ((4, 64, 9, 10), (64, 64, 3, 3), (64,)), dict(stride=1, padding=1),
               lambda s, p: weight_grad_tile_size(s[0][0], s[0][1], s[1][0], *ops.conv2d_output_shape(
                   s[0], s[1], p["stride"], p["padding"])[2:], *s[1][2:], p["stride"]) > 0),
    )
    register(Op(
        "conv2d", formulas=("C1", "C2", "C3", "C4"),
        forward=ops.conv2d, backward=ops.conv2d_backward, backward_args=("x", "w"),
        reference=(ref.conv2d, ref.conv2d_backward),
        kernels=("conv2d.conv2d_forward", "conv2d.conv2d_backward", "conv2d.conv2d_backward_input",
                 "conv2d.conv2d_backward_weight"),
        arg_names=("x", "w", "b"), cases="conv2d_cases", benchmark="conv2d",
        torch=lambda F, x, w, b, stride, padding: F.conv2d(x, w, b, stride=stride, padding=padding),
        branches=conv_branches,
    ))

    def two_by_two(shapes, p):
        return p["size"] == 2 and p["stride"] == 2

    for kind, label in (("max", ("P1", "P2")), ("avg", ("A1", "A2"))):
        register(Op(
            f"{kind}_pool2d", formulas=label,
            forward=getattr(ops, f"{kind}_pool2d"), backward=getattr(ops, f"{kind}_pool2d_backward"),
            backward_args=("x",),
            reference=(getattr(ref, f"{kind}_pool2d"), getattr(ref, f"{kind}_pool2d_backward")),
            kernels=(f"pool.{kind}_pool2d_forward", f"pool.{kind}_pool2d_backward")
            + ((f"pool.{kind}_pool2d_forward_2x2",) if kind == "max" else ()),
            arg_names=("x",), cases="pool2d_cases", benchmark="pool2d",
            torch=(lambda F, x, size, stride, _f=f"{kind}_pool2d": getattr(F, _f)(x, size, stride)),
            branches=(
                Branch("2×2 stride 2, written out", "size == 2 and stride == 2",
                       ((2, 3, 7, 8),), dict(size=2, stride=2), two_by_two),
                Branch("general window", "otherwise",
                       ((2, 3, 8, 7),), dict(size=3, stride=2), lambda s, p: not two_by_two(s, p)),
            ),
        ))

    register(Op(
        "dense", formulas=("D1", "D2", "D3", "D4"),
        forward=ops.dense, backward=ops.dense_backward, backward_args=("x", "w"),
        reference=(ref.dense, ref.dense_backward),
        kernels=("dense.dense_forward", "dense.dense_backward", "dense.dense_backward_input",
                 "dense.dense_backward_weight", "dense.dense_backward_bias", "dense.dense_accumulate_weight_grad"),
        arg_names=("x", "w", "b"), cases="dense_cases", benchmark="dense",
        torch=lambda F, x, w, b: F.linear(x, w.t(), b),   # torch's weight is (out, in) = wᵀ
    ))

    register(Op(
        "batch_norm", formulas=("BN1", "BN2", "BN3", "BN4", "BN5"),
        forward=ops.batch_norm, backward=ops.batch_norm_backward, backward_args=("x", "gamma", "mean", "var"),
        reference=(ref.batch_norm, ref.batch_norm_backward),
        kernels=("norm.batch_norm_forward", "norm.batch_norm_backward", "norm.batch_norm_stats",
                 "norm.batch_norm_backward_input", "norm.batch_norm_backward_weight"),
        arg_names=("x", "gamma", "beta", "mean", "var"), grad_args=("x", "gamma", "beta"),
        cases="batch_norm_cases",
        branches=(
            Branch("maps: (n, c) planes", "L = H·W > 1", ((2, 3, 4, 5), (3,), (3,), None, None), {},
                   lambda s, p: len(s[0]) == 4 and s[0][2] * s[0][3] > 1),
            Branch("features: rows inner, channel blocks", "L = 1 ((N, C), or 1×1 maps)",
                   ((5, 300), (300,), (300,), None, None), {},
                   lambda s, p: len(s[0]) == 2 or s[0][2] * s[0][3] == 1),
        ),
        torch=lambda F, x, gamma, beta, mean, var: F.batch_norm(x, mean, var, gamma, beta, training=mean is None,
                                                                eps=1e-5),
    ))

    register(Op(
        "adaptive_avg_pool2d", formulas=("AP1", "AP2"),
        forward=ops.adaptive_avg_pool2d, backward=ops.adaptive_avg_pool2d_backward, backward_args=("x",),
        reference=(ref.adaptive_avg_pool2d, ref.adaptive_avg_pool2d_backward),
        kernels=("pool.adaptive_avg_pool2d_forward", "pool.adaptive_avg_pool2d_backward"),
        arg_names=("x",), cases="adaptive_pool2d_cases",
        branches=(
            Branch("1×1 output: one sum per plane", "Ho == Wo == 1", ((2, 3, 5, 4),), dict(output_size=(1, 1)),
                   lambda s, p: tuple(p["output_size"]) == (1, 1)),
            Branch("bins", "otherwise", ((2, 3, 9, 7),), dict(output_size=(4, 3)),
                   lambda s, p: tuple(p["output_size"]) != (1, 1)),
        ),
        torch=lambda F, x, output_size: F.adaptive_avg_pool2d(x, output_size),
    ))
    register(Op(
        "global_avg_pool2d", formulas=("AP1", "AP2"),
        forward=ops.global_avg_pool2d, backward=ops.global_avg_pool2d_backward, backward_args=("x",),
        reference=(ref.global_avg_pool2d, ref.global_avg_pool2d_backward),
        kernels=("pool.global_avg_pool2d_forward", "pool.global_avg_pool2d_backward"),
        arg_names=("x",), cases="global_pool2d_cases",
        torch=lambda F, x: F.adaptive_avg_pool2d(x, 1).flatten(1),
    ))
    register(Op(
        "dropout", formulas=("DO1", "DO2", "DO3"),
        forward=ops.dropout, backward=ops.dropout_backward, backward_args=("mask",),
        reference=(ref.dropout, ref.dropout_backward),
        kernels=("dropout.dropout_forward", "dropout.dropout_backward", "dropout.dropout_mask"),
        arg_names=("x", "mask"), grad_args=("x",), cases="dropout_cases",
        # torch's F.dropout draws its own mask; with the mask given, dropout is this map
        # (tests/test_torch_layers.py compares with F.dropout itself through its mask)
        torch=lambda F, x, mask, rate: x * mask / (1 - rate),
    ))

    register(Op(
        "conv_transpose2d", formulas=("T1", "T2", "T3", "T4"),
        forward=ops.conv_transpose2d, backward=ops.conv_transpose2d_backward, backward_args=("x", "w"),
        reference=(ref.conv_transpose2d, ref.conv_transpose2d_backward),
        kernels=("conv_transpose2d.conv_transpose2d_forward", "conv_transpose2d.conv_transpose2d_backward",
                 "conv_transpose2d.conv_transpose2d_backward_input",
                 "conv_transpose2d.conv_transpose2d_backward_weight"),
        arg_names=("x", "w", "b"), cases="conv_transpose2d_cases",
        torch=lambda F, x, w, b, stride, padding, output_padding: F.conv_transpose2d(
            x, w, b, stride=stride, padding=padding, output_padding=output_padding),
    ))

    register(Op(
        "upsample2d", formulas=("U1", "U2"),
        forward=ops.upsample2d, backward=ops.upsample2d_backward, backward_args=("x",),
        reference=(ref.upsample2d, ref.upsample2d_backward),
        kernels=("upsample.upsample2d_forward", "upsample.upsample2d_backward"),
        arg_names=("x",), cases="upsample2d_cases",
        torch=lambda F, x, size: F.interpolate(x, scale_factor=(size, size) if np.isscalar(size) else tuple(size),
                                               mode="nearest"),
    ))

    from .kernels.activations import BLOCK, PARALLEL_MIN

    elementwise_branches = (   # sizes on either side of PARALLEL_MIN; the large one ends in a partial block
        Branch("one thread", "size < PARALLEL_MIN", ((3, 5, 7, 9),), {},
               lambda s, p: int(np.prod(s[0])) < PARALLEL_MIN),
        Branch("blocks over threads", "size >= PARALLEL_MIN", ((PARALLEL_MIN // BLOCK + 1, BLOCK + 3),), {},
               lambda s, p: int(np.prod(s[0])) >= PARALLEL_MIN),
    )
    for name, label, saved, cases, torch_fn, branches in (
        ("relu", ("R1", "R2"), "x", "relu_cases", lambda F, x: F.relu(x), elementwise_branches),
        ("sigmoid", ("S1", "S2"), "y", "elementwise_cases", lambda F, x: x.sigmoid(), elementwise_branches),
        ("softmax", ("SM1", "SM2"), "y", "elementwise_cases", lambda F, x: F.softmax(x, dim=-1), ()),
    ):
        register(Op(
            name, formulas=label,
            forward=getattr(ops, name), backward=getattr(ops, f"{name}_backward"), backward_args=(saved,),
            reference=(getattr(ref, name), getattr(ref, f"{name}_backward")),
            kernels=(f"activations.{name}_forward", f"activations.{name}_backward"),
            arg_names=("x",), cases=cases, torch=torch_fn, branches=branches,
        ))

    for name, label, args, cases, torch_fn in (
        ("cross_entropy", ("L1", "L2"), ("logits", "labels"), "cross_entropy_cases",
         lambda F, z, labels: F.cross_entropy(z, labels.long())),
        ("binary_cross_entropy", ("B1", "B2"), ("logits", "targets"), "binary_cross_entropy_cases",
         lambda F, z, t: F.binary_cross_entropy_with_logits(z, t)),
        ("mse", ("M1", "M2"), ("pred", "target"), "pair_cases", lambda F, p, t: F.mse_loss(p, t)),
    ):
        register(Op(
            name, formulas=label, kind="loss", forward=getattr(ops, name),
            reference=(getattr(ref, name), None), kernels=(f"losses.{name}_forward",),
            arg_names=args, grad_args=args[:1], cases=cases, torch=torch_fn,
        ))


_register_builtin_ops()
