"""ResNet18 and VGG16 against PyTorch: the same architecture (parameter counts, state dict keys
and shapes), the same eval logits with imported random weights and BatchNorm statistics, and the
same training-mode forward, running statistics and parameter gradients (float64).

The torch networks are written in plain ``torch.nn`` in :mod:`tests.torch_reference`, following
torchvision's definitions.  Kept small for CI: 64×64 inputs, batch 2; one image at 224×224.
"""
import os

import numpy as np
import pytest

if os.environ.get("NPTL_REQUIRE_TORCH") == "1":
    import torch  # noqa: F401  -- CI requires torch: an ImportError here must fail the run
else:
    torch = pytest.importorskip(
        "torch", reason="torch not installed (pip install nptl[torch]); set NPTL_REQUIRE_TORCH=1 to make this fatal"
    )

from nptl.graph import Sequential  # noqa: E402
from nptl.models import basic_block, resnet18, vgg16  # noqa: E402
from nptl.torch_weights import import_torch, torch_keys  # noqa: E402
from tests.torch_reference import (RESNET18_PARAMETERS, VGG16_PARAMETERS, BasicBlock, ResNet18,  # noqa: E402
                                   VGG16, randomize, relative_error)


def nptl_shapes(model):
    """torch key → shape in torch's layout, from the nptl model."""
    out = {}
    for key, (path, k, transposed) in torch_keys(model).items():
        layer = model[path]
        arr = {**layer.params, **layer.buffers}[k]
        out[key] = tuple(arr.shape[::-1] if transposed else arr.shape)
    return out


@pytest.fixture(scope="module")
def vgg_pair():
    """VGG16 in torch (random weights) and in nptl (imported), built once: 138M parameters."""
    net = randomize(VGG16(), seed=1).eval()
    model = vgg16(num_classes=1000, input_shape=(3, 64, 64))
    import_torch(model, net.state_dict())
    return net, model


@pytest.fixture(scope="module")
def resnet_pair():
    net = randomize(ResNet18(), seed=0).eval()
    model = resnet18(num_classes=1000, input_shape=(3, 64, 64))
    import_torch(model, net.state_dict())
    return net, model


def test_reference_networks_have_the_published_parameter_counts():
    with torch.device("meta"):
        assert sum(p.numel() for p in ResNet18().parameters()) == RESNET18_PARAMETERS
        assert sum(p.numel() for p in VGG16().parameters()) == VGG16_PARAMETERS


def test_resnet18_architecture_and_keys_are_torchvisions(resnet_pair):
    net, model = resnet_pair
    with torch.device("meta"):
        reference = {k: tuple(v.shape) for k, v in ResNet18().state_dict().items()}
    assert nptl_shapes(model) == reference and list(nptl_shapes(model)) == list(reference)
    assert model.parameter_count() == RESNET18_PARAMETERS
    assert "layer3.1.bn2.running_var" in reference and "layer2.0.downsample.0.weight" in reference
    assert model["layer3.1.bn2"].buffers["running_var"].shape == (256,)
    text = model.summary(print_fn=None)
    assert f"Total params: {RESNET18_PARAMETERS:,}" in text and "layer4.0.downsample.1 (BatchNorm2D)" in text


def test_vgg16_architecture_and_keys_are_torchvisions(vgg_pair):
    net, model = vgg_pair
    with torch.device("meta"):
        reference = {k: tuple(v.shape) for k, v in VGG16().state_dict().items()}
    assert list(nptl_shapes(model).items()) == list(reference.items())
    assert model.parameter_count() == VGG16_PARAMETERS
    assert vgg16(include_top=False, input_shape=(3, 64, 64)).output_shape() == (512, 2, 2)
    assert resnet18(include_top=False, input_shape=(3, 64, 64)).output_shape() == (512,)


@pytest.mark.parametrize("arch", ["resnet18", "vgg16"])
def test_eval_logits_agree_at_64_and_224(arch, request):
    net, model = request.getfixturevalue("resnet_pair" if arch == "resnet18" else "vgg_pair")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    assert relative_error(model.forward(x), expected) <= 1e-4
    # at 224×224: the base (everything below the head) built for that size, sharing the imported
    # arrays, then the same head (a slice of the model: the global / adaptive average pooling
    # gives it the same shape at both sizes), so no second copy of VGG16's 124M head weights
    base = (resnet18 if arch == "resnet18" else vgg16)(include_top=False, input_shape=(3, 224, 224))
    for (_, a), (_, b) in zip(base.leaves(), model.leaves()):
        a.params, a.buffers = b.params, b.buffers
    head = model.slice(len(base.layers))
    x = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    assert relative_error(head.forward(base.forward(x)), expected) <= 1e-4


def compare_training_step(net, model, x):
    """Training-mode forward, running statistics and every gradient, nptl vs torch autograd."""
    net.double().train()
    model.astype(np.float64)
    r = np.random.default_rng(5).standard_normal((len(x),) + model.output_shape())
    xt = torch.tensor(x, requires_grad=True)
    net.zero_grad()
    out = net(xt)
    (out * torch.from_numpy(r)).sum().backward()
    model.zero_grad()
    y = model.forward(x, training=True)
    dx = model.backward(r, input_grad=True)
    assert relative_error(y, out.detach().numpy()) <= 1e-10
    assert relative_error(dx, xt.grad.numpy()) <= 1e-9
    state = net.state_dict()
    grads = {k: p.grad.numpy() for k, p in net.named_parameters()}
    checked = 0
    for key, (path, k, transposed) in torch_keys(model).items():
        layer = model[path]
        if k in layer.params:
            g = layer.grads[k].T if transposed else layer.grads[k]
            assert relative_error(g, grads[key]) <= 1e-9, key
            checked += 1
        else:  # buffers: running statistics updated with torch's momentum convention
            np.testing.assert_allclose(layer.buffers[k], state[key].numpy(), rtol=1e-10, atol=1e-12, err_msg=key)
    assert checked == len(grads)


def test_basic_block_training_forward_and_gradients_agree_with_torch():
    net = randomize(BasicBlock(8, 16, stride=2), seed=3)
    model = Sequential([basic_block(16, 2, 8, name="block")], input_shape=(8, 9, 9), name="m")
    # the nptl block sits under the name "block": map torch's keys onto it
    sd = {f"block.{k}": v for k, v in net.state_dict().items()}
    import_torch(model, sd)
    x = np.random.default_rng(4).standard_normal((2, 8, 9, 9))

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.block = net

        def forward(self, x):
            return self.block(x)

    compare_training_step(Wrapped(), model, x)


def test_resnet18_training_forward_and_gradients_agree_with_torch():
    net = randomize(ResNet18(num_classes=10), seed=6)
    model = resnet18(num_classes=10, input_shape=(3, 64, 64))
    import_torch(model, net.state_dict())
    x = np.random.default_rng(7).standard_normal((2, 3, 64, 64))
    compare_training_step(net, model, x)
