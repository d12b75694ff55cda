"""fit / evaluate: learning, shuffling determinism, caching equivalence, early stopping, NaN."""
import numpy as np
import pytest

import nptl
from nptl import Conv2D, Dense, Flatten, MaxPool2D, ReLU
from nptl.errors import NonFiniteError
from nptl.optim import SGD
from nptl.train import EarlyStopping, cacheable_prefix, evaluate, fit


def toy(n=96, seed=0):
    """Two classes: a bright square in the top-left vs the bottom-right quadrant."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 0.1, (n, 1, 12, 12)).astype(np.float32)
    for i in range(n):
        r, c = (1, 1) if y[i] == 0 else (6, 6)
        x[i, 0, r:r + 4, c:c + 4] += 1
    return x, y


def model(seed=0):
    return nptl.Sequential([Conv2D(4, 3, name="c1"), ReLU(), MaxPool2D(2), Flatten(), Dense(8, name="d1"), ReLU(),
                            Dense(2, name="out")], input_shape=(1, 12, 12), seed=seed)


def test_fit_learns_and_evaluate_reports():
    x, y = toy()
    m = model()
    hist = fit(m, x, y, SGD(m, 0.1), epochs=8, batch_size=16, validation_data=toy(40, 1), progress=False)
    assert hist.epochs == 8 and hist.history["loss"][-1] < hist.history["loss"][0]
    ev = evaluate(m, *toy(200, 2))
    assert ev.accuracy > 0.9
    assert ev.confusion.sum() == 200


def test_seeded_shuffling_is_deterministic():
    x, y = toy()
    a, b = model(), model()
    fit(a, x, y, SGD(a, 0.05), epochs=2, batch_size=16, seed=3, progress=False)
    fit(b, x, y, SGD(b, 0.05), epochs=2, batch_size=16, seed=3, progress=False)
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.value, q.value)


def test_frozen_feature_caching_gives_the_same_result():
    x, y = toy()
    a, b = model(), model()
    for m in (a, b):
        m.freeze(up_to="flatten1")
    assert cacheable_prefix(a) == a.index("d1")
    ha = fit(a, x, y, SGD(a, 0.05), epochs=3, batch_size=16, seed=1, cache_features=True, progress=False)
    hb = fit(b, x, y, SGD(b, 0.05), epochs=3, batch_size=16, seed=1, cache_features=False, progress=False)
    assert ha.cached_features and not hb.cached_features
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_allclose(p.value, q.value, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-5)


def test_caching_off_with_augmentation():
    class Flip:
        active = True

        def __call__(self, xb):
            return xb[..., ::-1].copy()

    m = model()
    m.freeze(up_to="flatten1")
    assert cacheable_prefix(m, Flip()) == 0
    with pytest.raises(ValueError, match="cache_features=True but there is no frozen base"):
        fit(m, *toy(), SGD(m, 0.05), augment=Flip(), cache_features=True, progress=False)


def test_early_stopping_restores_best_weights():
    x, y = toy()
    m = model()
    # min_delta so large that no epoch after the first counts as an improvement
    hist = fit(m, x, y, SGD(m, 0.05), epochs=30, batch_size=16, validation_data=toy(40, 1),
               early_stopping=EarlyStopping(patience=2, min_delta=1e9), progress=False)
    assert hist.stopped_early and hist.best_epoch == 1 and hist.epochs == 3
    # weights are those after epoch 1: validation loss equals the recorded one
    from nptl.train import _Classification, _loss_and_metric
    vl, _ = _loss_and_metric(m, *toy(40, 1), _Classification(), 256)
    assert vl == pytest.approx(hist.history["val_loss"][0], rel=1e-6)


def test_non_finite_loss_names_epoch_and_step_and_keeps_last_good_weights():
    x, y = toy()
    m = model()
    opt = SGD(m, 1e30)  # explodes on the first update
    with pytest.raises(NonFiniteError, match=r"non-finite loss at epoch 1, step \d+"):
        fit(m, x, y, opt, epochs=2, batch_size=16, progress=False)
    for p in m.parameters():
        assert np.all(np.isfinite(p.value)), p.name
    # the restored weights are ones whose loss was finite
    loss, _ = nptl.ops.cross_entropy(m.forward(x), y)
    assert np.isfinite(loss)


def test_fit_rejects_bad_labels_and_fully_frozen_model():
    x, y = toy()
    m = model()
    with pytest.raises(ValueError, match=r"'labels' must be in \[0, 2\)"):
        fit(m, x, y + 1, SGD(m, 0.1), progress=False)
    m.freeze()
    with pytest.raises(ValueError, match="no trainable parameters"):
        fit(m, x, y, SGD(m, 0.1), progress=False)
