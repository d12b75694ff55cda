"""ResNet18 and VGG16 in plain ``torch.nn``, following torchvision's published definitions
(``torchvision/models/resnet.py`` and ``vgg.py``) module for module, so that their state dict
keys are torchvision's.  torchvision itself is not used: its wheel does not import next to the
CPU torch used here.  Used by the equivalence tests, the CLI test and the benchmark peer.

``python -m tests.torch_reference`` prints the equivalence figures the README quotes (the
tests check the same quantities against their tolerances)."""
import numpy as np
import torch
from torch import nn

RESNET18_PARAMETERS = 11_689_512   # published counts (torchvision, 1000 classes)
VGG16_PARAMETERS = 138_357_544


class BasicBlock(nn.Module):
    def __init__(self, in_channels, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_channels != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet18(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = 64
        for stage, planes in enumerate((64, 128, 256, 512), 1):
            stride = 1 if stage == 1 else 2
            setattr(self, f"layer{stage}", nn.Sequential(BasicBlock(channels, planes, stride), BasicBlock(planes, planes)))
            channels = planes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class VGG16(nn.Module):
    CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")

    def __init__(self, num_classes=1000):
        super().__init__()
        layers, channels = [], 3
        for v in self.CONFIG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, stride=2))
            else:
                layers += [nn.Conv2d(channels, v, 3, padding=1), nn.ReLU(inplace=True)]
                channels = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def randomize(net, seed=0):
    """Random weights and random BatchNorm running statistics (in place), scaled so that the
    activations stay O(1) through the whole network; returns ``net``."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.num_batches_tracked.fill_(7)
    return net


def state_dict_numpy(net):
    """The state dict as NumPy arrays (sharing memory with the tensors)."""
    return {k: v.detach().numpy() for k, v in net.state_dict().items()}


def relative_error(a, b):
    """Largest difference relative to the largest magnitude of the reference ``b``."""
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))) / np.max(np.abs(b)))


def report():
    from nptl.models import resnet18, vgg16
    from nptl.torch_weights import import_torch, torch_keys

    rng = np.random.default_rng(2)
    for name, reference, build in (("resnet18", ResNet18, resnet18), ("vgg16", VGG16, vgg16)):
        net = randomize(reference(), seed=0).eval()
        model = build(input_shape=(3, 64, 64))
        import_torch(model, net.state_dict())
        x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
        with torch.no_grad():
            expected = net(torch.from_numpy(x)).numpy()
        print(f"{name}: eval logits, float32, batch 2 at 64x64: {relative_error(model.forward(x), expected):.1e}")
        base = build(include_top=False, input_shape=(3, 224, 224))
        for (_, a), (_, b) in zip(base.leaves(), model.leaves()):
            a.params, a.buffers = b.params, b.buffers
        x = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
        with torch.no_grad():
            expected = net(torch.from_numpy(x)).numpy()
        got = model.slice(len(base.layers)).forward(base.forward(x))
        print(f"{name}: eval logits, float32, 1 image at 224x224: {relative_error(got, expected):.1e}")
        del net, model, base
    net = randomize(ResNet18(num_classes=10), seed=6).double().train()
    model = resnet18(num_classes=10, input_shape=(3, 64, 64))
    import_torch(model, net.state_dict())
    model.astype(np.float64)
    x = np.random.default_rng(7).standard_normal((2, 3, 64, 64))
    r = np.random.default_rng(5).standard_normal((2, 10))
    xt = torch.tensor(x, requires_grad=True)
    out = net(xt)
    (out * torch.from_numpy(r)).sum().backward()
    y = model.forward(x, training=True)
    dx = model.backward(r, input_grad=True)
    print(f"resnet18: training-mode logits / dx, float64: {relative_error(y, out.detach().numpy()):.1e} / "
          f"{relative_error(dx, xt.grad.numpy()):.1e}")
    grads, state = {k: p.grad.numpy() for k, p in net.named_parameters()}, net.state_dict()
    worst = max((relative_error(model[p].grads[k].T if t else model[p].grads[k], grads[key]), key)
                for key, (p, k, t) in torch_keys(model).items() if k in model[p].params)
    stats = max((relative_error(model[p].buffers[k], state[key].numpy()), key)
                for key, (p, k, t) in torch_keys(model).items() if k in ("running_mean", "running_var"))
    print(f"resnet18: worst of {len(grads)} parameter gradients, float64: {worst[0]:.1e} ({worst[1]}); "
          f"worst running statistic: {stats[0]:.1e} ({stats[1]})")


if __name__ == "__main__":
    report()
