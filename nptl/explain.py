"""Explain: evaluate one element of a formula term by term, on numbers you can check by hand.

Every function here takes the same arrays as its :mod:`nptl.ops` twin plus the element to
explain (``at``), and returns a :class:`Trace`: the formula, the terms of the chosen element
(each with the array entries it multiplies, their indices and values), their total, and the
value the fast kernel gives for the same element.  The terms are enumerated from the formula's
own index sets — the labels (C1)…(M2) of :mod:`nptl.kernels.reference` — in float64, never
read back from the kernels; the kernel is called once, to confirm the total.

>>> import numpy as np
>>> from nptl import explain
>>> x = np.arange(16.0).reshape(1, 1, 4, 4); w = np.ones((1, 1, 3, 3)); b = np.array([1.0])
>>> t = explain.conv2d(x, w, b, padding=1, at=(0, 0, 0, 0))
>>> t.total, t.kernel_value, len(t.terms), sum(f.padding for term in t.terms for f in term.factors)
(11.0, 11.0, 10, 5)
>>> t.terms[1].symbol, t.terms[1].numbers     # the first window position lies in the padding
('x[0,0,-1,-1]·w[0,0,0,0]', '0·1')

The zero padding is shown, not skipped: a term whose ``x`` index lies outside the image has
the factor ``x[n,c,-1,0]`` with value 0 and ``padding=True``.  Backward traces
(``conv2d_backward`` …) expand one entry of ``dx``/``dw``/``db``: which outputs fed that entry
and what each one contributed by the chain rule.

``python -m nptl explain conv2d --shape 1,1,4,4 --kernel 3 --padding 1 --at 0,0,1,2`` is the
command-line view (``--backward``, ``--format text|markdown|json``, ``--input x=FILE.npy``).
Adding an op is one entry in :data:`EXPLAINERS` plus its trace functions.
"""
from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

__all__ = [
    "Factor", "Term", "Step", "Trace", "ExplainError", "EXPLAINERS", "Explainer",
    "conv2d", "conv2d_backward", "conv2d_true", "max_pool2d", "max_pool2d_backward",
    "avg_pool2d", "avg_pool2d_backward", "dense", "dense_backward", "relu", "relu_backward",
    "sigmoid", "sigmoid_backward", "softmax", "softmax_backward", "cross_entropy",
    "cross_entropy_backward", "binary_cross_entropy", "binary_cross_entropy_backward",
    "mse", "mse_backward", "batch_norm", "batch_norm_backward", "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward", "global_avg_pool2d", "global_avg_pool2d_backward", "dropout", "dropout_backward",
    "conv_transpose2d", "conv_transpose2d_backward", "upsample2d", "upsample2d_backward",
    "render", "small_integers", "walk", "ModelWalk", "LayerRecord",
]


class ExplainError(ValueError):
    """Bad input to an explain function: ``arg`` names the argument (``at``, ``dx_at`` …)."""

    def __init__(self, message: str, arg: str | None = None):
        super().__init__(message)
        self.arg = arg


# ----------------------------------------------------------------------------------------------
# the trace
# ----------------------------------------------------------------------------------------------
def fmt(v) -> str:
    """A number as a learner writes it: ``3``, ``-2``, ``0.880797``."""
    v = float(v)
    if v == 0:
        return "0"
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.6g}"


def _par(v) -> str:
    """``fmt(v)`` in parentheses when negative (inside a product)."""
    s = fmt(v)
    return f"({s})" if s.startswith("-") else s


def _idx(index) -> str:
    return ",".join(str(int(i)) for i in index)


@dataclass(frozen=True)
class Factor:
    """One array entry in a term: ``name[index] = value``; ``padding`` marks a zero-padding
    position (an index outside the input, value 0)."""

    name: str
    index: tuple
    value: float
    padding: bool = False

    @property
    def symbol(self) -> str:
        return f"{self.name}[{_idx(self.index)}]"


@dataclass(frozen=True)
class Term:
    """One summand (or, for max pooling, one candidate): its factors, its value, and how it
    reads in symbols and in numbers."""

    factors: tuple
    value: float
    symbol: str
    numbers: str

    @classmethod
    def product(cls, *factors: Factor) -> "Term":
        value = 1.0
        for f in factors:
            value *= f.value
        return cls(tuple(factors), value, "·".join(f.symbol for f in factors),
                   "·".join(_par(f.value) for f in factors))


@dataclass(frozen=True)
class Step:
    """A line of arithmetic after the terms: ``lhs = symbol = numbers = value``."""

    lhs: str
    symbol: str
    numbers: str
    value: float


@dataclass
class Trace:
    """One element of a formula, evaluated term by term.

    ``total`` is computed here from ``terms`` (combined by ``combine``: ``"sum"`` or ``"max"``,
    named ``combined``) and then ``steps``; ``kernel_value`` is the fast kernel's value for the
    same element (``kernel`` names it).  ``before`` holds lines evaluated before the terms
    (e.g. a softmax's max); ``inputs`` and ``output`` are the arrays involved, for display.
    """

    op: str
    formula: str
    target: str
    terms: list
    total: float
    kernel: str
    kernel_value: float
    combine: str = "sum"
    combined: str | None = None
    before: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    inputs: dict = field(default_factory=dict)
    output: tuple | None = None  # (name, array)
    sum_line: bool = True        # False: the single term is shown inside the first step

    @property
    def matches(self) -> bool:
        """Whether the trace and the fast kernel agree (relative 1e-9; float64 throughout)."""
        return math.isclose(self.total, self.kernel_value, rel_tol=1e-9, abs_tol=1e-12)

    def indices(self, name: str) -> list:
        """The indices of array ``name`` over all terms, in term order."""
        return [f.index for t in self.terms for f in t.factors if f.name == name]

    def __str__(self) -> str:
        return render(self, "text")

    def to_dict(self, arrays: bool = True) -> dict:
        d = {"op": self.op, "formula": self.formula, "target": self.target, "combine": self.combine,
             "before": [vars(s) for s in self.before],
             "terms": [{"symbol": t.symbol, "numbers": t.numbers, "value": t.value,
                        "factors": [{"name": f.name, "index": list(map(int, f.index)), "value": f.value,
                                     "padding": f.padding} for f in t.factors]} for t in self.terms],
             "steps": [vars(s) for s in self.steps], "total": self.total, "kernel": self.kernel,
             "kernel_value": self.kernel_value, "matches": self.matches, "notes": list(self.notes)}
        if arrays:
            d["inputs"] = {k: np.asarray(v).tolist() for k, v in self.inputs.items()}
            if self.output is not None:
                d["output"] = {"name": self.output[0], "values": np.asarray(self.output[1]).tolist()}
        return d


# -- rendering ----------------------------------------------------------------------------------
def _grid(a: np.ndarray, indent: str) -> list[str]:
    """A 1-D or 2-D array as right-aligned columns."""
    a = np.atleast_2d(a)
    cells = [[fmt(v) for v in row] for row in a]
    width = max((len(c) for row in cells for c in row), default=1)
    return [indent + "  ".join(c.rjust(width) for c in row) for row in cells]


def format_array(name: str, a) -> list[str]:
    """Lines showing ``a``: 2-D planes ``name[n,c]`` for 3-D and 4-D arrays, else one grid."""
    a = np.asarray(a)
    lines = [f"{name}  shape {a.shape}" + (" =" if a.ndim <= 2 else ":")]
    if a.ndim == 0:
        return lines + ["    " + fmt(a)]
    if a.ndim <= 2:
        return lines + _grid(a, "    ")
    for lead in itertools.product(*(range(s) for s in a.shape[:-2])):
        lines.append(f"  {name}[{_idx(lead)}] =")
        lines += _grid(a[lead], "    ")
    return lines


def _wrapped(lhs: str, pieces: list[str], sep: str, width: int = 100) -> list[str]:
    """``lhs = p0 sep p1 sep ...`` wrapped at ``width``, continuation lines aligned under p0."""
    pad = " " * len(lhs)
    lines, cur = [], lhs
    for k, piece in enumerate(pieces):
        add = piece if k == 0 else sep + piece
        if len(cur) + len(add) > width and cur.strip() not in ("", "=") and cur != lhs:
            lines.append(cur.rstrip())
            cur = pad + add.lstrip()
        else:
            cur += add
    lines.append(cur)
    return lines


def _elided(pieces: list, max_terms: int | None, count: int) -> list:
    """The first ``max_terms - 1`` pieces, a marker, and the last one (all when they fit)."""
    if max_terms is None or count <= max_terms:
        return pieces
    return pieces[: max_terms - 1] + [f"... ({count - max_terms} more terms) ...", pieces[-1]]


def _expansion(t: Trace, max_terms: int | None = None) -> list[str]:
    lines = []
    for s in t.before:
        lines += _long(f"{s.lhs} = {s.symbol} = {s.numbers} = {fmt(s.value)}", len(s.lhs) + 1)
    name = t.combined or t.target
    if t.terms and t.sum_line:
        if t.combine == "max":
            sym = [f"max({t.terms[0].symbol}"] + [x.symbol for x in t.terms[1:]]
            num = [f"max({fmt(t.terms[0].value)}"] + [fmt(x.value) for x in t.terms[1:]]
            sym[-1] += ")"
            num[-1] += ")"
            sep = ", "
        else:
            sym, num, sep = [x.symbol for x in t.terms], [x.numbers for x in t.terms], " + "
            if len(t.terms) == 1 and len(t.terms[0].factors) == 1:
                num = [fmt(t.terms[0].value)]
        lhs = f"{name} = "
        n = len(t.terms)
        lines += _wrapped(lhs, _elided(sym, max_terms, n), sep)
        if num != sym:
            lines += _wrapped(" " * (len(lhs) - 2) + "= ", _elided(num, max_terms, n), sep)
        combined = max(x.value for x in t.terms) if t.combine == "max" else math.fsum(x.value for x in t.terms)
        if num[-1] != fmt(combined) or len(num) > 1:
            lines.append(" " * (len(lhs) - 2) + f"= {fmt(combined)}")
    elif not t.terms and t.combine == "sum":
        lines.append(f"{name} = 0   (empty sum: no term of the formula reaches this entry)")
    for s in t.steps:
        parts = [s.symbol] + ([s.numbers] if s.numbers != s.symbol else []) + [fmt(s.value)]
        lines += _long(f"{s.lhs} = " + " = ".join(parts), len(s.lhs) + 1)
    return lines


def _long(line: str, indent: int, width: int = 100) -> list[str]:
    """A long line of arithmetic broken at spaces, continuation lines indented under its '='."""
    import textwrap

    return textwrap.wrap(line, width, subsequent_indent=" " * (indent + 2), break_long_words=False,
                         break_on_hyphens=False) or [line]


def _check_line(t: Trace) -> str:
    mark = "matches" if t.matches else f"DIFFERS (trace {fmt(t.total)})"
    return f"fast kernel {t.kernel}: {t.target} = {fmt(t.kernel_value)}  -- {mark}"


SMALL = 256  # arrays up to this many elements are printed in full


def render(traces, fmt_name: str = "text", arrays: bool | None = None, title: str | None = None,
           max_terms: int | None = None) -> str:
    """Render one trace or a list of traces as ``text``, ``markdown`` or ``json``.

    ``arrays``: show the inputs (of the first trace, shared by the others) and each output;
    ``None`` shows them when every one has at most :data:`SMALL` elements and otherwise lists
    their shapes.  ``max_terms``: in text and markdown, show at most that many terms of each
    sum (the first ones and the last; JSON always holds every term).
    """
    traces = [traces] if isinstance(traces, Trace) else list(traces)
    if arrays is None:
        every = [v for t in traces for v in t.inputs.values()] + [t.output[1] for t in traces if t.output]
        arrays = all(np.size(v) <= SMALL for v in every)
        if not arrays and fmt_name != "json" and traces:
            shapes = ", ".join(f"{k} {np.shape(v)}" for k, v in traces[0].inputs.items())
            outs = ", ".join(f"{t.output[0]} {np.shape(t.output[1])}" for t in traces if t.output)
            title = (f"{title}\n" if title else "") + f"(arrays not shown: inputs {shapes}; outputs {outs})"
    if fmt_name == "json":
        out = {"title": title, "traces": [t.to_dict(arrays=False) for t in traces]}
        if arrays and traces:
            out["inputs"] = {k: np.asarray(v).tolist() for k, v in traces[0].inputs.items()}
            out["outputs"] = {t.output[0]: np.asarray(t.output[1]).tolist() for t in traces if t.output}
        return json.dumps(out, indent=1, ensure_ascii=False)
    md = fmt_name == "markdown"
    if fmt_name not in ("text", "markdown"):
        raise ExplainError(f"format must be text, markdown or json, got {fmt_name!r}", "format")
    lines: list[str] = []
    if title:
        lines += [f"## {title}" if md else title, ""]
    if arrays and traces and traces[0].inputs:
        lines.append("**Inputs**" if md else "inputs:")
        block = [ln for k, v in traces[0].inputs.items() for ln in format_array(k, v)]
        lines += (["```"] + block + ["```"]) if md else block
        lines.append("")
    for t in traces:
        if md:
            lines += [f"### {t.op}: `{t.target}`", "", f"Formula: `{t.formula}`", "", "```"]
            lines += _expansion(t, max_terms) + ["```"] + [f"- {n}" for n in t.notes]
            lines += ["", f"Fast kernel `{t.kernel}`: `{t.target}` = {fmt(t.kernel_value)} "
                      + ("(matches)" if t.matches else f"(DIFFERS from the trace's {fmt(t.total)})"), ""]
        else:
            lines += [f"{t.op}: {t.formula}"] + _expansion(t, max_terms) + [f"  note: {n}" for n in t.notes]
            lines += [_check_line(t), ""]
        if arrays and t.output is not None:
            block = format_array(*t.output)
            lines += (["**Output**", "```"] + block + ["```", ""]) if md else (["output:"] + block + [""])
    return "\n".join(lines).rstrip() + "\n"


