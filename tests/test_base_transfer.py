"""Transfer from a pretrained base (ResNet18 / VGG16) on a generated colour image folder, with
random weights saved from the torch reference networks: weights loaded into the base only,
base frozen (BatchNorm in inference mode), features cached, head trained."""
import os

import numpy as np
import pytest

if os.environ.get("NPTL_REQUIRE_TORCH") == "1":
    import torch  # noqa: F401  -- CI requires torch: an ImportError here must fail the run
else:
    torch = pytest.importorskip(
        "torch", reason="torch not installed (pip install nptl[torch]); set NPTL_REQUIRE_TORCH=1 to make this fatal"
    )

import nptl.io as nio  # noqa: E402
from nptl.base_transfer import imagenet_normalize, run_base_transfer, transfer_model  # noqa: E402
from nptl.data import load_dataset  # noqa: E402
from nptl.models import resnet18  # noqa: E402
from tests.torch_reference import ResNet18, randomize  # noqa: E402

COLOURS = {"blue": (30, 30, 200), "green": (30, 200, 30), "red": (200, 30, 30)}


def colour_folder(root, per_class=8, size=(40, 48)):
    """One sub-folder per class of noisy PNG images of the class's colour."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, rgb in COLOURS.items():
        os.makedirs(root / name)
        for i in range(per_class):
            pixels = np.clip(rng.normal(0, 40, size + (3,)) + np.array(rgb), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("base")
    folder = colour_folder(tmp / "imgs")
    net = randomize(ResNet18(), seed=0)
    torch.save(net.state_dict(), tmp / "resnet18.pth")
    full = resnet18(input_shape=(3, 224, 224))
    nio.import_torch(full, tmp / "resnet18.pth")
    nio.save(full, tmp / "resnet18.npz")
    return tmp, folder, net


def test_imagenet_normalisation():
    x = np.ones((1, 3, 2, 2), np.float32) * np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    np.testing.assert_allclose(imagenet_normalize(x), 0, atol=1e-6)
    with pytest.raises(ValueError, match=r"needs RGB images \(N, 3, H, W\), got shape \(1, 1, 2, 2\)"):
        imagenet_normalize(np.zeros((1, 1, 2, 2)))


@pytest.mark.parametrize("weights", ["resnet18.npz", "resnet18.pth"])
def test_resnet18_base_frozen_head_trained_on_cached_features(setup, weights):
    tmp, folder, net = setup
    data = load_dataset(folder, size=(32, 32), color="rgb")
    result = run_base_transfer(data, "resnet18", tmp / weights, epochs=3, progress=False, save=tmp / "t.npz",
                               log=lambda m: None)
    assert result["head"]["cached_features"] is True and result["train_images"] + result["test_images"] == 24
    model = nio.load(tmp / "t.npz")
    # the base holds the torch weights and BatchNorm statistics, unchanged by training
    np.testing.assert_array_equal(model["layer3.1.bn2"].buffers["running_var"],
                                  net.state_dict()["layer3.1.bn2.running_var"].numpy())
    np.testing.assert_array_equal(model["conv1"].params["w"], net.state_dict()["conv1.weight"].numpy())
    assert model["fc"].params["w"].shape == (512, 3) and model["fc"].trainable and not model["layer4"].trainable


def test_vgg16_new_head_and_fine_tuning_unfreezes_the_top_stage():
    model, base = transfer_model("vgg16", 3, 32)
    assert base == ["features", "flatten"] and model.output_shape() == (3,)
    assert [l.name for l in model.layers] == ["features", "flatten", "classifier"]


def test_image_size_too_small_names_the_layer():
    with pytest.raises(ValueError, match=r"input \(3, 16, 16\) does not fit layer 'features.30' \(MaxPool2D\), "
                                         r"which would receive \(512, 1, 1\).*pool size 2 is larger than the input 1x1"):
        transfer_model("vgg16", 3, 16)
