"""Optimizers and learning-rate schedules.

Which parameters are updated
----------------------------
An optimizer holds the *model*, not a list of arrays: every :meth:`~Optimizer.step` reads
``model.trainable_parameters()`` afresh and updates only those, in place (``Parameter.value`` is
the array the layer holds).  Freezing or unfreezing a layer therefore takes effect at the next
step, with no rebuild of the optimizer.  Frozen parameters are never touched, not even by weight
decay or L1/L2 regularisation.

State
-----
State lives in ``optimizer.state[name]`` keyed by the parameter name (``"conv1.w"``):

* :class:`SGD` with momentum: ``{"momentum_buffer": ndarray}``;
* :class:`Adam`: ``{"step": int, "m": ndarray, "v": ndarray}`` — the step count is *per
  parameter* and drives the bias correction.

Freezing does not discard state and a frozen parameter's state does not advance: while a layer is
frozen its momentum buffer, Adam moments and step count stay exactly as they were, and on
unfreezing the parameter resumes from them (its bias correction continues from its own step
count, not from the number of optimizer steps taken meanwhile).  This is what ``torch.optim``
does for a parameter whose ``.grad`` is ``None``.  A parameter trained for the first time (e.g.
a head unfrozen later) starts with fresh state at step 1.

Regularisation (per parameter, on top of the loss gradient ``g``)
-----------------------------------------------------------------
* ``l2``: coupled L2, ``g ← g + l2·θ`` — the gradient of ``l2/2·‖θ‖²``.  This is exactly what
  ``torch.optim.SGD(weight_decay=)`` and ``torch.optim.Adam(weight_decay=)`` do.
* ``l1``: ``g ← g + l1·sign(θ)`` — the (sub)gradient of ``l1·‖θ‖₁``.
* ``weight_decay``: decoupled decay, ``θ ← θ·(1 − lr·weight_decay)`` applied before the gradient
  step, independent of the gradient and of momentum/adaptive scaling.

  - :class:`SGD`: always decoupled.  Without momentum this equals coupled L2 with the same
    coefficient; with momentum it differs (the decay does not enter the momentum buffer).  For
    ``torch.optim.SGD(weight_decay=wd)`` use ``l2=wd``.
  - :class:`Adam`: as in torch, ``decoupled=False`` (default) makes ``weight_decay`` the coupled
    L2 of ``torch.optim.Adam(weight_decay=)`` (so it adds to ``l2``), and ``decoupled=True``
    is AdamW: ``torch.optim.AdamW(weight_decay=)`` /
    ``torch.optim.Adam(weight_decay=, decoupled_weight_decay=True)``.

The coupled terms are computed from θ before the decoupled decay is applied.  By default every
parameter is regularised; ``regularize_bias=False`` exempts biases (parameters whose key is
``"b"``/``"bias"`` and any 0-/1-D parameter) from all three.

Numerics
--------
Updates happen in place in the parameter's dtype (float32 stays float32): scalars are cast with
``value.dtype.type(...)``.  A parameter is updated one flat slice of :data:`SLICE` elements at a
time (every formula below is elementwise, so the result is the same), and the temporaries live in
scratch arrays of one slice, shared by all parameters: an update allocates nothing the size of a
parameter (VGG16's ``classifier.0.w`` is 411 MB in float32) beyond the state it keeps.
``optimizer.lr`` is read at every step, so schedules (or user code) can change it between steps.
``state_dict()``/``load_state_dict()`` use plain dicts of numpy arrays, numbers, bools and
strings (no pickling needed).
"""
from __future__ import annotations

import math
import numbers

import numpy as np

#: elements per slice of an in-place update (the scratch arrays: 256 KB each in float32)
SLICE = 1 << 16

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "StepDecay", "ExponentialDecay", "make_optimizer", "OPTIMIZERS"]