# ----------------------------------------------------------------------------------------------
# argument helpers
# ----------------------------------------------------------------------------------------------
def _f64(a, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise ExplainError(f"'{name}' must be real-valued, got dtype {arr.dtype}", name)
    return np.ascontiguousarray(arr, dtype=np.float64)


def _ndim(a: np.ndarray, ndim: int, name: str, layout: str) -> None:
    if a.ndim != ndim:
        raise ExplainError(f"'{name}' must be {ndim}-D {layout}, got shape {a.shape}", name)


def _at(at, shape: tuple, arg: str, of: str) -> tuple:
    """``at`` as a tuple of ints inside ``shape`` (default: the middle element)."""
    shape = tuple(int(s) for s in shape)
    if any(s < 1 for s in shape):
        raise ExplainError(f"{of} has shape {shape}: it is empty, there is no element to explain", arg)
    if at is None:
        return tuple(s // 2 for s in shape)
    at = (at,) if np.isscalar(at) else tuple(at)
    if len(at) != len(shape) or not all(isinstance(i, (int, np.integer)) for i in at):
        raise ExplainError(f"{arg}={','.join(map(str, at))} must be {len(shape)} integer indices into {of} of shape {shape}", arg)
    if not all(0 <= i < s for i, s in zip(at, shape)):
        valid = ", ".join(f"0..{s - 1}" for s in shape)
        raise ExplainError(f"{arg}={_idx(at)} is outside {of} of shape {shape} (valid: {valid})", arg)
    return tuple(int(i) for i in at)


def _geometry(x_shape, w_shape, stride, padding) -> tuple:
    from .ops import conv2d_output_shape

    try:
        return conv2d_output_shape(x_shape, w_shape, stride, padding, where="explain conv2d")
    except (TypeError, ValueError) as err:
        raise ExplainError(str(err)) from None


def _pool_geometry(x_shape, size, stride) -> tuple:
    from .ops import pool2d_output_shape

    try:
        return pool2d_output_shape(x_shape, size, stride, where="explain pool2d")
    except (TypeError, ValueError) as err:
        raise ExplainError(str(err)) from None


# ----------------------------------------------------------------------------------------------
# conv2d (C1)-(C4) and the textbook convolution
# ----------------------------------------------------------------------------------------------
C1 = "(C1) y[n,f,i,j] = b[f] + Σ_c Σ_p Σ_q xp[n,c,i·s+p,j·s+q]·w[f,c,p,q]   (xp: x zero-padded by P)"
C2 = "(C2) dx[n,c,h,w] = Σ_f Σ_{(i,p): i·s+p = h+P} Σ_{(j,q): j·s+q = w+P} dy[n,f,i,j]·w[f,c,p,q]"
C3 = "(C3) dw[f,c,p,q] = Σ_n Σ_i Σ_j dy[n,f,i,j]·xp[n,c,i·s+p,j·s+q]"
C4 = "(C4) db[f] = Σ_n Σ_i Σ_j dy[n,f,i,j]"


def _conv_args(x, w, stride, padding):
    x, w = _f64(x, "x"), _f64(w, "w")
    _ndim(x, 4, "x", "(N, C, H, W)")
    _ndim(w, 4, "w", "(F, C, KH, KW)")
    return x, w, _geometry(x.shape, w.shape, stride, padding)


def _x_factor(x, n, c, h, v) -> Factor:
    """``x[n,c,h,v]``, or a zero-padding factor when (h, v) lies outside the image."""
    H, W = x.shape[2:]
    inside = 0 <= h < H and 0 <= v < W
    return Factor("x", (n, c, h, v), float(x[n, c, h, v]) if inside else 0.0, padding=not inside)


def _padding_note(t_terms, padding) -> list[str]:
    k = sum(f.padding for t in t_terms for f in t.factors)
    if not k:
        return []
    return [f"{k} term(s) read the zero padding (P={padding}): their x index lies outside the image, "
            "so that x is 0"]


def conv2d(x, w, b=None, stride=1, padding=0, at=None) -> Trace:
    """Trace of (C1) at ``at = (n, f, i, j)`` (default: the middle output element)."""
    x, w, out_shape = _conv_args(x, w, stride, padding)
    F, C, KH, KW = w.shape
    b = np.zeros(F) if b is None else _f64(b, "b")
    if b.shape != (F,):
        raise ExplainError(f"'b' must have shape ({F},), got {b.shape}", "b")
    n, f, i, j = _at(at, out_shape, "at", "the output y")
    terms = [Term.product(Factor("b", (f,), float(b[f])))]
    for c, p, q in itertools.product(range(C), range(KH), range(KW)):      # (C1)
        h, v = i * stride + p - padding, j * stride + q - padding
        terms.append(Term.product(_x_factor(x, n, c, h, v), Factor("w", (f, c, p, q), float(w[f, c, p, q]))))
    from . import ops

    y = ops.conv2d(x, w, b, stride=stride, padding=padding)
    notes = [f"window rows {i}·{stride}+p-{padding} = {i * stride - padding}..{i * stride - padding + KH - 1}, "
             f"columns {j}·{stride}+q-{padding} = {j * stride - padding}..{j * stride - padding + KW - 1} "
             f"of x (p < {KH}, q < {KW}, over {C} channel(s))"] + _padding_note(terms, padding)
    return Trace("conv2d", C1, f"y[{_idx((n, f, i, j))}]", terms, math.fsum(t.value for t in terms),
                 "nptl.ops.conv2d", float(y[n, f, i, j]), notes=notes,
                 inputs={"x": x, "w": w, "b": b}, output=("y", y))


def conv2d_backward(dy, x, w, stride=1, padding=0, dx_at=None, dw_at=None, db_at=None) -> list:
    """Traces of (C2), (C3), (C4): one entry each of ``dx``, ``dw`` and ``db`` (default: the
    middle entry), with the upstream gradient ``dy`` of the output's shape."""
    x, w, out_shape = _conv_args(x, w, stride, padding)
    dy = _f64(dy, "dy")
    if dy.shape != tuple(out_shape):
        raise ExplainError(f"'dy' must have the output's shape {tuple(out_shape)}, got {dy.shape}", "dy")
    N, F, Ho, Wo = out_shape
    _, C, KH, KW = w.shape
    from . import ops

    gx, gw, gb = ops.conv2d_backward(dy, x, w, stride=stride, padding=padding)
    inputs = {"x": x, "w": w, "dy": dy}

    n, c, h, v = _at(dx_at, x.shape, "dx_at", "dx (the shape of x)")
    terms = []
    for f, i, p in itertools.product(range(F), range(Ho), range(KH)):      # (C2)
        if i * stride + p != h + padding:
            continue
        for j, q in itertools.product(range(Wo), range(KW)):
            if j * stride + q == v + padding:
                terms.append(Term.product(Factor("dy", (n, f, i, j), float(dy[n, f, i, j])),
                                          Factor("w", (f, c, p, q), float(w[f, c, p, q]))))
    fed = ", ".join(f"y[{_idx(t.factors[0].index)}]" for t in terms) or "none"
    tdx = Trace("conv2d backward", C2, f"dx[{_idx((n, c, h, v))}]", terms, math.fsum(t.value for t in terms),
                "nptl.ops.conv2d_backward", float(gx[n, c, h, v]),
                notes=[f"x[{_idx((n, c, h, v))}] fed {len(terms)} output(s): {fed}; each passes back "
                       "dy (its ∂L/∂y) times the weight that multiplied this x"],
                inputs=inputs, output=("dx", gx))

    f, c, p, q = _at(dw_at, w.shape, "dw_at", "dw (the shape of w)")
    terms = []
    for n, i, j in itertools.product(range(N), range(Ho), range(Wo)):      # (C3)
        terms.append(Term.product(Factor("dy", (n, f, i, j), float(dy[n, f, i, j])),
                                  _x_factor(x, n, c, i * stride + p - padding, j * stride + q - padding)))
    tdw = Trace("conv2d backward", C3, f"dw[{_idx((f, c, p, q))}]", terms, math.fsum(t.value for t in terms),
                "nptl.ops.conv2d_backward", float(gw[f, c, p, q]),
                notes=[f"w[{_idx((f, c, p, q))}] multiplied one x in every output y[n,{f},i,j] "
                       f"({len(terms)} outputs)"] + _padding_note(terms, padding),
                inputs=inputs, output=("dw", gw))

    (f,) = _at(db_at, (F,), "db_at", "db")
    terms = [Term.product(Factor("dy", (n, f, i, j), float(dy[n, f, i, j])))
             for n, i, j in itertools.product(range(N), range(Ho), range(Wo))]      # (C4)
    tdb = Trace("conv2d backward", C4, f"db[{f}]", terms, math.fsum(t.value for t in terms),
                "nptl.ops.conv2d_backward", float(gb[f]),
                notes=[f"b[{f}] was added to every output y[n,{f},i,j] ({len(terms)} outputs)"],
                inputs=inputs, output=("db", gb))
    return [tdx, tdw, tdb]


CONV_TRUE = "y(i,j) = Σ_p Σ_q x(i−p+1, j−q+1)·k(p,q)   (1-based; i = KH..H, j = KW..W)"


def conv2d_true(x, k, at=None) -> Trace:
    """Trace of the textbook (flipped-kernel) convolution of one image ``x (H, W)`` with one
    kernel ``k (KH, KW)``, ``at = (a, b)`` 0-based into the output ``(H−KH+1, W−KW+1)``, i.e.
    ``y(a+KH, b+KW)`` in the formula's 1-based indices.  The kernel check is the
    cross-correlation (C1) with the flipped kernel, ``ops.conv2d(x, k[::-1, ::-1])``."""
    x, k = _f64(x, "x"), _f64(k, "k")
    _ndim(x, 2, "x", "(H, W)")
    _ndim(k, 2, "k", "(KH, KW)")
    (H, W), (KH, KW) = x.shape, k.shape
    if KH > H or KW > W:
        raise ExplainError(f"kernel {KH}x{KW} is larger than the image {H}x{W}: the output is empty", "k")
    a, b_ = _at(at, (H - KH + 1, W - KW + 1), "at", "the output y")
    i, j = a + KH, b_ + KW                                                  # 1-based
    terms = []
    for p, q in itertools.product(range(1, KH + 1), range(1, KW + 1)):
        xf = Factor("x", (i - p + 1, j - q + 1), float(x[i - p, j - q]))
        kf = Factor("k", (p, q), float(k[p - 1, q - 1]))
        terms.append(Term((xf, kf), xf.value * kf.value, f"x({_idx(xf.index)})·k({p},{q})",
                          f"{_par(xf.value)}·{_par(kf.value)}"))
    from . import ops

    y = ops.conv2d(x[None, None], np.ascontiguousarray(k[::-1, ::-1])[None, None])[0, 0]
    return Trace("conv2d_true", CONV_TRUE, f"y({i},{j})", terms, math.fsum(t.value for t in terms),
                 "nptl.ops.conv2d(x, k[::-1, ::-1])", float(y[a, b_]),
                 notes=[f"y({i},{j}) is element [{a},{b_}] of the output array (0-based)",
                        "indices are 1-based as in the textbook; the kernel is traversed backwards "
                        f"(k(p,q) meets x(i−p+1, ·)), so it equals cross-correlation with the kernel flipped: "
                        f"k(p,q) = kflip[{KH}−p, {KW}−q] (0-based)"],
                 inputs={"x": x, "k": k}, output=("y", y))


# ----------------------------------------------------------------------------------------------
# pooling (P1), (P2), (A1), (A2)
# ----------------------------------------------------------------------------------------------
P1 = "(P1) y[n,c,i,j] = max_{p,q} x[n,c,i·s+p,j·s+q]   (p, q < size)"
P2 = "(P2) dx[n,c,h,w] = Σ_{(i,j): x[n,c,h,w] is the first maximum of window (i,j)} dy[n,c,i,j]"
A1 = "(A1) y[n,c,i,j] = (1/size²) Σ_p Σ_q x[n,c,i·s+p,j·s+q]"
A2 = "(A2) dx[n,c,h,w] = (1/size²) Σ_{(i,j): window (i,j) contains (h,w)} dy[n,c,i,j]"


def _pool_args(x, size, stride):
    x = _f64(x, "x")
    _ndim(x, 4, "x", "(N, C, H, W)")
    stride = size if stride is None else stride
    return x, int(stride), _pool_geometry(x.shape, size, stride)


def _window(x, n, c, i, j, size, stride) -> list:
    """The window's entries in row-major order (p, then q)."""
    return [Factor("x", (n, c, i * stride + p, j * stride + q), float(x[n, c, i * stride + p, j * stride + q]))
            for p in range(size) for q in range(size)]


def _first_max(window: list) -> Factor:
    best = window[0]
    for fct in window[1:]:
        if fct.value > best.value:
            best = fct
    return best


def max_pool2d(x, size, stride=None, at=None) -> Trace:
    """Trace of (P1): the window of ``y[at]``, its maximum and which entry won (the first
    maximum in row-major order, the one the backward pass routes the gradient to)."""
    x, stride, out_shape = _pool_args(x, size, stride)
    n, c, i, j = _at(at, out_shape, "at", "the output y")
    window = _window(x, n, c, i, j, size, stride)
    win = _first_max(window)
    ties = [f.symbol for f in window if f.value == win.value and f is not win]
    from . import ops

    y = ops.max_pool2d(x, size, stride)
    notes = [f"winner: {win.symbol} = {fmt(win.value)} (position p={win.index[2] - i * stride}, "
             f"q={win.index[3] - j * stride} of the window); backward sends all of dy[{_idx((n, c, i, j))}] there"]
    if ties:
        notes.append(f"ties with {', '.join(ties)}: the first maximum in row-major order wins")
    return Trace("max_pool2d", P1, f"y[{_idx((n, c, i, j))}]", [Term.product(f) for f in window], win.value,
                 "nptl.ops.max_pool2d", float(y[n, c, i, j]), combine="max", notes=notes,
                 inputs={"x": x}, output=("y", y))


def _covering(x_shape, out_shape, h, v, size, stride) -> list:
    """Output windows (i, j) whose ``size×size`` window at stride ``stride`` contains (h, v)."""
    Ho, Wo = out_shape[2:]
    return [(i, j) for i in range(Ho) for j in range(Wo)
            if i * stride <= h < i * stride + size and j * stride <= v < j * stride + size]


def max_pool2d_backward(dy, x, size, stride=None, at=None) -> Trace:
    """Trace of (P2) at ``dx[at]``: every window containing that entry, whether it won there,
    and the sum of the ``dy`` of the windows it won."""
    x, stride, out_shape = _pool_args(x, size, stride)
    dy = _f64(dy, "dy")
    if dy.shape != tuple(out_shape):
        raise ExplainError(f"'dy' must have the output's shape {tuple(out_shape)}, got {dy.shape}", "dy")
    n, c, h, v = _at(at, x.shape, "at", "dx (the shape of x)")
    terms, notes = [], []
    for i, j in _covering(x.shape, out_shape, h, v, size, stride):
        win = _first_max(_window(x, n, c, i, j, size, stride))
        won = win.index == (n, c, h, v)
        notes.append(f"window y[{_idx((n, c, i, j))}]: " + ("won here" if won else f"won by {win.symbol} = {fmt(win.value)}"))
        if won:
            terms.append(Term.product(Factor("dy", (n, c, i, j), float(dy[n, c, i, j]))))
    if not notes:
        notes.append("no window covers this entry (stride larger than the window)")
    from . import ops

    gx = ops.max_pool2d_backward(dy, x, size, stride)
    return Trace("max_pool2d backward", P2, f"dx[{_idx((n, c, h, v))}]", terms, math.fsum(t.value for t in terms),
                 "nptl.ops.max_pool2d_backward", float(gx[n, c, h, v]), notes=notes,
                 inputs={"x": x, "dy": dy}, output=("dx", gx))


def avg_pool2d(x, size, stride=None, at=None) -> Trace:
    """Trace of (A1)."""
    x, stride, out_shape = _pool_args(x, size, stride)
    n, c, i, j = _at(at, out_shape, "at", "the output y")
    terms = [Term.product(f) for f in _window(x, n, c, i, j, size, stride)]
    s = math.fsum(t.value for t in terms)
    target = f"y[{_idx((n, c, i, j))}]"
    from . import ops

    y = ops.avg_pool2d(x, size, stride)
    return Trace("avg_pool2d", A1, target, terms, s / (size * size), "nptl.ops.avg_pool2d", float(y[n, c, i, j]),
                 combined="s", steps=[Step(target, f"s/{size * size}", f"{fmt(s)}/{size * size}", s / (size * size))],
                 inputs={"x": x}, output=("y", y))


def avg_pool2d_backward(dy, x, size, stride=None, at=None) -> Trace:
    """Trace of (A2): the windows that contain ``dx[at]``, each passing back ``dy/size²``."""
    x, stride, out_shape = _pool_args(x, size, stride)
    dy = _f64(dy, "dy")
    if dy.shape != tuple(out_shape):
        raise ExplainError(f"'dy' must have the output's shape {tuple(out_shape)}, got {dy.shape}", "dy")
    n, c, h, v = _at(at, x.shape, "at", "dx (the shape of x)")
    terms = [Term.product(Factor("dy", (n, c, i, j), float(dy[n, c, i, j])))
             for i, j in _covering(x.shape, out_shape, h, v, size, stride)]
    s = math.fsum(t.value for t in terms)
    target = f"dx[{_idx((n, c, h, v))}]"
    from . import ops

    gx = ops.avg_pool2d_backward(dy, x, size, stride)
    return Trace("avg_pool2d backward", A2, target, terms, s / (size * size), "nptl.ops.avg_pool2d_backward",
                 float(gx[n, c, h, v]), combined="s",
                 steps=[Step(target, f"s/{size * size}", f"{fmt(s)}/{size * size}", s / (size * size))],
                 notes=[f"x[{_idx((n, c, h, v))}] lies in {len(terms)} window(s); each averaged it with weight "
                        f"1/{size * size}"], inputs={"x": x, "dy": dy}, output=("dx", gx))


# ----------------------------------------------------------------------------------------------
# dense (D1)-(D4)
# ----------------------------------------------------------------------------------------------
D1 = "(D1) y[n,o] = b[o] + Σ_i x[n,i]·w[i,o]"
D2 = "(D2) dx[n,i] = Σ_o dy[n,o]·w[i,o]"
D3 = "(D3) dw[i,o] = Σ_n x[n,i]·dy[n,o]"
D4 = "(D4) db[o] = Σ_n dy[n,o]"


def _dense_args(x, w):
    x, w = _f64(x, "x"), _f64(w, "w")
    _ndim(x, 2, "x", "(N, in_features)")
    _ndim(w, 2, "w", "(in_features, out_features)")
    if x.shape[1] != w.shape[0]:
        raise ExplainError(f"x has {x.shape[1]} features (shape {x.shape}) but w expects {w.shape[0]} "
                           f"(shape {w.shape})", "w")
    return x, w


def dense(x, w, b, at=None) -> Trace:
    """Trace of (D1) at ``at = (n, o)``."""
    x, w = _dense_args(x, w)
    b = _f64(b, "b")
    if b.shape != (w.shape[1],):
        raise ExplainError(f"'b' must have shape ({w.shape[1]},), got {b.shape}", "b")
    n, o = _at(at, (x.shape[0], w.shape[1]), "at", "the output y")
    terms = [Term.product(Factor("b", (o,), float(b[o])))]
    terms += [Term.product(Factor("x", (n, i), float(x[n, i])), Factor("w", (i, o), float(w[i, o])))
              for i in range(x.shape[1])]
    from . import ops

    y = ops.dense(x, w, b)
    return Trace("dense", D1, f"y[{n},{o}]", terms, math.fsum(t.value for t in terms), "nptl.ops.dense",
                 float(y[n, o]), inputs={"x": x, "w": w, "b": b}, output=("y", y))


def dense_backward(dy, x, w, dx_at=None, dw_at=None, db_at=None) -> list:
    """Traces of (D2), (D3), (D4)."""
    x, w = _dense_args(x, w)
    dy = _f64(dy, "dy")
    N, (I, O) = x.shape[0], w.shape
    if dy.shape != (N, O):
        raise ExplainError(f"'dy' must have the output's shape {(N, O)}, got {dy.shape}", "dy")
    from . import ops

    gx, gw, gb = ops.dense_backward(dy, x, w)
    inputs = {"x": x, "w": w, "dy": dy}
    n, i = _at(dx_at, x.shape, "dx_at", "dx (the shape of x)")
    terms = [Term.product(Factor("dy", (n, o), float(dy[n, o])), Factor("w", (i, o), float(w[i, o]))) for o in range(O)]
    tdx = Trace("dense backward", D2, f"dx[{n},{i}]", terms, math.fsum(t.value for t in terms),
                "nptl.ops.dense_backward", float(gx[n, i]), inputs=inputs, output=("dx", gx),
                notes=[f"x[{n},{i}] fed every output y[{n},o] through w[{i},o]"])
    i, o = _at(dw_at, w.shape, "dw_at", "dw (the shape of w)")
    terms = [Term.product(Factor("x", (n, i), float(x[n, i])), Factor("dy", (n, o), float(dy[n, o]))) for n in range(N)]
    tdw = Trace("dense backward", D3, f"dw[{i},{o}]", terms, math.fsum(t.value for t in terms),
                "nptl.ops.dense_backward", float(gw[i, o]), inputs=inputs, output=("dw", gw),
                notes=[f"w[{i},{o}] multiplied x[n,{i}] in y[n,{o}] for each of the {N} sample(s)"])
    (o,) = _at(db_at, (O,), "db_at", "db")
    terms = [Term.product(Factor("dy", (n, o), float(dy[n, o]))) for n in range(N)]
    tdb = Trace("dense backward", D4, f"db[{o}]", terms, math.fsum(t.value for t in terms),
                "nptl.ops.dense_backward", float(gb[o]), inputs=inputs, output=("db", gb))
    return [tdx, tdw, tdb]


# ----------------------------------------------------------------------------------------------
# activations (R1)-(SM2)
# ----------------------------------------------------------------------------------------------
def _same(dy, x, name="dy"):
    dy = _f64(dy, name)
    if dy.shape != x.shape:
        raise ExplainError(f"'{name}' must have the shape of x {x.shape}, got {dy.shape}", name)
    return dy


def _sigma(v: float) -> float:
    """(S1) without overflow, in float64."""
    return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))


