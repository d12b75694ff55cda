"""nptl pretrain --autoencoder and the autoencoder arms of nptl transfer, end to end."""
import json

import numpy as np

from nptl import io
from nptl.cli import main
from nptl.models import SEED_CNN_ENCODER, seed_cnn
from tests.test_cli import idx_dir  # noqa: F401  (the generated set written as IDX files)
from tests.test_cli_cases import fails


def test_pretrain_autoencoder(idx_dir, tmp_path, capsys):  # noqa: F811
    ae_path, out = tmp_path / "ae.npz", tmp_path / "ae.json"
    rc = main(["pretrain", "--autoencoder", "--data", str(idx_dir), "--classes", "5,6,7,8,9", "--epochs", "2",
               "--save", str(ae_path), "--json", str(out), "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "epoch 1: reconstruction loss" in text and "epoch 2: reconstruction loss" in text
    assert "test images (100): reconstruction loss" in text
    result = json.loads(out.read_text())
    assert result["classes"] == [5, 6, 7, 8, 9] and result["loss"] == "mse"
    assert len(result["history"]["loss"]) == 2 and len(result["history"]["psnr"]) == 2
    assert result["test"]["psnr"] > 0
    # the encoder goes under a classifier by layer name
    clf = seed_cnn((1, 28, 28), 5)
    assert io.load_weights(clf, ae_path, layers=SEED_CNN_ENCODER) == list(SEED_CNN_ENCODER)
    np.testing.assert_array_equal(clf["conv2"].params["w"], io.load(ae_path)["conv2"].params["w"])
    # ... and starts the next autoencoder (bce on logits this time)
    assert main(["pretrain", "--autoencoder", "--data", str(idx_dir), "--epochs", "1", "--loss", "bce",
                 "--init-from", str(ae_path), "--quiet"]) == 0


def test_pretrain_errors(idx_dir, tmp_path, capsys):  # noqa: F811
    assert "give --autoencoder" in fails(["pretrain", "--data", str(idx_dir)], capsys)
    assert "--init-from" in fails(["pretrain", "--autoencoder", "--data", str(idx_dir), "--init-from",
                                   str(tmp_path / "none.npz")], capsys)


def test_transfer_with_the_autoencoder_arms(idx_dir, tmp_path, capsys):  # noqa: F811
    out, save = tmp_path / "t.json", tmp_path / "ckpt"
    arms = ["scratch", "frozen", "finetune", "autoencoder", "source+autoencoder"]
    rc = main(["transfer", "--data", str(idx_dir), "--labels-per-class", "4", "--epochs", "1", "--scratch-epochs", "1",
               "--head-epochs", "1", "--finetune-epochs", "1", "--repeats", "1", "--autoencoder-epochs", "1",
               "--arms", ",".join(arms), "--json", str(out), "--save", str(save), "--quiet"])
    assert rc == 0
    table = capsys.readouterr().out
    for arm in arms:
        assert f"| {arm} |" in table
    result = json.loads(out.read_text())
    assert list(result["arms"]) == arms and set(result["autoencoders"]) == set(arms[3:])
    assert (save / "autoencoder_pretrained.npz").exists() and (save / "source_autoencoder.npz").exists()


def test_transfer_arm_errors(idx_dir, capsys):  # noqa: F811
    assert "--arms must be arms among" in fails(["transfer", "--data", str(idx_dir), "--arms", "scratch,denoise"],
                                                capsys)
    assert "add finetune to --arms" in fails(["transfer", "--data", str(idx_dir), "--arms", "scratch,autoencoder",
                                              "--plots", "p"], capsys)
