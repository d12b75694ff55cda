"""Ready-made architectures."""
from __future__ import annotations

import numpy as np

from .graph import Residual, Sequential
from .layers import (AdaptiveAvgPool2D, BatchNorm2D, Conv2D, ConvTranspose2D, Dense, Dropout, Flatten,
                     GlobalAvgPool2D, MaxPool2D, ReLU, Sigmoid, Upsample2D)

#: the layers of the convolutional base of :func:`seed_cnn` (frozen in transfer learning)
SEED_CNN_BASE = ("conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3", "flatten")
#: the encoder of :func:`seed_autoencoder`: the seed CNN's base without the Flatten, same names,
#: so ``nptl.io.load_weights(seed_cnn(...), "ae.npz", layers=SEED_CNN_ENCODER)`` puts a
#: pretrained encoder under a classifier head
SEED_CNN_ENCODER = SEED_CNN_BASE[:-1]


def _seed_cnn_encoder():
    return [
        Conv2D(32, 3, name="conv1"), ReLU(name="relu1"), MaxPool2D(2, name="pool1"),
        Conv2D(64, 3, name="conv2"), ReLU(name="relu2"), MaxPool2D(2, name="pool2"),
        Conv2D(64, 3, name="conv3"), ReLU(name="relu3"),
    ]


def seed_cnn(input_shape=(1, 28, 28), num_classes: int = 10, seed: int = 0, dtype=np.float32,
             hidden: int = 64) -> Sequential:
    """The seed documents' CNN: Conv32-ReLU-MaxPool2-Conv64-ReLU-MaxPool2-Conv64-ReLU-Flatten-
    Dense64-ReLU-Dense(num_classes), all 3×3 valid convolutions.  Outputs logits.

    The base is ``conv1 … flatten`` (:data:`SEED_CNN_BASE`), the head ``dense1, relu4, dense2``:
    ``model.freeze(up_to="flatten")`` freezes the base.
    """
    layers = _seed_cnn_encoder() + [
        Flatten(name="flatten"), Dense(hidden, name="dense1"), ReLU(name="relu4"), Dense(num_classes, name="dense2"),
    ]
    return Sequential(layers, input_shape=input_shape, seed=seed, dtype=dtype, name="seed_cnn")


def mirror_decoder(encoder, input_shape, output: str = "sigmoid") -> list:
    """Decoder layers that map the output of ``encoder`` (Conv2D / MaxPool2D / activation layers,
    built or not) back to ``input_shape``, mirroring it layer by layer, last layer first:

    - ``Conv2D(F, k, s, P)`` named ``convK`` reading C channels of size H → ``deconvK`` =
      ``ConvTranspose2D(C, k, s, P, output_padding=(H + 2P − k) mod s)`` (which inverts its
      shape), then ReLU (``dereluK``), or the output activation after the first convolution;
    - ``MaxPool2D(size, s)`` named ``poolK`` → ``unpoolK``: nearest ``Upsample2D(s)`` when
      ``size = s`` divides the input exactly, else a learned upsampling
      ``ConvTranspose2D(C, size, s, output_padding=r)`` that also restores the ``r``
      rows/columns the pooling dropped (nearest upsampling can only multiply the size);
    - activations are not mirrored (each transposed convolution brings its own).

    ``output``: ``"sigmoid"`` (images in [0, 1], for the MSE loss) or ``"logits"`` (no output
    activation, for the binary cross-entropy on logits).  Raises ValueError naming the encoder
    layer that cannot be mirrored (its H and W need different output paddings).
    """
    if output not in ("sigmoid", "logits"):
        raise ValueError(f"mirror_decoder: 'output' must be 'sigmoid' or 'logits', got {output!r}")
    shapes, shape = [], tuple(int(s) for s in input_shape)
    for layer in encoder:                        # the input shape of every encoder layer
        shapes.append(shape)
        shape = layer.output_shape(shape)
    convs = [l for l in encoder if isinstance(l, Conv2D)]
    decoder = []
    for layer, (C, H, W) in reversed(list(zip(encoder, shapes))):
        out_shape = layer.output_shape((C, H, W))
        suffix = layer.name[len(layer.kind):] if layer.name.startswith(layer.kind) else f"_{layer.name}"
        if isinstance(layer, Conv2D):
            (KH, KW), s, P = layer.kernel_size, layer.stride, layer.padding
            rest = {(H + 2 * P - KH) % s, (W + 2 * P - KW) % s}
            if len(rest) > 1:
                raise ValueError(
                    f"mirror_decoder: cannot mirror layer '{layer.name}' (Conv2D, stride {s}): it maps {H}x{W} "
                    f"to {out_shape[1]}x{out_shape[2]} dropping {sorted(rest)} rows/columns, and a "
                    f"transposed convolution's output_padding is the same on both axes")
            decoder.append(ConvTranspose2D(C, (KH, KW), s, P, rest.pop(), name=f"deconv{suffix}"))
            if layer is not convs[0]:
                decoder.append(ReLU(name=f"derelu{suffix}"))
            elif output == "sigmoid":
                decoder.append(Sigmoid(name="sigmoid"))
        elif isinstance(layer, MaxPool2D):
            size, s = layer.size, layer.stride
            _, Ho, Wo = out_shape
            if size == s and Ho * s == H and Wo * s == W:
                decoder.append(Upsample2D(s, name=f"unpool{suffix}"))
                continue
            rest = {(H - size) % s, (W - size) % s}
            if len(rest) > 1:
                raise ValueError(
                    f"mirror_decoder: cannot mirror layer '{layer.name}' (MaxPool2D {size}, stride {s}): it maps "
                    f"{H}x{W} to {Ho}x{Wo} dropping {sorted(rest)} rows/columns, and a transposed "
                    f"convolution's output_padding is the same on both axes; crop or pad the input so that "
                    f"both sides drop the same number")
            decoder.append(ConvTranspose2D(C, size, s, 0, rest.pop(), name=f"unpool{suffix}"))
        elif not isinstance(layer, (ReLU, Sigmoid)):
            raise ValueError(f"mirror_decoder: don't know how to mirror layer '{layer.name}' "
                             f"({type(layer).__name__}); expected Conv2D, MaxPool2D or an activation")
    return decoder