def relu(x, at=None) -> Trace:
    """(R1) ``y = max(x, 0)`` at one element: a max over the entry and the constant 0."""
    x = _f64(x, "x")
    at = _at(at, x.shape, "at", "the output y")
    xf = Factor("x", at, float(x[at]))
    from . import ops

    y = ops.relu(x)
    return Trace("relu", "(R1) y = max(x, 0)", f"y[{_idx(at)}]", [Term.product(xf), Term((), 0.0, "0", "0")],
                 max(xf.value, 0.0), "nptl.ops.relu", float(y[at]), combine="max",
                 inputs={"x": x}, output=("y", y))


def relu_backward(dy, x, at=None) -> Trace:
    """(R2) ``dx = dy·[x > 0]``."""
    x = _f64(x, "x")
    dy = _same(dy, x)
    at = _at(at, x.shape, "at", "dx (the shape of x)")
    g, xv = float(dy[at]), float(x[at])
    gate = 1.0 if xv > 0 else 0.0
    term = Term((Factor("dy", at, g), Factor("x", at, xv)), g * gate, f"dy[{_idx(at)}]·[x[{_idx(at)}] > 0]",
                f"{_par(g)}·[{fmt(xv)} > 0]")
    from . import ops

    gx = ops.relu_backward(dy, x)
    return Trace("relu backward", "(R2) dx = dy·[x > 0]   (0 at x = 0)", f"dx[{_idx(at)}]", [term], term.value,
                 "nptl.ops.relu_backward", float(gx[at]),
                 notes=["the gradient passes where the input was positive, else it stops"],
                 inputs={"x": x, "dy": dy}, output=("dx", gx))


def sigmoid(x, at=None) -> Trace:
    """(S1) ``y = 1/(1+e^{−x})`` at one element."""
    x = _f64(x, "x")
    at = _at(at, x.shape, "at", "the output y")
    xv = float(x[at])
    from . import ops

    y = ops.sigmoid(x)
    return Trace("sigmoid", "(S1) y = 1/(1 + e^(−x))", f"y[{_idx(at)}]", [Term.product(Factor("x", at, xv))],
                 _sigma(xv), "nptl.ops.sigmoid", float(y[at]), sum_line=False,
                 steps=[Step(f"y[{_idx(at)}]", f"1/(1 + e^(−x[{_idx(at)}]))", f"1/(1 + e^({fmt(-xv)}))", _sigma(xv))],
                 inputs={"x": x}, output=("y", y))


def sigmoid_backward(dy, x, at=None) -> Trace:
    """(S2) ``dx = dy·y·(1 − y)`` with ``y = σ(x)``."""
    x = _f64(x, "x")
    dy = _same(dy, x)
    at = _at(at, x.shape, "at", "dx (the shape of x)")
    xv, g = float(x[at]), float(dy[at])
    s = _sigma(xv)
    term = Term((Factor("dy", at, g), Factor("x", at, xv)), g * s * (1 - s), f"dy[{_idx(at)}]·y·(1 − y)",
                f"{_par(g)}·{fmt(s)}·{fmt(1 - s)}")
    from . import ops

    gx = ops.sigmoid_backward(dy, ops.sigmoid(x))
    return Trace("sigmoid backward", "(S2) dx = dy·σ(x)·(1 − σ(x))", f"dx[{_idx(at)}]", [term], term.value,
                 "nptl.ops.sigmoid_backward", float(gx[at]),
                 before=[Step(f"y = σ(x[{_idx(at)}])", f"1/(1 + e^(−x[{_idx(at)}]))", f"1/(1 + e^({fmt(-xv)}))", s)],
                 inputs={"x": x, "dy": dy}, output=("dx", gx))


def _row_exps(x, row: tuple, name: str):
    """``m = max_j x[row, j]`` and the terms ``e^(x[row,j] − m)`` of a softmax denominator."""
    vals = [float(v) for v in x[row]]
    m = max(vals)
    r = _idx(row)
    before = Step("m", f"max_j {name}[{r},j]", f"max({', '.join(fmt(v) for v in vals)})", m)
    terms = [Term((Factor(name, row + (k,), v),), math.exp(v - m), f"e^({name}[{r},{k}] − m)",
                  f"e^({fmt(v)} − {_par(m)})") for k, v in enumerate(vals)]
    return m, before, terms


