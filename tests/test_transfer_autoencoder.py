"""The autoencoder arms of the transfer recipe end to end on the generated data set."""
import numpy as np
import pytest

from nptl import io
from nptl.data import load_dataset
from nptl.models import SEED_CNN_ENCODER
from nptl.transfer import ARMS, format_table, pretrain_autoencoder, run_transfer

SMALL = dict(labels_per_class=4, source_epochs=1, scratch_epochs=2, head_epochs=2, finetune_epochs=1, repeats=2,
             progress=False, log=lambda msg: None)


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", n_train_per_class=30, n_test_per_class=6, seed=0)


def test_autoencoder_arms_end_to_end(data, tmp_path):
    base = run_transfer(data, "synthetic", [0, 1, 2, 3, 4], [5, 6, 7, 8, 9], **SMALL)
    arms = list(ARMS) + ["autoencoder", "source+autoencoder"]
    result = run_transfer(data, "synthetic", [0, 1, 2, 3, 4], [5, 6, 7, 8, 9], arms=arms, autoencoder_epochs=1,
                          save_dir=tmp_path, **SMALL)
    assert list(result["arms"]) == arms and result["config"]["arms"] == arms
    # the existing arms are untouched: same figures as a run without the autoencoder arms
    assert "arms" not in base["config"] and list(base["arms"]) == list(ARMS)
    for arm in ARMS:
        assert [r["test_accuracy"] for r in result["arms"][arm]["runs"]] == \
               [r["test_accuracy"] for r in base["arms"][arm]["runs"]]
        assert set(result["arms"][arm]) == set(base["arms"][arm])
    for arm in ("autoencoder", "source+autoencoder"):
        ae = result["autoencoders"][arm]
        assert ae["train_images"] == 5 * 30 and ae["psnr"] > 0 and ae["test_psnr"] > 0
        assert set(result["arms"][arm]) == set(result["arms"]["finetune"])
        assert all(r["seconds"] >= ae["seconds"] for r in result["arms"][arm]["runs"])   # pretraining included
    # the autoencoder arm's classifier starts from the autoencoder's encoder: conv1, conv2 stay frozen
    pretrained, clf = io.load(tmp_path / "autoencoder_pretrained.npz"), io.load(tmp_path / "autoencoder.npz")
    for name in ("conv1", "conv2"):
        np.testing.assert_array_equal(pretrained[name].params["w"], clf[name].params["w"])
    assert not np.array_equal(pretrained["conv3"].params["w"], clf["conv3"].params["w"])   # fine-tuned
    assert list(result["histories"]) == arms                      # first draw's curves, one per arm
    assert len(result["histories"]["autoencoder"]["loss"]) == SMALL["head_epochs"] + SMALL["finetune_epochs"]
    assert "source+autoencoder reconstruction PSNR" in format_table(result)
    assert "| source+autoencoder |" in format_table(result)


def test_source_plus_autoencoder_starts_from_the_source_base(data, tmp_path):
    from nptl.transfer import pretrain_source

    pretrain_source(data, [0, 1, 2, 3, 4], tmp_path / "source.npz", epochs=1, progress=False, log=lambda m: None)
    x = data.x_train[np.isin(data.y_train, [5, 6, 7, 8, 9])]
    pretrain_autoencoder(x, tmp_path / "ae.npz", epochs=1, lr=1e-12, init_from=tmp_path / "source.npz",
                         progress=False, log=lambda m: None)
    source, ae = io.load(tmp_path / "source.npz"), io.load(tmp_path / "ae.npz")
    for name in SEED_CNN_ENCODER:
        for key, value in source[name].params.items():
            np.testing.assert_allclose(ae[name].params[key], value, atol=1e-6)   # lr 1e-12: unchanged


def test_unknown_arm(data):
    with pytest.raises(ValueError, match=r"unknown arm\(s\) \['denoise'\]"):
        run_transfer(data, "synthetic", [0, 1], [2, 3], arms=["scratch", "denoise"], **SMALL)
