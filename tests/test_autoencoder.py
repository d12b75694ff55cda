"""seed_autoencoder and reconstruction training: shapes, names shared with seed_cnn, gradients,
fit(y=None) without copying the data, losses and errors."""
import tracemalloc

import numpy as np
import pytest

import nptl
from nptl import Conv2D, ConvTranspose2D, MaxPool2D, ReLU, Upsample2D
from nptl.models import SEED_CNN_ENCODER, autoencoder, mirror_decoder, seed_autoencoder, seed_cnn
from nptl.optim import Adam
from nptl.train import EarlyStopping, evaluate_reconstruction, fit


def blobs(n=64, size=12, seed=0):
    """Images in [0, 1]: one bright square at a random place on a dark background."""
    rng = np.random.default_rng(seed)
    x = np.full((n, 1, size, size), 0.1, np.float32)
    for i, (r, c) in enumerate(rng.integers(0, size - 4, (n, 2))):
        x[i, 0, r:r + 4, c:c + 4] = 0.9
    return x


def small_autoencoder(output="sigmoid", seed=0):
    enc = [Conv2D(4, 3, name="conv1"), ReLU(name="relu1"), MaxPool2D(2, name="pool1")]
    return autoencoder(enc, mirror_decoder(enc, (1, 12, 12), output), (1, 12, 12), seed=seed)


def test_seed_autoencoder_mirrors_the_seed_cnn_base():
    ae, clf = seed_autoencoder((1, 28, 28)), seed_cnn((1, 28, 28), 5)
    assert ae.output_shape() == (1, 28, 28)
    assert [l.name for l in ae.layers[:len(SEED_CNN_ENCODER)]] == list(SEED_CNN_ENCODER)
    for name in SEED_CNN_ENCODER:
        assert type(ae[name]) is type(clf[name])
        assert {k: v.shape for k, v in ae[name].params.items()} == {k: v.shape for k, v in clf[name].params.items()}
    kinds = [type(l).__name__ for l in ae.layers[len(SEED_CNN_ENCODER):]]
    assert kinds == ["ConvTranspose2D", "ReLU", "ConvTranspose2D", "ConvTranspose2D", "ReLU", "Upsample2D",
                     "ConvTranspose2D", "Sigmoid"]
    assert ae["unpool2"].output_padding == 1        # 5 -> 11: restores the row pool2 dropped
    x = blobs(2, 28)
    assert ae.forward(x).shape == x.shape and np.all((ae.forward(x) > 0) & (ae.forward(x) < 1))
    assert seed_autoencoder((3, 32, 32), output="logits").output_shape() == (3, 32, 32)
    assert type(seed_autoencoder((3, 32, 32), output="logits").layers[-1]) is ConvTranspose2D


def test_encoder_weights_load_into_seed_cnn_by_name(tmp_path):
    ae = seed_autoencoder((1, 28, 28), seed=3)
    nptl.io.save(ae, tmp_path / "ae.npz")
    clf = seed_cnn((1, 28, 28), 5, seed=0)
    assert nptl.io.load_weights(clf, tmp_path / "ae.npz", layers=SEED_CNN_ENCODER) == list(SEED_CNN_ENCODER)
    x = blobs(3, 28)
    np.testing.assert_array_equal(clf.slice(0, len(SEED_CNN_ENCODER)).forward(x),
                                  ae.slice(0, len(SEED_CNN_ENCODER)).forward(x))
    # an autoencoder with other encoder names: one error naming what is missing, nothing loaded
    other = small_autoencoder()
    other["conv1"].name = "enc1"
    nptl.io.save(other, tmp_path / "other.npz")
    before = clf["conv1"].params["w"].copy()
    with pytest.raises(nptl.io.CheckpointError, match=r"not in the checkpoint: \['conv1'"):
        nptl.io.load_weights(clf, tmp_path / "other.npz", layers=SEED_CNN_ENCODER)
    np.testing.assert_array_equal(clf["conv1"].params["w"], before)
    # same names, other shapes: every mismatch listed
    with pytest.raises(nptl.io.CheckpointError, match=r"1 mismatch\(es\):\n  conv1.w: checkpoint \(32, 1, 3, 3\) vs model \(32, 3, 3, 3\)"):
        nptl.io.load_weights(seed_cnn((3, 32, 32), 5), tmp_path / "ae.npz", layers=SEED_CNN_ENCODER)


def test_decoder_that_cannot_match_the_input_names_the_layer():
    with pytest.raises(ValueError, match=r"cannot mirror layer 'pool2' \(MaxPool2D 2, stride 2\): it maps 11x12 to 5x6"):
        seed_autoencoder((1, 28, 30))
    enc = [Conv2D(4, 3, name="conv1"), ReLU(name="relu1")]
    with pytest.raises(ValueError, match=r"decoder ends at \(1, 12, 12\) but the input is \(1, 10, 10\).*"
                                         r"last layer 'grow'"):
        autoencoder(enc, [ConvTranspose2D(1, 3, name="back"), Upsample2D(1, name="id"),
                          ConvTranspose2D(1, 3, name="grow")], (1, 10, 10))
    with pytest.raises(ValueError, match=r"don't know how to mirror layer 'flat' \(Flatten\)"):
        mirror_decoder([Conv2D(4, 3, name="conv1"), nptl.Flatten(name="flat")], (1, 10, 10))


