"""Metrics against hand-computed values."""
import numpy as np
import pytest

from nptl.metrics import classification_report, confusion_matrix


def test_confusion_and_scores_by_hand():
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 1, 0, 1, 2, 2]
    cm = confusion_matrix(y_true, y_pred, 3)
    np.testing.assert_array_equal(cm, [[2, 1, 0], [0, 1, 1], [0, 0, 1]])
    ev = classification_report(y_true, y_pred, 3, ["a", "b", "c"])
    assert ev.accuracy == pytest.approx(4 / 6)
    # precision: a 2/2, b 1/2, c 1/2 ; recall: a 2/3, b 1/2, c 1/1
    np.testing.assert_allclose(ev.precision, [1.0, 0.5, 0.5])
    np.testing.assert_allclose(ev.recall, [2 / 3, 0.5, 1.0])
    f1 = [2 * 1 * (2 / 3) / (1 + 2 / 3), 0.5, 2 * 0.5 * 1 / 1.5]
    np.testing.assert_allclose(ev.f1, f1)
    assert ev.macro_f1 == pytest.approx(np.mean(f1))
    text = ev.report()
    assert "confusion matrix" in text and "macro avg" in text
    assert ev.as_dict()["per_class"]["a"]["support"] == 3


def test_class_never_predicted_has_zero_precision_not_nan():
    ev = classification_report([0, 1], [0, 0], 2)
    np.testing.assert_array_equal(ev.precision, [0.5, 0.0])
    assert np.isfinite(ev.f1).all()


def test_bad_labels():
    with pytest.raises(ValueError, match=r"'y_pred' must be in \[0, 2\)"):
        confusion_matrix([0, 1], [0, 2], 2)
