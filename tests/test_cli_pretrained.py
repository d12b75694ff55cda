"""The pretrained-base workflow from the command line, end to end, on a generated colour image
folder with random weights saved from the torch reference ResNet18: import-weights, transfer
--base, summary, evaluate; and each bad input as one line, exit 2, nothing written."""
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
from nptl.cli import main  # noqa: E402
from tests.test_base_transfer import colour_folder  # noqa: E402
from tests.torch_reference import VGG16, ResNet18, randomize  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    net = randomize(ResNet18(), seed=0)
    torch.save(net.state_dict(), tmp / "resnet18.pth")
    return tmp, colour_folder(tmp / "imgs"), net


def one_line_error(capsys, pattern):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) >= 1
    import re
    assert re.search(pattern, err, flags=re.S), err


def test_import_weights_transfer_summary_evaluate(files, capsys):
    tmp, folder, net = files
    assert main(["import-weights", str(tmp / "resnet18.pth"), "-o", str(tmp / "resnet18.npz")]) == 0
    model = nio.load(tmp / "resnet18.npz")
    np.testing.assert_array_equal(model["layer3.1.bn2"].buffers["running_var"],
                                  net.state_dict()["layer3.1.bn2.running_var"].numpy())
    np.testing.assert_array_equal(model["fc"].params["w"], net.state_dict()["fc.weight"].numpy().T)
    capsys.readouterr()
    assert main(["transfer", "--base", "resnet18", "--weights", str(tmp / "resnet18.npz"), "--data", str(folder),
                 "--image-size", "32", "--head-epochs", "3", "--quiet", "--json", str(tmp / "r.json"),
                 "--save", str(tmp / "out")]) == 0
    import json
    result = json.loads((tmp / "r.json").read_text())
    assert result["base"] == "resnet18" and result["head"]["cached_features"] is True
    assert 0.0 <= result["head"]["test_accuracy"] <= 1.0
    saved = result["saved"]
    assert main(["summary", saved]) == 0
    assert "layer4.1.bn2 (BatchNorm2D)" in capsys.readouterr().out
    assert main(["evaluate", saved, "--data", str(folder), "--image-size", "32", "--color", "rgb"]) == 0


def test_skip_head_and_bad_inputs(files, capsys):
    tmp, folder, net = files
    assert main(["import-weights", str(tmp / "resnet18.pth"), "-o", str(tmp / "base.npz"), "--skip-head"]) == 0
    assert "fc" not in [l.name for l in nio.load(tmp / "base.npz").layers]
    capsys.readouterr()
    # the other architecture's state dict
    torch.save(randomize(VGG16(num_classes=3), seed=1).features.state_dict(), tmp / "vggfeat.pth")
    assert main(["import-weights", str(tmp / "vggfeat.pth"), "-o", str(tmp / "x.npz"), "--arch", "resnet18"]) == 2
    one_line_error(capsys, r"vggfeat.pth'.*missing.*conv1.weight.*another architecture")
    # a truncated file
    data = (tmp / "resnet18.pth").read_bytes()
    (tmp / "cut.pth").write_bytes(data[: len(data) // 3])
    assert main(["import-weights", str(tmp / "cut.pth"), "-o", str(tmp / "x.npz")]) == 2
    one_line_error(capsys, r"cut.pth': not a readable PyTorch file")
    # a pickled object other than tensors
    torch.save(ResNet18(), tmp / "module.pth")
    assert main(["import-weights", str(tmp / "module.pth"), "-o", str(tmp / "x.npz")]) == 2
    one_line_error(capsys, r"module.pth': holds pickled objects other than tensors")
    assert not (tmp / "x.npz").exists()
    # an image size too small for VGG16
    assert main(["transfer", "--base", "vgg16", "--data", str(folder), "--image-size", "16", "--quiet"]) == 2
    one_line_error(capsys, r"does not fit layer 'features.30' \(MaxPool2D\)")