# -- argument validation --------------------------------------------------------------------------
def _real(value, owner: str, arg: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: '{arg}' must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{owner}: '{arg}' must be finite, got {value}")
    return value


def _positive(value, owner, arg) -> float:
    v = _real(value, owner, arg)
    if not v > 0:
        raise ValueError(f"{owner}: '{arg}' must be > 0, got {value}")
    return v


def _non_negative(value, owner, arg) -> float:
    v = _real(value, owner, arg)
    if not v >= 0:
        raise ValueError(f"{owner}: '{arg}' must be >= 0, got {value}")
    return v


def _unit_interval(value, owner, arg) -> float:
    v = _real(value, owner, arg)
    if not 0 <= v < 1:
        raise ValueError(f"{owner}: '{arg}' must be in [0, 1), got {value}")
    return v


def _is_bias(p) -> bool:
    return p.key in ("b", "bias") or p.value.ndim <= 1


# -- base class -----------------------------------------------------------------------------------
class Optimizer:
    """Common machinery: the ``lr`` attribute, per-name state, work buffers, (de)serialisation.

    Subclasses define ``_HYPER`` (names of hyperparameters saved in ``state_dict``) and
    ``_update(p, state, lr)``.
    """

    _HYPER: tuple[str, ...] = ()

    def __init__(self, model, lr, weight_decay=0.0, l1=0.0, l2=0.0, regularize_bias=True):
        if not hasattr(model, "trainable_parameters"):
            raise TypeError(f"{type(self).__name__}: 'model' must have trainable_parameters(), got {type(model).__name__}")
        self.model = model
        self.lr = lr
        self.weight_decay = _non_negative(weight_decay, self._owner, "weight_decay")
        self.l1 = _non_negative(l1, self._owner, "l1")
        self.l2 = _non_negative(l2, self._owner, "l2")
        self.regularize_bias = bool(regularize_bias)
        self.state: dict[str, dict] = {}
        self.steps = 0  # optimizer steps taken (parameters keep their own counts where needed)
        self._work: dict[str, list[np.ndarray]] = {}

    @property
    def _owner(self) -> str:
        return type(self).__name__

    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value) -> None:
        self._lr = _positive(value, self._owner, "lr")

    # -- stepping ------------------------------------------------------------------------------
    def zero_grad(self) -> None:
        """Zero the model's gradients (``model.zero_grad()``)."""
        self.model.zero_grad()

    def step(self) -> None:
        """Update every currently trainable parameter once."""
        lr = self._lr
        for p in self.model.trainable_parameters():
            value = p.value
            if value.dtype.kind != "f":
                raise TypeError(f"{self._owner}: parameter {p.name} has non-float dtype {value.dtype}")
            state = self.state.get(p.name)
            if state is None:
                state = {}
            else:
                self._conform_state(p.name, state, value)
            self._update(p, state, lr)
            if state:  # plain SGD keeps no state: no empty entries
                self.state[p.name] = state
        self.steps += 1

    def _conform_state(self, name, state, value) -> None:
        """State arrays follow the parameter's dtype (e.g. after ``model.astype``); a shape
        mismatch means the state belongs to a different parameter."""
        for k, arr in state.items():
            if isinstance(arr, np.ndarray):
                if arr.shape != value.shape:
                    raise ValueError(f"{self._owner}: state {k!r} of parameter {name} has shape {arr.shape}, "
                                     f"the parameter has shape {value.shape}")
                if arr.dtype != value.dtype:
                    state[k] = arr.astype(value.dtype)

    def _scratch(self, like, n) -> list[np.ndarray]:
        """``n`` scratch arrays shaped and typed like the slice ``like`` (kept between steps, not
        state; one set per dtype, :data:`SLICE` elements each)."""
        if like.size > SLICE:  # a non-contiguous parameter is updated whole
            return [np.empty_like(like) for _ in range(n)]
        work = self._work.get(like.dtype.str)
        if work is None or len(work) < n:
            work = self._work[like.dtype.str] = [np.empty(SLICE, like.dtype) for _ in range(n)]
        return [w[:like.size].reshape(like.shape) for w in work[:n]]

    @staticmethod
    def _slices(p, *state):
        """``(θ, g, *state)`` as matching flat slices of at most :data:`SLICE` elements of the
        parameter, its gradient (in the parameter's dtype) and its state arrays; the whole arrays
        at once if one is not contiguous (a flat view would then be a copy)."""
        value = p.value
        arrays = (value, p.grad) + state
        if not all(a.flags.c_contiguous for a in arrays):
            g = p.grad if p.grad.dtype == value.dtype else p.grad.astype(value.dtype)
            yield (value, g) + state
            return
        flat = [a.reshape(-1) for a in arrays]
        for start in range(0, value.size, SLICE):
            part = [a[start:start + SLICE] for a in flat]
            if part[1].dtype != value.dtype:
                part[1] = part[1].astype(value.dtype)
            yield part

    def _grad(self, p, theta, g, out, tmp, l2) -> np.ndarray:
        """The loss gradient ``g`` plus coupled ``l2·θ`` and ``l1·sign θ`` on one slice.  Returns
        ``g`` itself when there is nothing to add (it is never modified), else ``out``."""
        regularize = self.regularize_bias or not _is_bias(p)
        l1 = self.l1 if regularize else 0.0
        l2 = l2 if regularize else 0.0
        if not (l1 or l2):
            return g
        t = theta.dtype.type
        np.copyto(out, g)
        if l2:
            np.multiply(theta, t(l2), out=tmp)
            out += tmp
        if l1:
            np.sign(theta, out=tmp)
            tmp *= t(l1)
            out += tmp
        return out

    def _decay(self, p, theta, lr, wd) -> None:
        """Decoupled weight decay ``θ ← θ·(1 − lr·wd)`` on the slice ``theta``."""
        if wd and (self.regularize_bias or not _is_bias(p)):
            theta *= theta.dtype.type(1.0 - lr * wd)  # in place: the layer holds this array

    def _update(self, p, state, lr) -> None:
        raise NotImplementedError

    # -- (de)serialisation ---------------------------------------------------------------------
    def state_dict(self) -> dict:
        """``{"optimizer", "lr", "steps", "hyperparameters", "state"}`` with copies of the state
        arrays — plain dicts of numpy arrays, numbers, bools and strings."""
        hyper = {}
        for k in self._HYPER:
            v = getattr(self, k)
            hyper[k] = list(v) if isinstance(v, tuple) else v
        state = {name: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in st.items()}
                 for name, st in self.state.items()}
        return {"optimizer": type(self).__name__, "lr": self.lr, "steps": self.steps,
                "hyperparameters": hyper, "state": state}

    def load_state_dict(self, sd: dict) -> None:
        """Restore ``lr``, step count, hyperparameters and per-parameter state (copied)."""
        kind = sd.get("optimizer")
        if kind != type(self).__name__:
            raise ValueError(f"{self._owner}.load_state_dict: state dict is for optimizer {kind!r}")
        hyper = dict(sd.get("hyperparameters", {}))
        unknown = set(hyper) - set(self._HYPER)
        if unknown:
            raise ValueError(f"{self._owner}.load_state_dict: unknown hyperparameters {sorted(unknown)}")
        # validate by constructing a throw-away optimizer with the loaded settings
        current = {k: getattr(self, k) for k in self._HYPER}
        current.update({k: (tuple(v) if isinstance(v, list) else v) for k, v in hyper.items()})
        probe = type(self)(self.model, lr=sd["lr"], **current)
        for k in self._HYPER:
            setattr(self, k, getattr(probe, k))
        self.lr = probe.lr
        self.steps = int(sd.get("steps", 0))
        state = {}
        for name, st in sd.get("state", {}).items():
            entry = {}
            for k, v in st.items():
                if isinstance(v, np.ndarray) or isinstance(v, (list, tuple)):
                    entry[k] = np.array(v, copy=True)
                elif k == "step":
                    entry[k] = int(v)
                else:
                    entry[k] = v
            state[str(name)] = entry
        self.state = state
        self._work = {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in ("lr",) + self._HYPER)
        return f"{self._owner}({args})"