def softmax(x, at=None) -> Trace:
    """(SM1) over the last axis at one element."""
    x = _f64(x, "x")
    if x.ndim == 0:
        raise ExplainError("'x' must have at least 1 dimension, got a scalar", "x")
    at = _at(at, x.shape, "at", "the output y")
    row, k = at[:-1], at[-1]
    m, before, terms = _row_exps(x, row, "x")
    s = math.fsum(t.value for t in terms)
    from . import ops

    y = ops.softmax(x)
    return Trace("softmax", "(SM1) y[..,k] = e^(x[..,k] − m)/Σ_j e^(x[..,j] − m),  m = max_j x[..,j]",
                 f"y[{_idx(at)}]", terms, terms[k].value / s, "nptl.ops.softmax", float(y[at]), combined="s",
                 before=[before], steps=[Step(f"y[{_idx(at)}]", f"e^(x[{_idx(at)}] − m)/s",
                                              f"{fmt(terms[k].value)}/{fmt(s)}", terms[k].value / s)],
                 notes=["subtracting m changes nothing mathematically and keeps every e^(·) ≤ 1 (no overflow)"],
                 inputs={"x": x}, output=("y", y))


def softmax_backward(dy, x, at=None) -> Trace:
    """(SM2) ``dx_k = y_k (dy_k − Σ_j dy_j y_j)`` with ``y = softmax(x)``."""
    x = _f64(x, "x")
    dy = _same(dy, x)
    if x.ndim == 0:
        raise ExplainError("'x' must have at least 1 dimension, got a scalar", "x")
    at = _at(at, x.shape, "at", "dx (the shape of x)")
    row, k = at[:-1], at[-1]
    vals = x[row]
    e = np.exp(vals - vals.max())
    y = e / math.fsum(e)
    r = _idx(row)
    terms = [Term((Factor("dy", row + (j,), float(dy[row + (j,)])), Factor("x", row + (j,), float(vals[j]))),
                  float(dy[row + (j,)]) * float(y[j]), f"dy[{r},{j}]·y[{r},{j}]", f"{_par(dy[row + (j,)])}·{fmt(y[j])}")
             for j in range(len(vals))]
    s = math.fsum(t.value for t in terms)
    total = float(y[k]) * (float(dy[at]) - s)
    from . import ops

    gx = ops.softmax_backward(dy, ops.softmax(x))
    return Trace("softmax backward", "(SM2) dx[..,k] = y[..,k]·(dy[..,k] − Σ_j dy[..,j]·y[..,j])",
                 f"dx[{_idx(at)}]", terms, total, "nptl.ops.softmax_backward", float(gx[at]),
                 combined="s", steps=[Step(f"dx[{_idx(at)}]", f"y[{_idx(at)}]·(dy[{_idx(at)}] − s)",
                                           f"{fmt(y[k])}·({fmt(dy[at])} − {fmt(s)})", total)],
                 notes=[f"y[{r},·] = softmax(x[{r},·]) = ({', '.join(fmt(v) for v in y)})",
                        "from ∂y_k/∂x_j = y_k(δ_kj − y_j): every output of the row fed x's gradient"],
                 inputs={"x": x, "dy": dy}, output=("dx", gx))


# ----------------------------------------------------------------------------------------------
# losses (L1)-(M2)
# ----------------------------------------------------------------------------------------------
L1 = "(L1) L = (1/N) Σ_n ℓ_n,  ℓ_n = m_n + log Σ_k e^(z[n,k] − m_n) − z[n,y_n],  m_n = max_k z[n,k]"
L2 = "(L2) dz[n,k] = (softmax(z)[n,k] − [k = y_n])/N"


def _ce_args(logits, labels):
    z = _f64(logits, "logits")
    _ndim(z, 2, "logits", "(N, classes)")
    if z.shape[0] == 0 or z.shape[1] == 0:
        raise ExplainError(f"'logits' has shape {z.shape}: it is empty", "logits")
    from .ops import check_labels

    try:
        lab = check_labels(labels, z.shape[0], z.shape[1], "explain cross_entropy")
    except (TypeError, ValueError) as err:
        raise ExplainError(str(err), "labels") from None
    return z, lab


def cross_entropy(logits, labels) -> Trace:
    """(L1): the mean over the batch of each sample's loss, each shown as its log-sum-exp."""
    z, lab = _ce_args(logits, labels)
    N = z.shape[0]
    terms, before = [], []
    for n in range(N):
        m, _, exps = _row_exps(z, (n,), "z")
        lse = m + math.log(math.fsum(t.value for t in exps))
        yn = int(lab[n])
        ln = lse - float(z[n, yn])
        before.append(Step(f"ℓ_{n}", f"m_{n} + log(" + " + ".join(t.symbol.replace("− m", f"− m_{n}") for t in exps)
                           + f") − z[{n},{yn}]",
                           f"{fmt(m)} + log(" + " + ".join(t.numbers for t in exps) + f") − {_par(z[n, yn])}", ln))
        terms.append(Term((Factor("z", (n, yn), float(z[n, yn])), Factor("labels", (n,), float(yn))), ln,
                          f"ℓ_{n}", fmt(ln)))
    s = math.fsum(t.value for t in terms)
    from . import ops

    loss, _ = ops.cross_entropy(z, lab)
    return Trace("cross_entropy", L1, "L", terms, s / N, "nptl.ops.cross_entropy", float(loss), combined="s",
                 before=before, steps=[Step("L", f"s/{N}", f"{fmt(s)}/{N}", s / N)],
                 notes=[f"labels y = {lab.tolist()}; ℓ_n = −log softmax(z[n])[y_n], computed without forming the "
                        "softmax (log-sum-exp)"], inputs={"logits": z, "labels": lab})


def cross_entropy_backward(logits, labels, at=None) -> Trace:
    """(L2) at ``dz[at]``: softmax of the row minus the one-hot label, divided by N."""
    z, lab = _ce_args(logits, labels)
    N = z.shape[0]
    n, k = _at(at, z.shape, "at", "dz (the shape of logits)")
    m, before, terms = _row_exps(z, (n,), "z")
    s = math.fsum(t.value for t in terms)
    p = terms[k].value / s
    onehot = 1.0 if k == lab[n] else 0.0
    target = f"dz[{n},{k}]"
    from . import ops

    _, dz = ops.cross_entropy(z, lab)
    return Trace("cross_entropy backward", L2, target, terms, (p - onehot) / N, "nptl.ops.cross_entropy",
                 float(dz[n, k]), combined="s", before=[before],
                 steps=[Step(f"p[{n},{k}]", f"e^(z[{n},{k}] − m)/s", f"{fmt(terms[k].value)}/{fmt(s)}", p),
                        Step(target, f"(p[{n},{k}] − [{k} = y_{n}])/N", f"({fmt(p)} − {fmt(onehot)})/{N}",
                             (p - onehot) / N)],
                 notes=[f"y_{n} = {int(lab[n])}: the label's logit gets softmax − 1 (pushed up), the others "
                        "softmax (pushed down)"],
                 inputs={"logits": z, "labels": lab}, output=("dz", dz))


B1 = "(B1) L = (1/M) Σ_k ℓ_k,  ℓ_k = max(z_k, 0) − z_k·t_k + log(1 + e^(−|z_k|))"
B2 = "(B2) dz[k] = (σ(z[k]) − t[k])/M"


def _pair(a, b, names):
    a, b = _f64(a, names[0]), _f64(b, names[1])
    if a.shape != b.shape:
        raise ExplainError(f"'{names[0]}' and '{names[1]}' must have the same shape, got {a.shape} and {b.shape}",
                           names[1])
    if a.size == 0:
        raise ExplainError(f"'{names[0]}' has shape {a.shape}: it is empty", names[0])
    return a, b


def binary_cross_entropy(logits, targets) -> Trace:
    """(B1) in the stable form: one term per element."""
    z, t = _pair(logits, targets, ("logits", "targets"))
    M = z.size
    terms, before = [], []
    for idx in np.ndindex(z.shape):
        v, tv = float(z[idx]), float(t[idx])
        ell = max(v, 0.0) - v * tv + math.log1p(math.exp(-abs(v)))
        r = _idx(idx)
        before.append(Step(f"ℓ[{r}]", f"max(z[{r}], 0) − z[{r}]·t[{r}] + log(1 + e^(−|z[{r}]|))",
                           f"{fmt(max(v, 0.0))} − {_par(v)}·{_par(tv)} + log(1 + e^({fmt(-abs(v))}))", ell))
        terms.append(Term((Factor("z", idx, v), Factor("t", idx, tv)), ell, f"ℓ[{r}]", fmt(ell)))
    s = math.fsum(term.value for term in terms)
    from . import ops

    loss, _ = ops.binary_cross_entropy(z, t)
    return Trace("binary_cross_entropy", B1, "L", terms, s / M, "nptl.ops.binary_cross_entropy", float(loss),
                 combined="s", before=before, steps=[Step("L", f"s/{M}", f"{fmt(s)}/{M}", s / M)],
                 notes=["ℓ equals −t·log σ(z) − (1−t)·log(1 − σ(z)) but never takes the log of 0"],
                 inputs={"logits": z, "targets": t})


def binary_cross_entropy_backward(logits, targets, at=None) -> Trace:
    """(B2) at ``dz[at]``."""
    z, t = _pair(logits, targets, ("logits", "targets"))
    at = _at(at, z.shape, "at", "dz (the shape of logits)")
    v, tv, M = float(z[at]), float(t[at]), z.size
    s = _sigma(v)
    target = f"dz[{_idx(at)}]"
    from . import ops

    _, dz = ops.binary_cross_entropy(z, t)
    term = Term((Factor("z", at, v), Factor("t", at, tv)), (s - tv) / M, f"(σ(z[{_idx(at)}]) − t[{_idx(at)}])/{M}",
                f"({fmt(s)} − {fmt(tv)})/{M}")
    return Trace("binary_cross_entropy backward", B2, target, [term], term.value, "nptl.ops.binary_cross_entropy",
                 float(dz[at]), inputs={"logits": z, "targets": t}, output=("dz", dz))


M1 = "(M1) L = (1/M) Σ_k (p_k − t_k)²"
M2 = "(M2) dp[k] = 2·(p[k] − t[k])/M"


def mse(pred, target) -> Trace:
    """(M1): one squared difference per element."""
    p, t = _pair(pred, target, ("pred", "target"))
    M = p.size
    terms = []
    for idx in np.ndindex(p.shape):
        r, pv, tv = _idx(idx), float(p[idx]), float(t[idx])
        terms.append(Term((Factor("p", idx, pv), Factor("t", idx, tv)), (pv - tv) ** 2, f"(p[{r}] − t[{r}])²",
                          f"({fmt(pv)} − {_par(tv)})²"))
    s = math.fsum(term.value for term in terms)
    from . import ops

    loss, _ = ops.mse(p, t)
    return Trace("mse", M1, "L", terms, s / M, "nptl.ops.mse", float(loss), combined="s",
                 steps=[Step("L", f"s/{M}", f"{fmt(s)}/{M}", s / M)], inputs={"pred": p, "target": t})


def mse_backward(pred, target, at=None) -> Trace:
    """(M2) at ``dp[at]``."""
    p, t = _pair(pred, target, ("pred", "target"))
    at = _at(at, p.shape, "at", "dp (the shape of pred)")
    pv, tv, M = float(p[at]), float(t[at]), p.size
    from . import ops

    _, dp = ops.mse(p, t)
    r = _idx(at)
    term = Term((Factor("p", at, pv), Factor("t", at, tv)), 2 * (pv - tv) / M, f"2·(p[{r}] − t[{r}])/{M}",
                f"2·({fmt(pv)} − {_par(tv)})/{M}")
    return Trace("mse backward", M2, f"dp[{r}]", [term], term.value, "nptl.ops.mse", float(dp[at]),
                 inputs={"pred": p, "target": t}, output=("dp", dp))


# ----------------------------------------------------------------------------------------------
# batch normalisation (BN1)-(BN5), per channel c over its M = N·H·W values
# ----------------------------------------------------------------------------------------------
BN2 = "(BN1)-(BN2) y = γ_c·(x − μ_c)/√(σ²_c + ε) + β_c,  μ_c = (1/M) Σ x[·,c,·],  σ²_c = (1/M) Σ (x[·,c,·] − μ_c)²"
BN5 = "(BN5) y = γ_c·(x − r_μ)/√(r_σ² + ε) + β_c   (inference: running statistics)"
BN3G = "(BN3) dγ_c = Σ_{n,h,w} dy[n,c,h,w]·x̂[n,c,h,w]"
BN3B = "(BN3) dβ_c = Σ_{n,h,w} dy[n,c,h,w]"
BN4 = "(BN4) dx[j] = Σ_k dy[k]·γ_c/√(σ²_c + ε)·([k = j] − 1/M − x̂[k]·x̂[j]/M)   (k, j over channel c)"
BN5D = "(BN5) dx = γ_c·dy/√(r_σ² + ε)"


def _bn_args(x, gamma, mean, var):
    x, gamma = _f64(x, "x"), _f64(gamma, "gamma")
    if x.ndim not in (2, 4):
        raise ExplainError(f"'x' must be 2-D (N, C) or 4-D (N, C, H, W), got shape {x.shape}", "x")
    C = x.shape[1]
    if gamma.shape != (C,):
        raise ExplainError(f"'gamma' must have shape ({C},), got {gamma.shape}", "gamma")
    if (mean is None) != (var is None):
        raise ExplainError("give both 'mean' and 'var' (inference mode) or neither (batch statistics)", "mean")
    if mean is not None:
        mean, var = _f64(mean, "mean"), _f64(var, "var")
    elif x.size // max(C, 1) < 2:
        raise ExplainError(f"batch statistics need more than one value per channel, got x of shape {x.shape}", "x")
    return x, gamma, mean, var


