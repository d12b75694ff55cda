"""Importing PyTorch state dicts: the key mapping, the three sources (.pth, .safetensors, a
mapping), every bad input as one clear error with nothing changed, and MaxPool2D padding."""
import os

import numpy as np
import pytest

if os.environ.get("NPTL_REQUIRE_TORCH") == "1":
    import torch  # noqa: F401  -- CI requires torch: an ImportError here must fail the run
else:
    torch = pytest.importorskip(
        "torch", reason="torch not installed (pip install nptl[torch]); set NPTL_REQUIRE_TORCH=1 to make this fatal"
    )
from torch import nn  # noqa: E402

import nptl  # noqa: E402
from nptl import Conv2D, Dense, Flatten, MaxPool2D, ReLU  # noqa: E402
from nptl.graph import Sequential  # noqa: E402
from nptl.torch_weights import WeightsError, export_torch, import_torch, torch_keys  # noqa: E402


class TinyTorch(nn.Module):
    """features (conv, relu, padded max pool) + classifier (linear), keyed like torchvision's VGG."""

    def __init__(self, classes=3):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.classifier = nn.Sequential(nn.Linear(4 * 4 * 4, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def tiny_nptl(classes=3, dtype=np.float32):
    return Sequential([Sequential([Conv2D(4, 3, padding=1, name="0"), ReLU(name="1"), MaxPool2D(3, 2, 1, name="2")],
                                  name="features"), Flatten(name="flatten"),
                       Sequential([Dense(classes, name="0")], name="classifier")],
                      input_shape=(2, 8, 8), dtype=dtype, name="tiny")


@pytest.fixture
def net():
    torch.manual_seed(0)
    return TinyTorch().double().eval()


def test_keys_are_torch_keys_and_values_match_torch(net):
    model = tiny_nptl(dtype=np.float64)
    assert list(torch_keys(model)) == list(net.state_dict())
    assert import_torch(model, net.state_dict()) == list(net.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 2, 8, 8))
    np.testing.assert_allclose(model.forward(x), net(torch.from_numpy(x)).detach().numpy(), rtol=1e-12, atol=1e-12)
    back = export_torch(model)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(back[k], v.numpy())
    assert model["classifier.0"].params["w"].shape == (64, 3)  # (in, out): transposed from torch's (3, 64)


def test_padded_max_pool_matches_torch_forward_and_backward():
    rng = np.random.default_rng(1)
    for H, W, k, s, p in [(9, 7, 3, 2, 1), (8, 8, 3, 2, 1), (5, 6, 2, 2, 1), (7, 7, 3, 1, 1)]:
        x = rng.standard_normal((2, 3, H, W))
        m = Sequential([MaxPool2D(k, s, p)], input_shape=(3, H, W), dtype=np.float64)
        y = m.forward(x, training=True)
        dy = rng.standard_normal(y.shape)
        xt = torch.tensor(x, requires_grad=True)
        yt = torch.nn.functional.max_pool2d(xt, k, s, p)
        yt.backward(torch.from_numpy(dy))
        np.testing.assert_array_equal(y, yt.detach().numpy())
        np.testing.assert_array_equal(m.backward(dy, input_grad=True), xt.grad.numpy())
    with pytest.raises(ValueError, match=r"'padding' must be at most size // 2 = 1"):
        MaxPool2D(3, 2, 2)


def test_pth_safetensors_and_mapping_load_the_same(net, tmp_path):
    from safetensors.numpy import save_file

    sd = {k: v.float() for k, v in net.state_dict().items()}
    torch.save(sd, tmp_path / "w.pth")
    save_file({k: v.numpy() for k, v in sd.items()}, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": sd}, tmp_path / "wrapped.pt")
    loaded = []
    for src in (tmp_path / "w.pth", tmp_path / "w.safetensors", tmp_path / "wrapped.pt", sd):
        model = tiny_nptl()
        import_torch(model, src)
        loaded.append({p.name: p.value.copy() for p in model.parameters()})
    for other in loaded[1:]:
        for k in loaded[0]:
            np.testing.assert_array_equal(loaded[0][k], other[k])
    np.testing.assert_array_equal(loaded[0]["features.0.w"], sd["features.0.weight"].numpy())


def test_skip_head_keeps_the_models_head(net):
    model = tiny_nptl(classes=5)
    head = model["classifier.0"].params["w"].copy()
    with pytest.raises(WeightsError) as exc:
        import_torch(model, net.state_dict())
    assert "classifier.0.weight: file (3, 64) vs model (5, 64) (torch layout (out, in))" in str(exc.value)
    assert import_torch(model, net.state_dict(), skip_head=True) == ["features.0.weight", "features.0.bias"]
    np.testing.assert_array_equal(model["classifier.0"].params["w"], head)
    # a base without a head takes a full state dict only with skip_head
    base = Sequential([Sequential([Conv2D(4, 3, padding=1, name="0")], name="features")], input_shape=(2, 8, 8))
    with pytest.raises(WeightsError, match=r"(?s)unexpected in the file \(2\):\n    classifier.0.weight.*only the head "
                                           r"differs: pass skip_head=True / --skip-head"):
        import_torch(base, net.state_dict())
    import_torch(base, net.state_dict(), skip_head=True)


def _snapshot(model):
    return {p.name: p.value.copy() for p in model.parameters()}


def _unchanged(model, snap):
    return all(np.array_equal(p.value, snap[p.name]) for p in model.parameters())


def test_every_mismatch_in_one_error_and_nothing_changed(net):
    model = tiny_nptl()
    snap = _snapshot(model)
    sd = {k: v.numpy() for k, v in net.state_dict().items()}
    sd["features.0.weight"] = sd["features.0.weight"][:2]                # mis-shaped
    del sd["features.0.bias"]                                            # missing
    sd["features.9.weight"] = np.zeros(3, np.float32)                    # unexpected
    with pytest.raises(WeightsError) as exc:
        import_torch(model, sd)
    msg = str(exc.value)
    assert "1 missing, 1 unexpected, 1 mis-shaped" in msg and "nothing was changed" in msg
    assert "missing from the file (1):\n    features.0.bias" in msg
    assert "unexpected in the file (1):\n    features.9.weight" in msg
    assert "mis-shaped (1):\n    features.0.weight: file (2, 2, 3, 3) vs model (4, 2, 3, 3)" in msg
    assert _unchanged(model, snap)


def test_state_dict_of_another_architecture(net):
    other = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Linear(3, 3))
    model = tiny_nptl()
    snap = _snapshot(model)
    with pytest.raises(WeightsError, match=r"(?s)weights <mapping>: .*4 missing, 4 unexpected.*"
                                           r"unexpected in the file \(4\):\n    0.weight.*another architecture"):
        import_torch(model, other.state_dict())
    assert _unchanged(model, snap)


def test_bad_files(net, tmp_path):
    model = tiny_nptl()
    snap = _snapshot(model)
    torch.save(net.state_dict(), tmp_path / "w.pth")
    data = (tmp_path / "w.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    torch.save(net, tmp_path / "module.pth")                 # a pickled nn.Module, not a state dict
    torch.save({"features.0.weight": "a string"}, tmp_path / "strings.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    (tmp_path / "cut.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    (tmp_path / "w.h5").write_bytes(b"x")
    cases = [
        ("cut.pth", r"'.*cut.pth': not a readable PyTorch file \(truncated, corrupt or another format\)"),
        ("module.pth", r"'.*module.pth': holds pickled objects other than tensors, which are never loaded"),
        ("strings.pth", r"(?s)'.*strings.pth': holds entries that are not tensors.*features.0.weight: a str"),
        ("list.pth", r"'.*list.pth': holds a list, expected a state dict"),
        ("cut.safetensors", r"'.*cut.safetensors': not a readable safetensors file"),
        ("w.h5", r"unknown file type '.h5': expected .pth, .pt or .safetensors"),
        ("nope.pth", r"'.*nope.pth': no such file"),
    ]
    for name, pattern in cases:
        with pytest.raises(WeightsError, match=pattern):
            import_torch(model, tmp_path / name)
    assert _unchanged(model, snap)
    assert issubclass(WeightsError, ValueError)


def test_input_too_small_names_the_layer():
    with pytest.raises(ValueError, match=r"model 'tiny': input \(2, 2, 2\) does not fit layer 'features.3' "
                                         r"\(MaxPool2D\), which would receive \(4, 1, 1\): .*pool size 2 is larger"):
        Sequential([Sequential([Conv2D(4, 3, padding=1, name="0"), MaxPool2D(3, 2, 1, name="2"),
                                MaxPool2D(2, name="3")], name="features")], input_shape=(2, 2, 2), name="tiny")