# -- SGD ------------------------------------------------------------------------------------------
class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, as ``torch.optim.SGD``
    with ``dampening=0``::

        g   = ∇θ + l2·θ + l1·sign θ
        buf = g                      (first step)      buf = momentum·buf + g   (later)
        d   = g + momentum·buf       (nesterov)        d   = buf                (otherwise)
        θ   ← θ·(1 − lr·weight_decay) − lr·d

    ``weight_decay`` is *decoupled* (see the module docstring); ``l2`` is torch's ``weight_decay``.
    """

    _HYPER = ("momentum", "nesterov", "weight_decay", "l1", "l2", "regularize_bias")

    def __init__(self, model, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, l1: float = 0.0, l2: float = 0.0, regularize_bias: bool = True):
        super().__init__(model, lr, weight_decay, l1, l2, regularize_bias)
        self.momentum = _unit_interval(momentum, "SGD", "momentum")
        self.nesterov = bool(nesterov)
        if self.nesterov and not self.momentum > 0:
            raise ValueError(f"SGD: 'nesterov' requires 'momentum' > 0, got momentum={momentum}")

    def _update(self, p, state, lr) -> None:
        t = p.value.dtype.type
        mu = self.momentum
        first = mu and "momentum_buffer" not in state
        if first:
            state["momentum_buffer"] = np.empty_like(p.value)
        for theta, g, *buf in self._slices(p, *([state["momentum_buffer"]] if mu else [])):
            d_buf, tmp = self._scratch(theta, 2)
            d = self._grad(p, theta, g, d_buf, tmp, self.l2)
            if mu:
                buf = buf[0]
                if first:
                    np.copyto(buf, d)
                else:
                    buf *= t(mu)
                    buf += d
                if self.nesterov:
                    if d is not d_buf:
                        np.copyto(d_buf, d)
                        d = d_buf
                    np.multiply(buf, t(mu), out=tmp)
                    d += tmp
                else:
                    d = buf
            self._decay(p, theta, lr, self.weight_decay)
            np.multiply(d, t(lr), out=tmp)
            theta -= tmp


# -- Adam -----------------------------------------------------------------------------------------
class Adam(Optimizer):
    """Adam (Kingma & Ba), as ``torch.optim.Adam``; ``decoupled=True`` is AdamW
    (``torch.optim.AdamW``)::

        g  = ∇θ + l2·θ + l1·sign θ   (+ weight_decay·θ unless decoupled)
        t  = t + 1                                      (per parameter)
        m  = β1·m + (1 − β1)·g        v = β2·v + (1 − β2)·g²
        θ  ← θ·(1 − lr·weight_decay)                    (decoupled only)
        θ  ← θ − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + eps)
    """

    _HYPER = ("betas", "eps", "weight_decay", "l1", "l2", "decoupled", "regularize_bias")

    def __init__(self, model, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, l1: float = 0.0, l2: float = 0.0, decoupled: bool = False,
                 regularize_bias: bool = True):
        self.decoupled = bool(decoupled)
        super().__init__(model, lr, weight_decay, l1, l2, regularize_bias)
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise ValueError(f"{self._owner}: 'betas' must be a pair (beta1, beta2), got {betas!r}") from None
        self.betas = (_unit_interval(b1, self._owner, "betas[0]"), _unit_interval(b2, self._owner, "betas[1]"))
        self.eps = _non_negative(eps, self._owner, "eps")

    def _update(self, p, state, lr) -> None:
        value = p.value
        t = value.dtype.type
        b1, b2 = self.betas
        wd_coupled = 0.0 if self.decoupled else self.weight_decay
        if "m" not in state:
            state["step"] = 0
            state["m"] = np.zeros_like(value)
            state["v"] = np.zeros_like(value)
        state["step"] = step = int(state["step"]) + 1
        step_size = lr / (1.0 - b1 ** step)
        bc2_sqrt = math.sqrt(1.0 - b2 ** step)
        for theta, g, m, v in self._slices(p, state["m"], state["v"]):
            g_buf, tmp = self._scratch(theta, 2)
            g = self._grad(p, theta, g, g_buf, tmp, self.l2 + wd_coupled)
            if self.decoupled:
                self._decay(p, theta, lr, self.weight_decay)
            # m ← m + (1 − β1)(g − m)   (torch's lerp)
            np.subtract(g, m, out=tmp)
            tmp *= t(1.0 - b1)
            m += tmp
            # v ← β2·v + (1 − β2)·g²
            v *= t(b2)
            np.multiply(g, g, out=tmp)
            tmp *= t(1.0 - b2)
            v += tmp
            np.sqrt(v, out=tmp)
            tmp /= t(bc2_sqrt)
            tmp += t(self.eps)
            np.divide(m, tmp, out=tmp)
            tmp *= t(step_size)
            theta -= tmp


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW``:
    ``Adam(..., decoupled=True)`` with torch's default ``weight_decay=0.01`` (formulas in
    :class:`Adam`)."""

    _HYPER = tuple(k for k in Adam._HYPER if k != "decoupled")

    def __init__(self, model, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, l1: float = 0.0, l2: float = 0.0, regularize_bias: bool = True):
        super().__init__(model, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, l1=l1, l2=l2,
                         decoupled=True, regularize_bias=regularize_bias)