def autoencoder(encoder, decoder, input_shape, seed: int = 0, dtype=np.float32,
                name: str = "autoencoder") -> Sequential:
    """``Sequential(encoder + decoder)`` whose output must have the input's shape: otherwise
    ValueError naming the first decoder layer whose output cannot lead back to it (the shapes
    each decoder layer produced are listed)."""
    shape = tuple(int(s) for s in input_shape)
    for layer in encoder:
        shape = layer.output_shape(shape)
    trail = []
    for layer in decoder:
        shape = layer.output_shape(shape)
        trail.append(f"{layer.name} -> {shape}")
    if shape != tuple(input_shape):
        raise ValueError(
            f"autoencoder '{name}': the decoder ends at {shape} but the input is {tuple(input_shape)} "
            f"(decoder shapes: {'; '.join(trail)}); the last layer '{decoder[-1].name if decoder else '-'}' "
            f"must produce the input shape")
    return Sequential(list(encoder) + list(decoder), input_shape=input_shape, seed=seed, dtype=dtype, name=name)


def seed_autoencoder(input_shape=(1, 28, 28), seed: int = 0, dtype=np.float32, output: str = "sigmoid") -> Sequential:
    """A convolutional autoencoder whose encoder is :func:`seed_cnn`'s convolutional base
    (``conv1 … relu3``, :data:`SEED_CNN_ENCODER`, the same names and shapes, so encoder weights
    load into ``seed_cnn`` by name) and whose decoder mirrors it back to ``input_shape``
    (:func:`mirror_decoder`).  For 1×28×28 images::

        conv1 26² · pool1 13² · conv2 11² · pool2 5² · conv3 3²        (encoder, 64×3×3 code)
        deconv3 5² · unpool2 11² (learned, 2×2 stride 2, output_padding 1) · deconv2 13² ·
        unpool1 26² (nearest ×2) · deconv1 28² · sigmoid

    ``output="sigmoid"`` pairs with ``loss="mse"``, ``output="logits"`` with
    ``loss="binary_cross_entropy"`` in :func:`nptl.fit`.  Input sizes the decoder cannot mirror
    raise a ValueError naming the encoder layer.
    """
    encoder = _seed_cnn_encoder()
    decoder = mirror_decoder(encoder, input_shape, output)
    return autoencoder(encoder, decoder, input_shape, seed=seed, dtype=dtype, name="seed_autoencoder")