def _channel(shape, c) -> list:
    """Every index of channel ``c`` in an ``(N, C, ...)`` array, in row-major order."""
    return [(n, c) + rest for n in range(shape[0]) for rest in np.ndindex(*shape[2:])]


def _bn_stats(x, c, mean, var, eps):
    """μ_c, σ²_c (batch (BN1) or running (BN5)), the lines that compute them, and the terms of μ."""
    idx = _channel(x.shape, c)
    if mean is not None:
        return float(mean[c]), float(var[c]), [], []
    M = len(idx)
    terms = [Term.product(Factor("x", k, float(x[k]))) for k in idx]
    mu = math.fsum(t.value for t in terms) / M
    sq = [(float(x[k]) - mu) ** 2 for k in idx]
    sig2 = math.fsum(sq) / M
    shown = sq if M <= 12 else sq[:5] + [None] + sq[-1:]
    nums = " + ".join("..." if v is None else fmt(v) for v in shown)
    before = [Step(f"σ²_{c}", f"(1/{M}) Σ (x[·,{c},·] − μ_{c})²", f"({nums})/{M}", sig2)]
    return mu, sig2, before, terms


def batch_norm(x, gamma, beta, mean=None, var=None, eps=1e-5, at=None) -> Trace:
    """Trace of (BN1)-(BN2) at ``y[at]`` (or (BN5) with running ``mean``/``var``): the terms are
    the channel's values whose mean is μ_c."""
    x, gamma, mean, var = _bn_args(x, gamma, mean, var)
    beta = _f64(beta, "beta")
    at = _at(at, x.shape, "at", "the output y")
    c = at[1]
    mu, sig2, before, terms = _bn_stats(x, c, mean, var, eps)
    root = math.sqrt(sig2 + eps)
    xv = float(x[at])
    xhat = (xv - mu) / root
    y_val = float(gamma[c]) * xhat + float(beta[c])
    r = _idx(at)
    steps = ([] if mean is None else [Step(f"μ_{c}", "r_μ", fmt(mu), mu), Step(f"σ²_{c}", "r_σ²", fmt(sig2), sig2)])
    steps += [Step(f"x̂[{r}]", f"(x[{r}] − μ_{c})/√(σ²_{c} + ε)", f"({fmt(xv)} − {_par(mu)})/√({fmt(sig2)} + {fmt(eps)})",
                   xhat),
              Step(f"y[{r}]", f"γ_{c}·x̂ + β_{c}", f"{_par(gamma[c])}·{_par(xhat)} + {_par(beta[c])}", y_val)]
    if mean is None:
        M = len(terms)
        steps.insert(0, Step(f"μ_{c}", f"s/{M}", f"{fmt(math.fsum(t.value for t in terms))}/{M}", mu))
        steps.insert(1, before[0])
    from . import ops

    y = ops.batch_norm(x, gamma, beta, mean, var, eps)
    return Trace("batch_norm", BN2 if mean is None else BN5, f"y[{r}]", terms, y_val, "nptl.ops.batch_norm",
                 float(y[at]), combined="s", steps=steps,
                 notes=[f"channel {c} is normalised by its own mean and variance over the batch"
                        + ("" if x.ndim == 2 else " and all positions") if mean is None else
                        "inference mode: the running statistics are constants"],
                 inputs={"x": x, "gamma": gamma, "beta": beta} | ({} if mean is None else {"mean": mean, "var": var}),
                 output=("y", y))


def batch_norm_backward(dy, x, gamma, mean=None, var=None, eps=1e-5, dx_at=None, dgamma_at=None,
                        dbeta_at=None) -> list:
    """Traces of (BN4) (or (BN5)) at ``dx[dx_at]``: every output of the channel fed that entry
    through μ_c and σ²_c; and (BN3) at ``dgamma[dgamma_at]``, ``dbeta[dbeta_at]``."""
    x, gamma, mean, var = _bn_args(x, gamma, mean, var)
    dy = _same(dy, x)
    from . import ops

    gx, gg, gb = ops.batch_norm_backward(dy, x, gamma, mean, var, eps)
    inputs = {"x": x, "gamma": gamma, "dy": dy} | ({} if mean is None else {"mean": mean, "var": var})
    j = _at(dx_at, x.shape, "dx_at", "dx (the shape of x)")
    c = j[1]
    mu, sig2, _, _ = _bn_stats(x, c, mean, var, eps)
    root = math.sqrt(sig2 + eps)
    idx = _channel(x.shape, c)
    M = len(idx)
    xhat = {k: (float(x[k]) - mu) / root for k in idx}
    g = float(gamma[c])
    if mean is None:
        terms = []
        for k in idx:                                                       # (BN4)
            delta = 1.0 if k == j else 0.0
            coef = g / root * (delta - 1.0 / M - xhat[k] * xhat[j] / M)
            terms.append(Term((Factor("dy", k, float(dy[k])), Factor("x", k, float(x[k]))), float(dy[k]) * coef,
                              f"dy[{_idx(k)}]·J[{_idx(k)}]", f"{_par(dy[k])}·{_par(coef)}"))
        notes = [f"J[k] = γ_{c}/√(σ²_{c} + ε)·([k = j] − 1/{M} − x̂[k]·x̂[j]/{M}) = ∂y[k]/∂x[{_idx(j)}]: every output of "
                 f"channel {c} depends on x[{_idx(j)}] through μ_{c} and σ²_{c}",
                 f"μ_{c} = {fmt(mu)}, σ²_{c} = {fmt(sig2)}, x̂[{_idx(j)}] = {fmt(xhat[j])}"]
        tdx = Trace("batch_norm backward", BN4, f"dx[{_idx(j)}]", terms, math.fsum(t.value for t in terms),
                    "nptl.ops.batch_norm_backward", float(gx[j]), notes=notes, inputs=inputs, output=("dx", gx))
    else:
        term = Term((Factor("dy", j, float(dy[j])),), float(dy[j]) * g / root, f"γ_{c}·dy[{_idx(j)}]/√(r_σ² + ε)",
                    f"{_par(g)}·{_par(dy[j])}/√({fmt(sig2)} + {fmt(eps)})")
        tdx = Trace("batch_norm backward", BN5D, f"dx[{_idx(j)}]", [term], term.value, "nptl.ops.batch_norm_backward",
                    float(gx[j]), notes=["inference mode: μ and σ² are constants, only the direct path remains"],
                    inputs=inputs, output=("dx", gx))
    (c,) = _at(dgamma_at, (x.shape[1],), "dgamma_at", "dgamma")
    mu, sig2, _, _ = _bn_stats(x, c, mean, var, eps)
    root = math.sqrt(sig2 + eps)
    terms = [Term((Factor("dy", k, float(dy[k])), Factor("x", k, float(x[k]))), float(dy[k]) * (float(x[k]) - mu) / root,
                  f"dy[{_idx(k)}]·x̂[{_idx(k)}]", f"{_par(dy[k])}·{_par((float(x[k]) - mu) / root)}")
             for k in _channel(x.shape, c)]                                 # (BN3)
    tg = Trace("batch_norm backward", BN3G, f"dgamma[{c}]", terms, math.fsum(t.value for t in terms),
               "nptl.ops.batch_norm_backward", float(gg[c]), notes=[f"x̂ = (x − μ_{c})/√(σ²_{c} + ε), μ_{c} = {fmt(mu)}, "
                                                                   f"σ²_{c} = {fmt(sig2)}"],
               inputs=inputs, output=("dgamma", gg))
    (c,) = _at(dbeta_at, (x.shape[1],), "dbeta_at", "dbeta")
    terms = [Term.product(Factor("dy", k, float(dy[k]))) for k in _channel(x.shape, c)]   # (BN3)
    tb = Trace("batch_norm backward", BN3B, f"dbeta[{c}]", terms, math.fsum(t.value for t in terms),
               "nptl.ops.batch_norm_backward", float(gb[c]), inputs=inputs, output=("dbeta", gb))
    return [tdx, tg, tb]


# ----------------------------------------------------------------------------------------------
# adaptive and global average pooling (AP1), (AP2); dropout (DO1), (DO2)
# ----------------------------------------------------------------------------------------------
AP1 = "(AP1) y[n,c,i,j] = (1/|bin|) Σ_{h,w in bin (i,j)} x[n,c,h,w],  rows floor(i·H/Ho) ≤ h < ceil((i+1)·H/Ho)"
AP2 = "(AP2) dx[n,c,h,w] = Σ_{bins (i,j) containing (h,w)} dy[n,c,i,j]/|bin (i,j)|"
GAP1 = "(AP1) y[n,c] = (1/(H·W)) Σ_h Σ_w x[n,c,h,w]   (one bin: the whole plane)"
GAP2 = "(AP2) dx[n,c,h,w] = dy[n,c]/(H·W)"


def _bin(i: int, size: int, out: int) -> tuple:
    """Rows (or columns) ``[floor(i·size/out), ceil((i+1)·size/out))`` of output position ``i`` (AP1)."""
    return math.floor(i * size / out), math.ceil((i + 1) * size / out)


def _adaptive_args(x, output_size):
    x = _f64(x, "x")
    _ndim(x, 4, "x", "(N, C, H, W)")
    Ho, Wo = (output_size, output_size) if np.ndim(output_size) == 0 else tuple(output_size)
    if not (int(Ho) >= 1 and int(Wo) >= 1):
        raise ExplainError(f"'output_size' must be >= 1, got {output_size}", "output_size")
    return x, int(Ho), int(Wo)


def adaptive_avg_pool2d(x, output_size, at=None) -> Trace:
    """Trace of (AP1) at ``y[at]``: the bin of input rows and columns that output averages."""
    x, Ho, Wo = _adaptive_args(x, output_size)
    n, c, i, j = at = _at(at, (x.shape[0], x.shape[1], Ho, Wo), "at", "the output y")
    (h0, h1), (w0, w1) = _bin(i, x.shape[2], Ho), _bin(j, x.shape[3], Wo)
    terms = [Term.product(Factor("x", (n, c, h, w), float(x[n, c, h, w]))) for h in range(h0, h1) for w in range(w0, w1)]
    s, size = math.fsum(t.value for t in terms), len(terms)
    target = f"y[{_idx(at)}]"
    from . import ops

    y = ops.adaptive_avg_pool2d(x, (Ho, Wo))
    return Trace("adaptive_avg_pool2d", AP1, target, terms, s / size, "nptl.ops.adaptive_avg_pool2d", float(y[at]),
                 combined="s", steps=[Step(target, f"s/{size}", f"{fmt(s)}/{size}", s / size)],
                 notes=[f"bin ({i},{j}): rows {h0}..{h1 - 1} of {x.shape[2]}, columns {w0}..{w1 - 1} of {x.shape[3]}"],
                 inputs={"x": x}, output=("y", y))


def adaptive_avg_pool2d_backward(dy, x, output_size, at=None) -> Trace:
    """Trace of (AP2) at ``dx[at]``: every bin containing that entry passes back ``dy/|bin|``."""
    x, Ho, Wo = _adaptive_args(x, output_size)
    dy = _f64(dy, "dy")
    if dy.shape != (x.shape[0], x.shape[1], Ho, Wo):
        raise ExplainError(f"'dy' must have the output's shape {(x.shape[0], x.shape[1], Ho, Wo)}, got {dy.shape}", "dy")
    n, c, h, w = at = _at(at, x.shape, "at", "dx (the shape of x)")
    terms = []
    for i in range(Ho):
        (h0, h1) = _bin(i, x.shape[2], Ho)
        for j in range(Wo):
            (w0, w1) = _bin(j, x.shape[3], Wo)
            if h0 <= h < h1 and w0 <= w < w1:
                size = (h1 - h0) * (w1 - w0)
                g = float(dy[n, c, i, j])
                terms.append(Term((Factor("dy", (n, c, i, j), g),), g / size, f"dy[{_idx((n, c, i, j))}]/{size}",
                                  f"{_par(g)}/{size}"))
    from . import ops

    gx = ops.adaptive_avg_pool2d_backward(dy, x, (Ho, Wo))
    return Trace("adaptive_avg_pool2d backward", AP2, f"dx[{_idx(at)}]", terms, math.fsum(t.value for t in terms),
                 "nptl.ops.adaptive_avg_pool2d_backward", float(gx[at]),
                 notes=[f"x[{_idx(at)}] lies in {len(terms)} bin(s) (neighbouring bins overlap by a row or column "
                        "where the size does not divide evenly)"], inputs={"x": x, "dy": dy}, output=("dx", gx))


def global_avg_pool2d(x, at=None) -> Trace:
    """Trace of (AP1) with one bin per plane: ``y[n, c]`` is the mean of ``x[n, c]``."""
    x = _f64(x, "x")
    _ndim(x, 4, "x", "(N, C, H, W)")
    n, c = at = _at(at, x.shape[:2], "at", "the output y")
    terms = [Term.product(Factor("x", (n, c, h, w), float(x[n, c, h, w])))
             for h in range(x.shape[2]) for w in range(x.shape[3])]
    s, size = math.fsum(t.value for t in terms), x.shape[2] * x.shape[3]
    from . import ops

    y = ops.global_avg_pool2d(x)
    return Trace("global_avg_pool2d", GAP1, f"y[{n},{c}]", terms, s / size, "nptl.ops.global_avg_pool2d", float(y[at]),
                 combined="s", steps=[Step(f"y[{n},{c}]", f"s/{size}", f"{fmt(s)}/{size}", s / size)],
                 inputs={"x": x}, output=("y", y))


