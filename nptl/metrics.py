"""Classification metrics: accuracy, confusion matrix, per-class precision / recall / F1.

For K classes and the confusion matrix ``M[t, p]`` = number of examples of true class ``t``
predicted as ``p``:

    precision_k = M[k,k] / Σ_t M[t,k]      (of those predicted k, how many are k)
    recall_k    = M[k,k] / Σ_p M[k,p]      (of those that are k, how many were found)
    F1_k        = 2 · precision_k · recall_k / (precision_k + recall_k)

A ratio with a zero denominator is defined as 0 (as scikit-learn's ``zero_division=0``).
Macro averages are the unweighted means over classes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """``M[t, p]`` counts (int64), rows = true class, columns = predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"confusion_matrix: y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    for name, arr in (("y_true", y_true), ("y_pred", y_pred)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(f"confusion_matrix: '{name}' must be in [0, {num_classes}), got range "
                             f"[{arr.min()}, {arr.max()}]")
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def _safe_div(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.divide(a, b, out=np.zeros_like(a), where=b != 0)


@dataclass
class Evaluation:
    """Everything :func:`classification_report` measures."""

    confusion: np.ndarray
    class_names: list
    loss: float | None = None

    @property
    def accuracy(self) -> float:
        total = self.confusion.sum()
        return float(np.trace(self.confusion) / total) if total else 0.0

    @property
    def precision(self) -> np.ndarray:
        return _safe_div(np.diag(self.confusion), self.confusion.sum(axis=0))

    @property
    def recall(self) -> np.ndarray:
        return _safe_div(np.diag(self.confusion), self.confusion.sum(axis=1))

    @property
    def f1(self) -> np.ndarray:
        p, r = self.precision, self.recall
        return _safe_div(2 * p * r, p + r)

    @property
    def macro_precision(self) -> float:
        return float(self.precision.mean())

    @property
    def macro_recall(self) -> float:
        return float(self.recall.mean())

    @property
    def macro_f1(self) -> float:
        return float(self.f1.mean())

    def as_dict(self) -> dict:
        return {
            "accuracy": self.accuracy, "loss": self.loss, "macro_precision": self.macro_precision,
            "macro_recall": self.macro_recall, "macro_f1": self.macro_f1,
            "per_class": {str(n): {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                          for n, p, r, f, s in zip(self.class_names, self.precision, self.recall, self.f1,
                                                   self.confusion.sum(axis=1))},
            "confusion_matrix": self.confusion.tolist(),
        }

    def report(self) -> str:
        """Per-class table, macro averages and the confusion matrix, as text."""
        names = [str(n) for n in self.class_names]
        w = max(12, max(len(n) for n in names) + 2)
        lines = [f"{'class'.ljust(w)}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
        for n, p, r, f, s in zip(names, self.precision, self.recall, self.f1, self.confusion.sum(axis=1)):
            lines.append(f"{n.ljust(w)}{p:>10.4f}{r:>10.4f}{f:>10.4f}{s:>10d}")
        lines.append(f"{'macro avg'.ljust(w)}{self.macro_precision:>10.4f}{self.macro_recall:>10.4f}"
                     f"{self.macro_f1:>10.4f}{int(self.confusion.sum()):>10d}")
        lines.append(f"accuracy {self.accuracy:.4f}" + ("" if self.loss is None else f"   loss {self.loss:.4f}"))
        lines.append("")
        lines.append("confusion matrix (rows: true class, columns: predicted)")
        cw = max(6, len(str(int(self.confusion.max(initial=0)))) + 2)
        short = [n[:cw - 1] for n in names]
        lines.append(" " * w + "".join(s.rjust(cw) for s in short))
        for n, row in zip(names, self.confusion):
            lines.append(n.ljust(w) + "".join(str(int(v)).rjust(cw) for v in row))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()


def classification_report(y_true, y_pred, num_classes: int, class_names=None, loss=None) -> Evaluation:
    names = list(class_names) if class_names is not None else [str(k) for k in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"classification_report: {len(names)} class names for {num_classes} classes")
    return Evaluation(confusion_matrix(y_true, y_pred, num_classes), names, loss)