# -- torchvision architectures -------------------------------------------------------------------
#: ImageNet channel statistics the torchvision weights were trained with (RGB, images in [0, 1])
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: VGG16 (configuration "D"): output channels of each 3×3 conv, "M" a 2×2 max pool
VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg16(num_classes: int = 1000, include_top: bool = True, input_shape=(3, 224, 224), seed: int = 0,
          dtype=np.float32, dropout: float = 0.5) -> Sequential:
    """VGG16 as torchvision builds it, with torchvision's layer names (so its state dict keys:
    ``features.0.weight`` … ``classifier.6.bias``; see :mod:`nptl.torch_weights`).

    ``features``: thirteen 3×3 convolutions (padding 1, bias) each followed by ReLU, in five
    stages closed by 2×2 max pools (:data:`VGG16_CONFIG`); indices 0–30 as in torchvision.
    With ``include_top``: ``avgpool`` (adaptive average pooling to 7×7), ``flatten`` and
    ``classifier`` = Dense 4096-ReLU-Dropout-Dense 4096-ReLU-Dropout-Dense ``num_classes``
    (indices 0–6).  138,357,544 parameters with 1000 classes.  Without the top the model ends
    at ``features`` (512 × H/32 × W/32), the base for a new head (Keras' ``include_top=False``).
    Inputs: RGB normalised with :data:`IMAGENET_MEAN`/:data:`IMAGENET_STD` for ImageNet weights;
    at least 32×32 (five 2×2 max pools; a smaller image is refused naming the pool that gets 1×1).
    """
    layers, i = [], 0
    for v in VGG16_CONFIG:
        if v == "M":
            layers.append(MaxPool2D(2, name=str(i)))
            i += 1
        else:
            layers += [Conv2D(v, 3, padding=1, kernel_init="he_normal", name=str(i)), ReLU(name=str(i + 1))]
            i += 2
    top = [Sequential(layers, name="features")]
    if include_top:
        top += [AdaptiveAvgPool2D((7, 7), name="avgpool"), Flatten(name="flatten"),
                Sequential([Dense(4096, name="0"), ReLU(name="1"), Dropout(dropout, name="2"),
                            Dense(4096, name="3"), ReLU(name="4"), Dropout(dropout, name="5"),
                            Dense(num_classes, name="6")], name="classifier")]
    return Sequential(top, input_shape=input_shape, seed=seed, dtype=dtype, name="vgg16")


def basic_block(filters: int, stride: int = 1, in_channels: int | None = None, name: str | None = None) -> Residual:
    """ResNet's basic block, named as torchvision's ``BasicBlock``::

        conv1 (3×3, stride, no bias) → bn1 → relu → conv2 (3×3, no bias) → bn2,   + shortcut, relu

    The shortcut is the identity, or — when the block changes the shape (``stride`` ≠ 1 or
    ``in_channels`` ≠ ``filters``) — ``downsample`` = 1×1 conv with that stride (no bias) + BatchNorm.
    """
    main = [Conv2D(filters, 3, stride=stride, padding=1, use_bias=False, kernel_init="he_normal", name="conv1"),
            BatchNorm2D(name="bn1"), ReLU(name="relu"),
            Conv2D(filters, 3, padding=1, use_bias=False, kernel_init="he_normal", name="conv2"),
            BatchNorm2D(name="bn2")]
    shortcut = None
    if stride != 1 or (in_channels is not None and in_channels != filters):
        shortcut = Sequential([Conv2D(filters, 1, stride=stride, use_bias=False, kernel_init="he_normal", name="0"),
                               BatchNorm2D(name="1")], name="downsample")
    return Residual(main, shortcut, name=name)


def resnet18(num_classes: int = 1000, include_top: bool = True, input_shape=(3, 224, 224), seed: int = 0,
             dtype=np.float32) -> Sequential:
    """ResNet-18 as torchvision builds it, with torchvision's layer names (``conv1.weight``,
    ``layer3.1.bn2.running_var``, ``fc.weight``; see :mod:`nptl.torch_weights`).

    Stem: ``conv1`` (7×7, stride 2, padding 3, no bias) → ``bn1`` → ``relu`` → ``maxpool``
    (3×3, stride 2, padding 1); ``layer1``…``layer4``: two :func:`basic_block` each, with
    64, 128, 256, 512 filters, the first block of layers 2–4 halving the map (stride 2 and a
    projection shortcut); ``avgpool`` (global average pooling); with ``include_top`` the
    classifier ``fc`` (Dense ``num_classes``).  11,689,512 parameters with 1000 classes.
    Without the top the model ends at ``avgpool`` (512 features), the base for a new head.
    Inputs: RGB normalised with :data:`IMAGENET_MEAN`/:data:`IMAGENET_STD` for ImageNet weights;
    any size (the padded convolutions shrink small maps to 1×1 rather than fail; the weights were
    trained at 224×224).
    """
    layers = [Conv2D(64, 7, stride=2, padding=3, use_bias=False, kernel_init="he_normal", name="conv1"),
              BatchNorm2D(name="bn1"), ReLU(name="relu"), MaxPool2D(3, stride=2, padding=1, name="maxpool")]
    channels = 64
    for stage, filters in enumerate((64, 128, 256, 512), 1):
        stride = 1 if stage == 1 else 2
        layers.append(Sequential([basic_block(filters, stride, channels, name="0"),
                                  basic_block(filters, 1, filters, name="1")], name=f"layer{stage}"))
        channels = filters
    layers.append(GlobalAvgPool2D(name="avgpool"))
    if include_top:
        layers.append(Dense(num_classes, name="fc"))
    return Sequential(layers, input_shape=input_shape, seed=seed, dtype=dtype, name="resnet18")


#: the pretrained bases ``nptl transfer --base`` knows: builder and the head's top-level names
BASES = {"resnet18": (resnet18, ("fc",)), "vgg16": (vgg16, ("classifier",))}