def global_avg_pool2d_backward(dy, x, at=None) -> Trace:
    """Trace of (AP2) for the global mean: every position of the plane gets ``dy[n,c]/(H·W)``."""
    x = _f64(x, "x")
    _ndim(x, 4, "x", "(N, C, H, W)")
    dy = _f64(dy, "dy")
    if dy.shape != x.shape[:2]:
        raise ExplainError(f"'dy' must have the output's shape {x.shape[:2]}, got {dy.shape}", "dy")
    n, c, h, w = at = _at(at, x.shape, "at", "dx (the shape of x)")
    size, g = x.shape[2] * x.shape[3], float(dy[n, c])
    term = Term((Factor("dy", (n, c), g),), g / size, f"dy[{n},{c}]/{size}", f"{_par(g)}/{size}")
    from . import ops

    gx = ops.global_avg_pool2d_backward(dy, x)
    return Trace("global_avg_pool2d backward", GAP2, f"dx[{_idx(at)}]", [term], term.value,
                 "nptl.ops.global_avg_pool2d_backward", float(gx[at]), inputs={"x": x, "dy": dy}, output=("dx", gx))


DO1 = "(DO1) y = x·keep/(1 − rate)   (keep from (DO3): a seeded mask, kept entries scaled so E[y] = x)"
DO2 = "(DO2) dx = dy·keep/(1 − rate)"


def _dropout_args(a, mask, rate, name):
    a = _f64(a, name)
    keep = np.asarray(mask)
    if keep.shape != a.shape:
        raise ExplainError(f"'mask' must have the shape of {name} {a.shape}, got {keep.shape}", "mask")
    if not 0 <= float(rate) < 1:
        raise ExplainError(f"'rate' must be in [0, 1), got {rate}", "rate")
    return a, keep.astype(bool), float(rate)


def _dropout_trace(op, formula, a, keep, rate, at, name, out, kernel, value, inputs, output):
    at = _at(at, a.shape, "at", f"the output {out}" if out == "y" else f"{out} (the shape of {name})")
    k, v = bool(keep[at]), float(a[at])
    term = Term((Factor(name, at, v), Factor("keep", at, float(k))), v * k / (1 - rate),
                f"{name}[{_idx(at)}]·keep[{_idx(at)}]/(1 − rate)", f"{_par(v)}·{int(k)}/(1 − {fmt(rate)})")
    return Trace(op, formula, f"{out}[{_idx(at)}]", [term], term.value, kernel, float(value[at]),
                 notes=["kept: scaled by 1/(1 − rate)" if k else "dropped: 0 (no gradient passes either)"],
                 inputs=inputs, output=(output, value))


def _dropout_mask(shape, rate, seed):
    """The op's own seeded keep-mask (DO3), as the Dropout layer draws it."""
    from . import ops

    return ops.dropout_mask(shape, rate, seed)


def dropout(x, mask, rate, at=None) -> Trace:
    """Trace of (DO1) at ``y[at]``, with the boolean keep-``mask`` (e.g. ``ops.dropout_mask``)."""
    x, keep, rate = _dropout_args(x, mask, rate, "x")
    from . import ops

    y = ops.dropout(x, keep, rate)
    return _dropout_trace("dropout", DO1, x, keep, rate, at, "x", "y", "nptl.ops.dropout", y,
                          {"x": x, "keep": keep.astype(np.float64)}, "y")


def dropout_backward(dy, mask, rate, at=None) -> Trace:
    """Trace of (DO2) at ``dx[at]``."""
    dy, keep, rate = _dropout_args(dy, mask, rate, "dy")
    from . import ops

    gx = ops.dropout_backward(dy, keep, rate)
    return _dropout_trace("dropout backward", DO2, dy, keep, rate, at, "dy", "dx", "nptl.ops.dropout_backward", gx,
                          {"dy": dy, "keep": keep.astype(np.float64)}, "dx")


# ----------------------------------------------------------------------------------------------
# transposed convolution (T1)-(T4) and nearest-neighbour upsampling (U1)-(U2)
# ----------------------------------------------------------------------------------------------
T1 = "(T1) y[n,f,h,v] = b[f] + Σ_c Σ_{(i,p): i·s+p = h+P} Σ_{(j,q): j·s+q = v+P} x[n,c,i,j]·w[c,f,p,q]"
T2 = "(T2) dx[n,c,i,j] = Σ_f Σ_p Σ_q dyp[n,f,i·s+p,j·s+q]·w[c,f,p,q]   (dyp: dy zero-padded by P)"
T3 = "(T3) dw[c,f,p,q] = Σ_n Σ_i Σ_j x[n,c,i,j]·dyp[n,f,i·s+p,j·s+q]"
T4 = "(T4) db[f] = Σ_n Σ_h Σ_v dy[n,f,h,v]"


def _convt_args(x, w, stride, padding, output_padding):
    x, w = _f64(x, "x"), _f64(w, "w")
    _ndim(x, 4, "x", "(N, C, H, W)")
    _ndim(w, 4, "w", "(C, F, KH, KW)")
    from .ops import conv_transpose2d_output_shape

    try:
        out = conv_transpose2d_output_shape(x.shape, w.shape, stride, padding, output_padding,
                                            where="explain conv_transpose2d")
    except (TypeError, ValueError) as err:
        raise ExplainError(str(err)) from None
    if any(s < 1 for s in out):
        raise ExplainError(f"the output would have shape {out}: it is empty")
    return x, w, out


def _padded(a, name, index) -> Factor:
    """``a[index]`` or, outside ``a``'s last two axes, a zero-padding factor."""
    inside = all(0 <= k < s for k, s in zip(index[2:], a.shape[2:]))
    return Factor(name, index, float(a[index]) if inside else 0.0, padding=not inside)


def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0, at=None) -> Trace:
    """Trace of (T1) at ``y[at]``: every input position whose kernel footprint covers that output."""
    x, w, out = _convt_args(x, w, stride, padding, output_padding)
    C, F, KH, KW = w.shape
    b = np.zeros(F) if b is None else _f64(b, "b")
    if b.shape != (F,):
        raise ExplainError(f"'b' must have shape ({F},), got {b.shape}", "b")
    n, f, h, v = at = _at(at, out, "at", "the output y")
    terms = [Term.product(Factor("b", (f,), float(b[f])))]
    for c, i, p in itertools.product(range(C), range(x.shape[2]), range(KH)):      # (T1)
        if i * stride + p != h + padding:
            continue
        for j, q in itertools.product(range(x.shape[3]), range(KW)):
            if j * stride + q == v + padding:
                terms.append(Term.product(Factor("x", (n, c, i, j), float(x[n, c, i, j])),
                                          Factor("w", (c, f, p, q), float(w[c, f, p, q]))))
    from . import ops

    y = ops.conv_transpose2d(x, w, b, stride, padding, output_padding)
    return Trace("conv_transpose2d", T1, f"y[{_idx(at)}]", terms, math.fsum(t.value for t in terms),
                 "nptl.ops.conv_transpose2d", float(y[at]),
                 notes=[f"each x[n,c,i,j] adds x·w[c,f,·,·] to the {KH}×{KW} patch of y at ({stride}·i−{padding}, "
                        f"{stride}·j−{padding}); y[{_idx(at)}] collects the {len(terms) - 1} products whose patch covers it "
                        "— conv2d's (C2) with x in the place of dy"],
                 inputs={"x": x, "w": w, "b": b}, output=("y", y))


def conv_transpose2d_backward(dy, x, w, stride=1, padding=0, output_padding=0, dx_at=None, dw_at=None,
                              db_at=None) -> list:
    """Traces of (T2), (T3), (T4)."""
    x, w, out = _convt_args(x, w, stride, padding, output_padding)
    dy = _f64(dy, "dy")
    if dy.shape != tuple(out):
        raise ExplainError(f"'dy' must have the output's shape {tuple(out)}, got {dy.shape}", "dy")
    C, F, KH, KW = w.shape
    N, _, H, W = x.shape
    from . import ops

    gx, gw, gb = ops.conv_transpose2d_backward(dy, x, w, stride, padding, output_padding)
    inputs = {"x": x, "w": w, "dy": dy}
    n, c, i, j = _at(dx_at, x.shape, "dx_at", "dx (the shape of x)")
    terms = [Term.product(_padded(dy, "dy", (n, f, i * stride + p - padding, j * stride + q - padding)),
                          Factor("w", (c, f, p, q), float(w[c, f, p, q])))
             for f, p, q in itertools.product(range(F), range(KH), range(KW))]           # (T2)
    pads = sum(t.factors[0].padding for t in terms)
    tdx = Trace("conv_transpose2d backward", T2, f"dx[{_idx((n, c, i, j))}]", terms, math.fsum(t.value for t in terms),
                "nptl.ops.conv_transpose2d_backward", float(gx[n, c, i, j]),
                notes=[f"x[{_idx((n, c, i, j))}] fed the {KH}×{KW} patch of every output channel: a conv2d (C1) of dy"]
                + ([f"{pads} term(s) fall outside y (its zero padding)"] if pads else []),
                inputs=inputs, output=("dx", gx))
    c, f, p, q = _at(dw_at, w.shape, "dw_at", "dw (the shape of w)")
    terms = [Term.product(Factor("x", (m, c, a, e), float(x[m, c, a, e])),
                          _padded(dy, "dy", (m, f, a * stride + p - padding, e * stride + q - padding)))
             for m, a, e in itertools.product(range(N), range(H), range(W))]           # (T3)
    tdw = Trace("conv_transpose2d backward", T3, f"dw[{_idx((c, f, p, q))}]", terms, math.fsum(t.value for t in terms),
                "nptl.ops.conv_transpose2d_backward", float(gw[c, f, p, q]),
                notes=[f"w[{_idx((c, f, p, q))}] multiplied every x[n,{c},i,j] into y[n,{f},i·s+p−P,j·s+q−P]"],
                inputs=inputs, output=("dw", gw))
    (f,) = _at(db_at, (F,), "db_at", "db")
    terms = [Term.product(Factor("dy", (m, f, a, e), float(dy[m, f, a, e])))
             for m, a, e in itertools.product(range(out[0]), range(out[2]), range(out[3]))]   # (T4)
    tdb = Trace("conv_transpose2d backward", T4, f"db[{f}]", terms, math.fsum(t.value for t in terms),
                "nptl.ops.conv_transpose2d_backward", float(gb[f]), inputs=inputs, output=("db", gb))
    return [tdx, tdw, tdb]


U1 = "(U1) y[n,c,h,v] = x[n,c,h // sh, v // sw]"
U2 = "(U2) dx[n,c,i,j] = Σ_{0≤p<sh} Σ_{0≤q<sw} dy[n,c,i·sh+p,j·sw+q]"


def _factors(size) -> tuple:
    pair = (size, size) if np.ndim(size) == 0 else tuple(size)
    if len(pair) != 2 or not all(int(k) >= 1 for k in pair):
        raise ExplainError(f"'size' must be an integer >= 1 or a pair of them, got {size}", "size")
    return int(pair[0]), int(pair[1])


