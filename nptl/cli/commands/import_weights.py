"""``nptl import-weights``: a PyTorch state dict (torchvision ResNet18 / VGG16) as an nptl checkpoint."""
from __future__ import annotations

from ..common import UsageError, image_size, input_file, log, output_file

ORDER = 55

#: a key that only each architecture's state dict has
_SIGNATURES = {"resnet18": "layer4.1.bn2.running_var", "vgg16": "features.28.weight"}


def add_parser(subparsers):
    p = subparsers.add_parser(
        "import-weights", help="convert a PyTorch ResNet18/VGG16 state dict (.pth, .pt, .safetensors) to .npz",
        description="Read a torchvision-style state dict (torch.save(model.state_dict(), 'x.pth'), or a\n"
                    ".safetensors file, which needs no torch) into nptl's ResNet18 or VGG16 and save it as an\n"
                    "nptl checkpoint.  Every missing, unexpected or mis-shaped key is listed; nothing is\n"
                    "written unless all fit.  Use the result with: nptl transfer --base ARCH --weights OUT.npz")
    p.add_argument("weights", metavar="WEIGHTS", help="a .pth/.pt (read with torch.load(weights_only=True)) "
                                                      "or .safetensors file")
    p.add_argument("-o", "--output", required=True, metavar="OUT.npz", help="the nptl checkpoint to write")
    p.add_argument("--arch", choices=("resnet18", "vgg16"), default=None,
                   help="architecture of the state dict (default: recognised from its keys)")
    p.add_argument("--skip-head", action="store_true",
                   help="drop the classification head (fc.* / classifier.*): the checkpoint holds the base "
                        "only (include_top=False)")
    p.add_argument("--image-size", type=image_size, default=(224, 224), metavar="H[,W]",
                   help="input size the checkpoint is built for (weights fit any size of at least 32)")
    return p


def run(args) -> int:
    from ... import io
    from ...models import BASES
    from ...torch_weights import read_state_dict

    source = input_file(args.weights, "WEIGHTS")
    target = output_file(args.output, "-o", suffix=".npz")
    where, arrays = read_state_dict(source)
    arch = args.arch
    if arch is None:
        found = [a for a, key in _SIGNATURES.items() if key in arrays]
        if len(found) != 1:
            raise UsageError(f"{args.weights}: cannot tell the architecture from its keys (neither ResNet18's "
                             f"'{_SIGNATURES['resnet18']}' nor VGG16's '{_SIGNATURES['vgg16']}'); pass --arch")
        arch = found[0]
    builder, head = BASES[arch]
    head_key = {"resnet18": "fc.weight", "vgg16": "classifier.6.weight"}[arch]
    classes = 1000 if args.skip_head or head_key not in arrays else int(arrays[head_key].shape[0])
    model = builder(num_classes=classes, include_top=not args.skip_head, input_shape=(3,) + tuple(args.image_size))
    keys = io.import_torch(model, arrays, skip_head=args.skip_head, source_name=str(source))
    written = io.save(model, target, extra={"source": str(source), "arch": arch, "include_top": not args.skip_head})
    log(f"import-weights: {len(keys)} tensors of {arch} ({model.parameter_count():,} parameters"
        f"{'' if args.skip_head else f', {classes} classes'}) from {source}")
    print(f"saved {written}")
    return 0