@pytest.mark.parametrize("output", ["sigmoid", "logits"])
def test_autoencoder_gradients(output):
    ae = small_autoencoder(output)
    assert ae.output_shape() == (1, 12, 12)
    x = np.random.default_rng(0).random((2, 1, 12, 12))   # no ties inside a pooling window
    nptl.gradcheck(ae, x).assert_ok(1e-6)                  # every parameter entry and the input


@pytest.mark.parametrize("output,loss", [("sigmoid", "mse"), ("logits", "binary_cross_entropy")])
def test_fit_reconstruction_learns(output, loss):
    x = blobs(128)
    ae = small_autoencoder(output)
    before = evaluate_reconstruction(ae, x, loss)
    hist = fit(ae, x, None, Adam(ae, 1e-2), epochs=8, batch_size=16, loss=loss,
               validation_data=(blobs(32, seed=1), None), progress=False)
    h = hist.history
    assert set(h) == {"loss", "psnr", "val_loss", "val_psnr", "lr", "seconds"}
    after = evaluate_reconstruction(ae, x, loss)
    assert h["loss"][-1] < h["loss"][0] and after["loss"] < before["loss"]
    assert after["psnr"] > before["psnr"] + 6          # at least 4x smaller squared error
    # the validation figures are those of evaluate_reconstruction
    val = evaluate_reconstruction(ae, blobs(32, seed=1), loss)
    assert val["loss"] == pytest.approx(h["val_loss"][-1], rel=1e-5)
    assert val["psnr"] == pytest.approx(h["val_psnr"][-1], rel=1e-5)
    # psnr is 10·log10(1/mse) of the image (sigmoid of the logits)
    image = ae.predict(x)
    image = nptl.ops.sigmoid(image) if output == "logits" else image
    assert after["psnr"] == pytest.approx(10 * np.log10(1 / np.mean((image - x) ** 2)), rel=1e-4)


def test_fit_reconstruction_does_not_copy_the_data_set():
    x = blobs(20000)                                   # 11.5 MB
    x.flags.writeable = False                          # and fit never writes to it
    ae = small_autoencoder()
    fit(ae, x[:32], None, Adam(ae, 1e-3), epochs=1, batch_size=32, progress=False)  # compile first
    tracemalloc.start()
    fit(ae, x, None, Adam(ae, 1e-3), epochs=1, batch_size=256, progress=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < x.nbytes / 4, f"fit allocated {peak / 1e6:.1f} MB at peak for a {x.nbytes / 1e6:.1f} MB data set"


def test_frozen_encoder_cached_reconstruction_equals_uncached():
    x = blobs(64)
    a, b = small_autoencoder(), small_autoencoder()
    for m in (a, b):
        m.freeze("conv1")
    ha = fit(a, x, None, Adam(a, 1e-3), epochs=2, batch_size=16, seed=1, cache_features=True, progress=False)
    hb = fit(b, x, None, Adam(b, 1e-3), epochs=2, batch_size=16, seed=1, cache_features=False, progress=False)
    assert ha.cached_features and not hb.cached_features
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-5)
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_allclose(p.value, q.value, rtol=1e-5, atol=1e-6)


def test_early_stopping_on_val_psnr():
    x = blobs(64)
    ae = small_autoencoder()
    hist = fit(ae, x, None, Adam(ae, 1e-3), epochs=3, batch_size=16, validation_data=(x, None),
               early_stopping=EarlyStopping(monitor="val_psnr", patience=5), progress=False)
    assert hist.best_epoch == int(np.argmax(hist.history["val_psnr"])) + 1


def test_reconstruction_errors():
    x = blobs(8)
    ae = small_autoencoder()
    with pytest.raises(ValueError, match=r"a mse target must be shaped like the model's output \(N,\) \+ "
                                         r"\(1, 12, 12\) = \(8, 1, 12, 12\), got 'y' of shape \(8, 1, 10, 10\)"):
        fit(ae, x, np.zeros((8, 1, 10, 10)), Adam(ae), loss="mse", progress=False)
    with pytest.raises(ValueError, match=r"y=None trains a reconstruction.*not 'cross_entropy'"):
        fit(ae, x, None, Adam(ae), loss="cross_entropy", progress=False)
    with pytest.raises(ValueError, match=r"unknown loss 'l1'"):
        fit(ae, x, None, Adam(ae), loss="l1", progress=False)
    clf = nptl.Sequential([Conv2D(2, 3), nptl.Flatten(), nptl.Dense(3)], input_shape=(1, 12, 12))
    with pytest.raises(ValueError, match=r"y=None reconstructs the input, but model 'sequential' outputs \(3,\) "
                                         r"per sample for input \(1, 12, 12\)"):
        fit(clf, x, None, Adam(clf), progress=False)
    with pytest.raises(ValueError, match=r"fit \(validation_data\): a mse target must be shaped"):
        fit(ae, x, None, Adam(ae), validation_data=(x, np.zeros(8)), progress=False)