def upsample2d(x, size, at=None) -> Trace:
    """Trace of (U1): each output copies one input pixel."""
    x = _f64(x, "x")
    _ndim(x, 4, "x", "(N, C, H, W)")
    sh, sw = _factors(size)
    n, c, h, v = at = _at(at, (x.shape[0], x.shape[1], x.shape[2] * sh, x.shape[3] * sw), "at", "the output y")
    src = (n, c, h // sh, v // sw)
    from . import ops

    y = ops.upsample2d(x, (sh, sw))
    return Trace("upsample2d", U1, f"y[{_idx(at)}]", [Term.product(Factor("x", src, float(x[src])))], float(x[src]),
                 "nptl.ops.upsample2d", float(y[at]),
                 notes=[f"rows {h} // {sh} = {h // sh}, columns {v} // {sw} = {v // sw}: x[{_idx(src)}] is copied into "
                        f"the {sh}×{sw} block of y at ({h // sh * sh}, {v // sw * sw})"],
                 inputs={"x": x}, output=("y", y))


def upsample2d_backward(dy, x, size, at=None) -> Trace:
    """Trace of (U2): an input pixel's gradient is the sum over its copies."""
    x = _f64(x, "x")
    _ndim(x, 4, "x", "(N, C, H, W)")
    sh, sw = _factors(size)
    dy = _f64(dy, "dy")
    want = (x.shape[0], x.shape[1], x.shape[2] * sh, x.shape[3] * sw)
    if dy.shape != want:
        raise ExplainError(f"'dy' must have the output's shape {want}, got {dy.shape}", "dy")
    n, c, i, j = at = _at(at, x.shape, "at", "dx (the shape of x)")
    terms = [Term.product(Factor("dy", (n, c, i * sh + p, j * sw + q), float(dy[n, c, i * sh + p, j * sw + q])))
             for p in range(sh) for q in range(sw)]                                     # (U2)
    from . import ops

    gx = ops.upsample2d_backward(dy, x, (sh, sw))
    return Trace("upsample2d backward", U2, f"dx[{_idx(at)}]", terms, math.fsum(t.value for t in terms),
                 "nptl.ops.upsample2d_backward", float(gx[at]),
                 notes=[f"x[{_idx(at)}] was copied into {sh * sw} outputs; each sends its dy back"],
                 inputs={"x": x, "dy": dy}, output=("dx", gx))


# ----------------------------------------------------------------------------------------------
# the op table behind ``nptl explain OP``: one entry per op
# ----------------------------------------------------------------------------------------------
def small_integers(rng: np.random.Generator, shape, low: int = -2, high: int = 3) -> np.ndarray:
    """Integers in ``[low, high)`` as float64: sums a learner can check mentally."""
    return rng.integers(low, high, size=tuple(shape)).astype(np.float64)


@dataclass(frozen=True)
class Explainer:
    """How ``nptl explain`` runs one op.

    ``arrays`` names the inputs (the first is what ``--shape`` describes);
    ``inputs(geometry, rng)`` builds small integer arrays from the command-line geometry
    (``shape``, ``kernel``, ``filters``, ``units``, ``stride``, ``padding``), keyed by the trace
    functions' argument names (a user's ``--input NAME=FILE.npy`` replaces one);
    ``forward(arrays, geometry, at)`` and ``backward(arrays, geometry, ats)`` return traces;
    ``upstream`` names the upstream gradient array the backward needs (``dy``), which is
    generated with the shape ``out_shape(arrays, geometry)``; ``backward_targets`` names the
    gradients the backward expands (``--dx-at``, ``--dw-at``, ``--db-at`` in that order).
    """

    summary: str
    default_shape: tuple
    arrays: tuple
    inputs: Callable
    forward: Callable
    backward: Callable | None = None
    out_shape: Callable | None = None
    upstream: str | None = None
    backward_targets: tuple = ("dx",)
    scalar: bool = False         # the output is one number (a loss): no --at


def _conv_inputs(g, rng):
    N, C = g["shape"][:2]
    kh, kw = g["kernel"]
    F = g["filters"]
    return {"x": small_integers(rng, g["shape"], 0, 4), "w": small_integers(rng, (F, C, kh, kw), -1, 3),
            "b": small_integers(rng, (F,), -2, 4)}


def _pool_inputs(g, rng):
    return {"x": small_integers(rng, g["shape"], 0, 10)}


def _dense_inputs(g, rng):
    I = g["shape"][-1]
    return {"x": small_integers(rng, g["shape"], -2, 4), "w": small_integers(rng, (I, g["units"]), -1, 3),
            "b": small_integers(rng, (g["units"],), -2, 3)}


def _x_only(g, rng):
    return {"x": small_integers(rng, g["shape"], -3, 4)}


def _ce_inputs(g, rng):
    N, K = g["shape"]
    return {"logits": small_integers(rng, g["shape"], -2, 4), "labels": rng.integers(0, K, N)}


#: registered ops (nptl.registry) that have no trace yet, with the reason; tests require every
#: other registered op to have an entry in EXPLAINERS
UNTRACED: dict[str, str] = {}

EXPLAINERS: dict[str, Explainer] = {
    "conv2d": Explainer(
        "cross-correlation with bias, stride and zero padding (C1)-(C4)", (1, 1, 4, 4), ("x", "w", "b"), _conv_inputs,
        lambda a, g, at: conv2d(a["x"], a["w"], a.get("b"), g["stride"] or 1, g["padding"], at=at),
        lambda a, g, ats: conv2d_backward(a["dy"], a["x"], a["w"], g["stride"] or 1, g["padding"], *ats),
        lambda a, g: _geometry(a["x"].shape, a["w"].shape, g["stride"] or 1, g["padding"]),
        "dy", ("dx", "dw", "db")),
    "conv2d_true": Explainer(
        "the textbook convolution (flipped kernel) of one image with one kernel", (4, 4), ("x", "k"),
        lambda g, rng: {"x": small_integers(rng, g["shape"], 0, 4), "k": small_integers(rng, g["kernel"], -1, 3)},
        lambda a, g, at: conv2d_true(a["x"], a["k"], at=at)),
    "max_pool2d": Explainer(
        "max pooling (P1), gradient to the first maximum (P2)", (1, 1, 4, 4), ("x",), _pool_inputs,
        lambda a, g, at: max_pool2d(a["x"], g["kernel"][0], g["stride"], at=at),
        lambda a, g, ats: [max_pool2d_backward(a["dy"], a["x"], g["kernel"][0], g["stride"], at=ats[0])],
        lambda a, g: _pool_geometry(a["x"].shape, g["kernel"][0], g["stride"]), "dy"),
    "avg_pool2d": Explainer(
        "average pooling (A1), gradient spread evenly (A2)", (1, 1, 4, 4), ("x",), _pool_inputs,
        lambda a, g, at: avg_pool2d(a["x"], g["kernel"][0], g["stride"], at=at),
        lambda a, g, ats: [avg_pool2d_backward(a["dy"], a["x"], g["kernel"][0], g["stride"], at=ats[0])],
        lambda a, g: _pool_geometry(a["x"].shape, g["kernel"][0], g["stride"]), "dy"),
    "dense": Explainer(
        "affine map y = x·w + b (D1)-(D4)", (2, 3), ("x", "w", "b"), _dense_inputs,
        lambda a, g, at: dense(a["x"], a["w"], a["b"], at=at),
        lambda a, g, ats: dense_backward(a["dy"], a["x"], a["w"], *ats),
        lambda a, g: (a["x"].shape[0], a["w"].shape[1]), "dy", ("dx", "dw", "db")),
    "batch_norm": Explainer(
        "batch normalisation per channel, batch statistics (BN1)-(BN4) or running ones (BN5)", (2, 2, 2, 2),
        ("x", "gamma", "beta", "mean", "var"),
        lambda g, rng: {"x": small_integers(rng, g["shape"], -2, 4), "gamma": small_integers(rng, g["shape"][1:2], 1, 3),
                        "beta": small_integers(rng, g["shape"][1:2], -1, 2)},
        lambda a, g, at: batch_norm(a["x"], a["gamma"], a["beta"], a.get("mean"), a.get("var"), at=at),
        lambda a, g, ats: batch_norm_backward(a["dy"], a["x"], a["gamma"], a.get("mean"), a.get("var"), 1e-5, *ats),
        lambda a, g: a["x"].shape, "dy", ("dx", "dgamma", "dbeta")),
    "adaptive_avg_pool2d": Explainer(
        "average pooling to a fixed output size with PyTorch's bins (AP1), (AP2)", (1, 1, 5, 5), ("x",), _pool_inputs,
        lambda a, g, at: adaptive_avg_pool2d(a["x"], g["output_size"], at=at),
        lambda a, g, ats: [adaptive_avg_pool2d_backward(a["dy"], a["x"], g["output_size"], at=ats[0])],
        lambda a, g: a["x"].shape[:2] + ((g["output_size"],) * 2 if np.ndim(g["output_size"]) == 0
                                         else tuple(g["output_size"])), "dy"),
    "global_avg_pool2d": Explainer(
        "the mean of every plane, (N, C, H, W) -> (N, C) (AP1), (AP2)", (1, 2, 3, 3), ("x",), _pool_inputs,
        lambda a, g, at: global_avg_pool2d(a["x"], at=at),
        lambda a, g, ats: [global_avg_pool2d_backward(a["dy"], a["x"], at=ats[0])],
        lambda a, g: a["x"].shape[:2], "dy"),
    "dropout": Explainer(
        "inverted dropout with a seeded keep-mask (DO1)-(DO3)", (2, 4), ("x", "mask"),
        lambda g, rng: {"x": small_integers(rng, g["shape"], -3, 4),
                        "mask": _dropout_mask(g["shape"], g["rate"], int(rng.integers(2**31)))},
        lambda a, g, at: dropout(a["x"], a["mask"], g["rate"], at=at),
        lambda a, g, ats: [dropout_backward(a["dy"], a["mask"], g["rate"], at=ats[0])],
        lambda a, g: a["x"].shape, "dy"),
    "conv_transpose2d": Explainer(
        "transposed convolution, the adjoint of conv2d in its input (T1)-(T4)", (1, 1, 2, 2), ("x", "w", "b"),
        lambda g, rng: {"x": small_integers(rng, g["shape"], 0, 4),
                        "w": small_integers(rng, (g["shape"][1], g["filters"]) + tuple(g["kernel"]), -1, 3),
                        "b": small_integers(rng, (g["filters"],), -2, 4)},
        lambda a, g, at: conv_transpose2d(a["x"], a["w"], a.get("b"), g["stride"] or 1, g["padding"], at=at),
        lambda a, g, ats: conv_transpose2d_backward(a["dy"], a["x"], a["w"], g["stride"] or 1, g["padding"], 0, *ats),
        lambda a, g: _convt_args(a["x"], a["w"], g["stride"] or 1, g["padding"], 0)[2], "dy", ("dx", "dw", "db")),
    "upsample2d": Explainer(
        "nearest-neighbour upsampling by integer factors (U1), (U2)", (1, 1, 2, 2), ("x",), _pool_inputs,
        lambda a, g, at: upsample2d(a["x"], g["kernel"], at=at),
        lambda a, g, ats: [upsample2d_backward(a["dy"], a["x"], g["kernel"], at=ats[0])],
        lambda a, g: a["x"].shape[:2] + (a["x"].shape[2] * g["kernel"][0], a["x"].shape[3] * g["kernel"][1]), "dy"),
    "relu": Explainer("(R1), (R2)", (2, 3), ("x",), _x_only, lambda a, g, at: relu(a["x"], at=at),
                      lambda a, g, ats: [relu_backward(a["dy"], a["x"], at=ats[0])],
                      lambda a, g: a["x"].shape, "dy"),
    "sigmoid": Explainer("(S1), (S2)", (2, 3), ("x",), _x_only, lambda a, g, at: sigmoid(a["x"], at=at),
                         lambda a, g, ats: [sigmoid_backward(a["dy"], a["x"], at=ats[0])],
                         lambda a, g: a["x"].shape, "dy"),
    "softmax": Explainer("over the last axis (SM1), (SM2)", (2, 3), ("x",), _x_only, lambda a, g, at: softmax(a["x"], at=at),
                         lambda a, g, ats: [softmax_backward(a["dy"], a["x"], at=ats[0])],
                         lambda a, g: a["x"].shape, "dy"),
    "cross_entropy": Explainer(
        "softmax cross-entropy on logits, mean over the batch (L1), (L2)", (2, 3), ("logits", "labels"), _ce_inputs,
        lambda a, g, at: cross_entropy(a["logits"], a["labels"]),
        lambda a, g, ats: [cross_entropy_backward(a["logits"], a["labels"], at=ats[0])], backward_targets=("dz",), scalar=True),
    "binary_cross_entropy": Explainer(
        "binary cross-entropy on logits, mean over all elements (B1), (B2)", (2, 3), ("logits", "targets"),
        lambda g, rng: {"logits": small_integers(rng, g["shape"], -2, 3), "targets": small_integers(rng, g["shape"], 0, 2)},
        lambda a, g, at: binary_cross_entropy(a["logits"], a["targets"]),
        lambda a, g, ats: [binary_cross_entropy_backward(a["logits"], a["targets"], at=ats[0])],
        backward_targets=("dz",), scalar=True),
    "mse": Explainer(
        "mean squared error (M1), (M2)", (2, 3), ("pred", "target"),
        lambda g, rng: {"pred": small_integers(rng, g["shape"], -2, 4), "target": small_integers(rng, g["shape"], -2, 4)},
        lambda a, g, at: mse(a["pred"], a["target"]),
        lambda a, g, ats: [mse_backward(a["pred"], a["target"], at=ats[0])], backward_targets=("dp",), scalar=True),
}


# ----------------------------------------------------------------------------------------------
# one image through a model
# ----------------------------------------------------------------------------------------------
@dataclass
class LayerRecord:
    """What one layer did to the image: output shape, range and mean, training status, and
    (with backward) the norm of the gradient reaching its output and of its parameter grads."""

    name: str
    kind: str
    shape: tuple
    low: float
    high: float
    mean: float
    status: str                  # "trainable", "frozen" or "no parameters"
    grad_norm: float | None = None
    param_grad_norms: dict = field(default_factory=dict)
    skipped: bool = False


@dataclass
class ModelWalk:
    """:func:`walk` of one image: per-layer records, class probabilities, prediction, label,
    and with backward the loss and which layers backward skipped."""

    layers: list
    probabilities: np.ndarray
    class_names: list
    label: int | None
    loss: float | None = None
    backward: bool = False
    title: str = ""

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.probabilities))

    @property
    def skipped(self) -> list:
        return [r.name for r in self.layers if r.skipped]

    def to_dict(self) -> dict:
        return {"title": self.title, "layers": [
            {"name": r.name, "type": r.kind, "shape": list(r.shape), "min": r.low, "max": r.high, "mean": r.mean,
             "status": r.status, "grad_norm": r.grad_norm, "param_grad_norms": r.param_grad_norms,
             "skipped_by_backward": r.skipped} for r in self.layers],
            "probabilities": {str(n): float(p) for n, p in zip(self.class_names, self.probabilities)},
            "predicted": self.predicted, "label": self.label, "loss": self.loss}

    def render(self, fmt_name: str = "text") -> str:
        if fmt_name == "json":
            return json.dumps(self.to_dict(), indent=1, ensure_ascii=False)
        md = fmt_name == "markdown"
        head = ["layer", "type", "output shape", "min", "max", "mean", "status"]
        if self.backward:
            head += ["‖∂L/∂output‖", "‖∂L/∂params‖"]
        rows = []
        for r in self.layers:
            row = [r.name, r.kind, str(r.shape), f"{r.low:.4g}", f"{r.high:.4g}", f"{r.mean:.4g}", r.status]
            if self.backward:
                grads = ", ".join(f"{k} {v:.4g}" for k, v in r.param_grad_norms.items())
                row += ["skipped" if r.skipped else f"{r.grad_norm:.4g}", grads or "-"]
            rows.append(row)
        if md:
            lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
        else:
            widths = [max(len(x[k]) for x in rows + [head]) for k in range(len(head))]
            lines = ["  ".join(c.ljust(w) for c, w in zip(x, widths)).rstrip() for x in [head] + rows]
        out = ([f"## {self.title}", ""] if md else [self.title, ""]) if self.title else []
        out += lines + [""]
        order = np.argsort(-self.probabilities)
        out.append("class probabilities (softmax of the logits):")
        for k in order:
            mark = "  <- predicted" if k == self.predicted else ""
            mark += "  <- label" if self.label is not None and k == self.label else ""
            out.append(f"  {k:>3} {str(self.class_names[k]):<14} {self.probabilities[k]:.4f}{mark}")
        if self.backward:
            out += ["", f"backward from the cross-entropy loss L = {self.loss:.4f} against class {self.label} "
                        "(forward in training mode, as in a training step on this one image):",
                    "‖∂L/∂output‖ is the norm of the gradient reaching each layer's output"]
            out.append("skipped (nothing below them trains): " + (", ".join(self.skipped) or "none"))
        return "\n".join(out) + "\n"

    def __str__(self) -> str:
        return self.render()