# -- factory --------------------------------------------------------------------------------------
def _momentum(model, **kw):
    kw.setdefault("momentum", 0.9)
    return SGD(model, **kw)


def _nesterov(model, **kw):
    kw.setdefault("momentum", 0.9)
    kw.setdefault("nesterov", True)
    return SGD(model, **kw)


#: names accepted by :func:`make_optimizer`
OPTIMIZERS = {
    "sgd": SGD,
    "momentum": _momentum,   # SGD, momentum defaults to 0.9
    "nesterov": _nesterov,   # SGD, nesterov=True, momentum defaults to 0.9
    "adam": Adam,
    "adamw": AdamW,          # Adam with decoupled weight decay, weight_decay defaults to 0.01
}


def make_optimizer(name: str, model, **kw) -> Optimizer:
    """Build an optimizer by name: ``"sgd"``, ``"momentum"`` (SGD, momentum 0.9 unless given),
    ``"nesterov"`` (SGD, Nesterov, momentum 0.9 unless given), ``"adam"``, ``"adamw"``
    (decoupled weight decay, 0.01 unless given).  Keyword arguments go to the constructor."""
    key = str(name).strip().lower()
    if key not in OPTIMIZERS:
        raise ValueError(f"make_optimizer: unknown optimizer {name!r}; choose from {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[key](model, **kw)


# -- learning-rate schedules ----------------------------------------------------------------------
class _Schedule:
    """Sets ``optimizer.lr`` from the base rate (the optimizer's lr at construction) and the
    number of :meth:`step` calls (epochs) so far.  Call :meth:`step` once per epoch, after that
    epoch's optimizer steps, as with ``torch.optim.lr_scheduler``."""

    def __init__(self, optimizer):
        if not hasattr(optimizer, "lr"):
            raise TypeError(f"{type(self).__name__}: 'optimizer' must have an 'lr' attribute")
        self.optimizer = optimizer
        self.base_lr = float(optimizer.lr)
        self.epoch = 0

    def _lr_at(self, epoch: int) -> float:
        raise NotImplementedError

    def step(self) -> float:
        """Advance one epoch and set the optimizer's lr; returns the new lr."""
        self.epoch += 1
        self.optimizer.lr = self._lr_at(self.epoch)
        return self.optimizer.lr

    @property
    def lr(self) -> float:
        """The optimizer's current learning rate."""
        return self.optimizer.lr

    def state_dict(self) -> dict:
        return {"schedule": type(self).__name__, "base_lr": self.base_lr, "epoch": self.epoch}

    def load_state_dict(self, sd: dict) -> None:
        if sd.get("schedule") != type(self).__name__:
            raise ValueError(f"{type(self).__name__}.load_state_dict: state dict is for {sd.get('schedule')!r}")
        self.base_lr = _positive(sd["base_lr"], type(self).__name__, "base_lr")
        self.epoch = int(sd["epoch"])
        self.optimizer.lr = self._lr_at(self.epoch)


class StepDecay(_Schedule):
    """``lr = base_lr · gamma^(epoch // step_size)`` (``torch.optim.lr_scheduler.StepLR``)."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1):
        if isinstance(step_size, bool) or not isinstance(step_size, numbers.Integral) or step_size < 1:
            raise ValueError(f"StepDecay: 'step_size' must be a positive integer, got {step_size!r}")
        self.step_size = int(step_size)
        self.gamma = _positive(gamma, "StepDecay", "gamma")
        super().__init__(optimizer)

    def _lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialDecay(_Schedule):
    """``lr = base_lr · gamma^epoch`` (``torch.optim.lr_scheduler.ExponentialLR``)."""

    def __init__(self, optimizer, gamma: float):
        self.gamma = _positive(gamma, "ExponentialDecay", "gamma")
        super().__init__(optimizer)

    def _lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** epoch