def _leaves(layer) -> list:
    """``(prefix, leaf layer)`` pairs: the layer itself, or every layer inside a block."""
    from .graph import Block

    return [(f"{p}.", leaf) for p, leaf in layer.leaves()] if isinstance(layer, Block) else [("", layer)]


def _status(layer) -> str:
    with_params = [leaf for _, leaf in _leaves(layer) if leaf.params]
    if not with_params:
        return "no parameters"
    training = sum(leaf.trainable for leaf in with_params)
    return "trainable" if training == len(with_params) else ("frozen" if training == 0 else "partly frozen")


def _param_grad_norms(layer) -> dict:
    return {f"{prefix}{k}": float(np.linalg.norm(g)) for prefix, leaf in _leaves(layer)
            if leaf.computes_param_grads for k, g in leaf.grads.items()}


def walk(model, image, label=None, class_names=None, backward: bool = False, title: str = "") -> ModelWalk:
    """Run one image ``(C, H, W)`` through ``model`` layer by layer and record each output.

    With ``backward`` (needs ``label``), back-propagate the cross-entropy of the logits against
    ``label`` the way :meth:`~nptl.graph.Sequential.backward` does — down to the lowest layer
    that trains — and record the gradient norm reaching every layer and its parameter gradient
    norms; the layers below the lowest trainable one are skipped, as in training.
    The model's gradients are zeroed before and after and the state a training-mode forward
    changes (BatchNorm running statistics, dropout call counts) is put back: nothing it holds changes.
    """
    if backward and label is None:
        raise ExplainError("backward needs the image's label", "label")
    saved = [(leaf, leaf.state()) for _, leaf in model.leaves()]   # running statistics, dropout calls
    try:
        return _walk(model, np.asarray(image)[None], label, class_names, backward, title)
    finally:
        for leaf, state in saved:
            leaf.set_state(state)


def _walk(model, x, label, class_names, backward, title) -> ModelWalk:
    from . import ops

    records = []
    for layer in model.layers:
        try:
            x = layer.forward(x, training=backward)
        except ValueError as err:
            if not backward:
                raise
            raise ExplainError(f"{err} (backward runs the forward pass in training mode, as a training step "
                               "does, on this one image)") from None
        records.append(LayerRecord(layer.name, type(layer).__name__, tuple(x.shape[1:]), float(x.min()),
                                   float(x.max()), float(x.mean()), _status(layer)))
    logits = x.astype(np.float64)
    is_prob = type(model.layers[-1]).__name__ == "Softmax"
    probs = logits[0] if is_prob else ops.softmax(logits)[0]
    names = list(class_names) if class_names is not None else [str(k) for k in range(probs.size)]
    result = ModelWalk(records, probs, names, None if label is None else int(label), backward=backward, title=title)
    if not backward:
        return result
    if is_prob:
        raise ExplainError("backward starts from logits: the model ends in Softmax; explain it without --backward")
    loss, dy = ops.cross_entropy(x, np.array([int(label)]))
    result.loss = float(loss)
    model.zero_grad()
    stop = model.lowest_trainable_index()
    for i in range(len(model.layers) - 1, -1, -1):                 # as Sequential.backward
        rec, layer = records[i], model.layers[i]
        if stop is None or i < stop:
            rec.skipped = True
            continue
        rec.grad_norm = float(np.linalg.norm(dy))
        dy = layer.backward(dy, input_grad=i > stop)
        rec.param_grad_norms = _param_grad_norms(layer)
    model.zero_grad()
    return result


# ----------------------------------------------------------------------------------------------
# command line: ``nptl explain OP|MODEL.npz``
# ----------------------------------------------------------------------------------------------
MAX_INPUT_ELEMENTS = 100_000


def _ints(text: str) -> tuple:
    import argparse

    try:
        out = tuple(int(t) for t in text.split(",") if t.strip() != "")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 0,0,1,2, got {text!r}") from None
    if not out:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return out


def add_arguments(p) -> None:
    """The ``explain`` subcommand's arguments (``p`` an argparse parser)."""
    p.add_argument("target", metavar="OP|MODEL.npz",
                   help=f"an op ({', '.join(EXPLAINERS)}) or a saved model to walk one image through")
    g = p.add_argument_group("op traces")
    g.add_argument("--shape", type=_ints, default=None, help="input shape, e.g. 1,1,4,4 (N,C,H,W)")
    g.add_argument("--kernel", type=_ints, default=None, help="kernel (conv) or window (pool) size, upsampling factor: 3 or 3,2")
    g.add_argument("--filters", type=int, default=1, help="conv2d output channels")
    g.add_argument("--units", type=int, default=2, help="dense output features")
    g.add_argument("--stride", type=int, default=None, help="default 1 (conv2d), the window size (pooling)")
    g.add_argument("--rate", type=float, default=0.5, help="dropout rate (default 0.5)")
    g.add_argument("--output-size", type=_ints, default=(2,), help="adaptive_avg_pool2d output size: 2 or 2,3")
    g.add_argument("--padding", type=int, default=0, help="zero padding on each side (conv2d)")
    g.add_argument("--at", type=_ints, default=None, help="output element to expand (default: the middle one)")
    g.add_argument("--dx-at", "--dz-at", "--dp-at", dest="dx_at", type=_ints, default=None,
                   help="with --backward: the entry of dx (dz, dp for losses) to expand")
    g.add_argument("--dw-at", type=_ints, default=None, help="with --backward: the entry of dw")
    g.add_argument("--db-at", type=_ints, default=None, help="with --backward: the entry of db")
    g.add_argument("--input", action="append", default=[], metavar="[NAME=]FILE.npy",
                   help="use your own array for input NAME (default: the op's first input); repeatable")
    p.add_argument("--backward", action="store_true", help="also expand the gradients (or, for a model, backward)")
    p.add_argument("--seed", type=int, default=0, help="seed of the small integer inputs")
    p.add_argument("--format", choices=["text", "markdown", "json"], default="text", help="output format")
    g.add_argument("--max-terms", type=int, default=None, help="show at most this many terms of each sum")
    m = p.add_argument_group("model walk")
    m.add_argument("--data", default=None, help="data set of the image (default: fashion-mnist if installed, else synthetic)")
    m.add_argument("--image", type=int, default=0, help="index of the test image")


def _load_npy(spec: str, names: list) -> tuple:
    """``NAME=FILE.npy`` or ``FILE.npy`` (the first input) → (name, array), reading the header
    first so that no more than MAX_INPUT_ELEMENTS are ever read, and never unpickling."""
    name, sep, path = spec.partition("=")
    if not sep:
        name, path = names[0], spec
    if name not in names:
        raise ExplainError(f"--input {spec}: this op's inputs are {', '.join(names)}, not {name!r}", "input")
    try:
        with open(path, "rb") as fh:
            major, _ = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(fh)
            if dtype.hasobject or dtype.kind not in "biuf":
                raise ExplainError(f"--input {path}: expected a real-valued array, found dtype {dtype}", "input")
            size = int(np.prod(shape))
            if size > MAX_INPUT_ELEMENTS:
                raise ExplainError(f"--input {path}: {size} elements {shape}; explain reads at most "
                                   f"{MAX_INPUT_ELEMENTS}", "input")
        arr = np.load(path, allow_pickle=False)
    except OSError as err:
        raise ExplainError(f"--input {path}: cannot read: {err.strerror or err}", "input") from None
    except ValueError as err:
        if isinstance(err, ExplainError):
            raise
        raise ExplainError(f"--input {path}: not a .npy array file ({err})", "input") from None
    return name, arr


def _cli_message(err: ExplainError) -> str:
    msg = str(err)
    if err.arg in ("at", "dx_at", "dw_at", "db_at"):
        msg = msg.replace(f"{err.arg}=", f"--{err.arg.replace('_', '-')} ", 1)
    return msg


def _explain_op(args) -> str:
    ex = EXPLAINERS[args.target]
    rng = np.random.default_rng(args.seed)
    names = list(ex.arrays) + ([ex.upstream] if ex.upstream else [])
    given = dict(_load_npy(s, names) for s in args.input)
    shape = args.shape or (tuple(given[names[0]].shape) if names[0] in given else ex.default_shape)
    if any(s < 1 for s in shape):
        raise ExplainError(f"--shape {','.join(map(str, shape))}: every size must be >= 1 (the output would be empty)")
    kernel = args.kernel or ((3,) if args.target.startswith("conv") else (2,))
    kernel = kernel * 2 if len(kernel) == 1 else kernel
    geometry = {"shape": shape, "kernel": kernel, "filters": args.filters, "units": args.units,
                "stride": args.stride, "padding": args.padding, "rate": args.rate,
                "output_size": args.output_size * 2 if len(args.output_size) == 1 else args.output_size}
    if not 0 <= args.rate < 1:
        raise ExplainError(f"--rate must be in [0, 1), got {args.rate}")
    for key in ("filters", "units", "stride"):
        if geometry[key] is not None and geometry[key] < 1:
            raise ExplainError(f"--{key} must be >= 1, got {geometry[key]}")
    if args.padding < 0:
        raise ExplainError(f"--padding must be >= 0, got {args.padding}")
    w = given.get("w", given.get("k"))           # the generated arrays fit the ones given
    if w is not None and w.ndim in (2, 4):
        geometry.update({"filters": w.shape[0], "kernel": w.shape[-2:]} if w.ndim == 4 else
                        ({"kernel": w.shape} if "k" in given else {"units": w.shape[1]}))
    arrays = ex.inputs(geometry, rng)
    arrays.update(given)
    if ex.scalar and args.at is not None:
        raise ExplainError(f"{args.target} gives the scalar loss L: --at does not apply "
                           f"(use --backward --{ex.backward_targets[0]}-at)")
    traces = [ex.forward(arrays, geometry, args.at)]
    if args.backward:
        if ex.backward is None:
            raise ExplainError(f"{args.target} has no backward trace (conv2d_true is conv2d with the flipped "
                               "kernel: use nptl explain conv2d --backward)")
        if ex.upstream and ex.upstream not in arrays:
            arrays[ex.upstream] = small_integers(rng, ex.out_shape(arrays, geometry), -2, 3)
        try:
            traces += ex.backward(arrays, geometry, [args.dx_at, args.dw_at, args.db_at])
        except ExplainError as err:  # single-gradient traces call their entry 'at': here it is --dx-at
            if err.arg != "at":
                raise
            raise ExplainError(str(err).replace("at=", "dx_at=", 1), "dx_at") from None
    title = f"nptl explain {args.target}: {ex.summary}"
    if args.format == "text" and args.backward:
        # the inputs of the backward traces (with dy) are shown once, first
        traces[0].inputs = {**traces[0].inputs, **traces[-1].inputs}
    return render(traces, args.format, title=title, max_terms=args.max_terms)


def _walk_model(args) -> str:
    from . import io
    from .cli.common import default_data
    from .data import load_dataset

    ckpt = io.load_checkpoint(args.target)
    model = ckpt.model
    data_name = args.data or default_data()
    data = load_dataset(data_name, seed=0) if data_name == "synthetic" else load_dataset(data_name)
    if not 0 <= args.image < len(data.x_test):
        raise ExplainError(f"--image {args.image} is outside the {len(data.x_test)} test images of {data_name}")
    classes = model.output_shape()[-1]
    names = (ckpt.extra or {}).get("class_names")
    if names is None or len(names) != classes:
        names = list(data.class_names) if len(data.class_names) == classes else None
    true_name = data.class_names[int(data.y_test[args.image])]
    label = names.index(true_name) if names is not None and true_name in names else None
    if args.backward and label is None:
        raise ExplainError(f"--backward: test image {args.image} is of class {true_name!r}, which the model does "
                           f"not predict (its classes: {names}); pick an image of one of those")
    result = walk(model, data.x_test[args.image], label, names, backward=args.backward,
                  title=f"{args.target}: test image {args.image} of {data_name} (class {true_name!r})")
    return result.render(args.format)


def command(args) -> int:
    """``nptl explain``: an op trace or a model walk, printed to stdout."""
    try:
        if args.target in EXPLAINERS:
            text = _explain_op(args)
        elif args.target.endswith(".npz") or __import__("os").path.isfile(args.target):
            text = _walk_model(args)
        else:
            raise ExplainError(f"unknown op {args.target!r}; ops: {', '.join(EXPLAINERS)} "
                               "(or a model checkpoint .npz)")
    except ExplainError as err:
        raise ExplainError(_cli_message(err), err.arg) from None
    print(text, end="")
    return 0
