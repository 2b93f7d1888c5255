"""The op registry (`name -> builder(OpDesc) -> nn.Module`) and the DARTS primitives.

Op definitions follow the original DARTS code (quark0/darts, operations.py) layer for layer, so a
network built from a genotype has exactly the parameter count that code reports. Algorithms add their
own ops (MixedOp, NAS-Bench-201 ops) by registering into `OPS`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from archsearch.model.op_registry import (  # noqa: F401 - the registry, re-exported where ops are built
    OP_DOWNSAMPLE,
    OP_PARAMS,
    OPS,
    REGISTERED_OPS,
    OpBuilder,
    OpTable,
    build_op,
    declare_op,
)

if TYPE_CHECKING:
    from archsearch.model.model_desc import OpDesc

# The DARTS search space, in the original code's order (index 0 is `none`).
DARTS_PRIMITIVES = [
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
]


class ReLUConvBN(nn.Sequential):
    def __init__(self, ch_in: int, ch_out: int, kernel: int, stride: int, padding: int, affine: bool) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(ch_in, ch_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(ch_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU, depthwise (dilated) conv, pointwise conv, BN."""

    def __init__(
        self, ch_in: int, ch_out: int, kernel: int, stride: int, padding: int, dilation: int, affine: bool
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(ch_in, ch_in, kernel, stride, padding, dilation=dilation, groups=ch_in, bias=False),
            nn.Conv2d(ch_in, ch_out, 1, bias=False),
            nn.BatchNorm2d(ch_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two DilConv blocks without dilation: the first may stride, the second maps to ch_out."""

    def __init__(self, ch_in: int, ch_out: int, kernel: int, stride: int, padding: int, affine: bool) -> None:
        super().__init__(
            DilConv(ch_in, ch_in, kernel, stride, padding, 1, affine),
            DilConv(ch_in, ch_out, kernel, 1, padding, 1, affine),
        )


class Conv7x1x1x7(nn.Sequential):
    """ReLU, 1x7 conv, 7x1 conv, BN: the original's `conv_7x1_1x7` (AmoebaNet's reduction cell). Each conv
    strides along its long axis only, so stride 2 halves both sides once."""

    def __init__(self, ch_in: int, ch_out: int, stride: int, affine: bool) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(ch_in, ch_out, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
            nn.Conv2d(ch_out, ch_out, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
            nn.BatchNorm2d(ch_out, affine=affine),
        )


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset 1x1 stride-2 convs, concatenated (DARTS' reduce skip)."""

    def __init__(self, ch_in: int, ch_out: int, affine: bool) -> None:
        super().__init__()
        if ch_out % 2:
            raise ValueError(f"factorized reduce needs an even ch_out, got {ch_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(ch_in, ch_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(ch_in, ch_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(ch_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        # Pad odd sizes so both branches produce the same shape (the original assumes even sizes).
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            x = F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


class Zero(nn.Module):
    """The `none` op. A MixedOp skips it; standalone it returns zeros of the strided shape."""

    def __init__(self, ch_out: int, stride: int) -> None:
        super().__init__()
        self.ch_out, self.stride = ch_out, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        s = self.stride
        return x.new_zeros(n, self.ch_out, (h + s - 1) // s, (w + s - 1) // s)


class Identity(nn.Identity):
    """Marks ops that drop path must not touch (as in DARTS, identity edges are never dropped)."""


class StemConv(nn.Sequential):
    """3x3 conv + BN stem of the CIFAR networks."""

    def __init__(self, ch_in: int, ch_out: int, stride: int = 1) -> None:
        super().__init__(nn.Conv2d(ch_in, ch_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(ch_out))


class ImageNetStem(nn.Sequential):
    """The first stem of the original NetworkImageNet (`stem0`): conv3x3 stride 2 to ch_out/2, BN, ReLU,
    conv3x3 stride 2 to ch_out, BN; 224x224 -> 56x56."""

    def __init__(self, ch_in: int, ch_out: int) -> None:
        if ch_out % 2:
            raise ValueError(f"the ImageNet stem needs an even ch_out, got {ch_out}")
        super().__init__(
            nn.Conv2d(ch_in, ch_out // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(ch_out // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(ch_out // 2, ch_out, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(ch_out),
        )


class GlobalAvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def _same_channels(desc: OpDesc) -> int:
    if desc.ch_in != desc.ch_out:
        raise ValueError(f"op {desc.name} needs ch_in == ch_out, got {desc.ch_in} -> {desc.ch_out}")
    return desc.ch_in


def _register_darts_ops() -> None:
    OPS.add("none", lambda d: Zero(d.ch_out, d.stride))
    OPS.add("avg_pool_3x3", lambda d: _pool(d, nn.AvgPool2d(3, d.stride, 1, count_include_pad=False)))
    OPS.add("max_pool_3x3", lambda d: _pool(d, nn.MaxPool2d(3, d.stride, 1)))
    OPS.add(
        "skip_connect",
        lambda d: (
            Identity() if d.stride == 1 and d.ch_in == d.ch_out else FactorizedReduce(d.ch_in, d.ch_out, d.affine)
        ),
    )
    for k in (3, 5):
        OPS.add(f"sep_conv_{k}x{k}", lambda d, k=k: SepConv(d.ch_in, d.ch_out, k, d.stride, k // 2, d.affine))
        OPS.add(f"dil_conv_{k}x{k}", lambda d, k=k: DilConv(d.ch_in, d.ch_out, k, d.stride, k - 1, 2, d.affine))
        OPS.add(f"conv_{k}x{k}", lambda d, k=k: ReLUConvBN(d.ch_in, d.ch_out, k, d.stride, k // 2, d.affine))
    # The rest of the original code's op table: not DARTS search primitives, but NASNet's and AmoebaNet's
    # cells use them, so every genotype of the original genotypes.py compiles.
    OPS.add("sep_conv_7x7", lambda d: SepConv(d.ch_in, d.ch_out, 7, d.stride, 3, d.affine))
    OPS.add("conv_7x1_1x7", lambda d: Conv7x1x1x7(d.ch_in, d.ch_out, d.stride, d.affine))
    OPS.add("relu_conv_bn_1x1", lambda d: ReLUConvBN(d.ch_in, d.ch_out, 1, d.stride, 0, d.affine))
    OPS.add("factorized_reduce", lambda d: FactorizedReduce(d.ch_in, d.ch_out, d.affine))
    OPS.add("stem_conv3x3", lambda d: StemConv(d.ch_in, d.ch_out, d.stride))
    OPS.add("stem_imagenet", lambda d: ImageNetStem(d.ch_in, d.ch_out))
    OPS.add("global_avg_pool", lambda d: (_same_channels(d), GlobalAvgPool())[1])
    OPS.add("linear", lambda d: nn.Linear(d.ch_in, d.ch_out))
    for name in OPS.names():  # no params, output smaller by the stride (the new 7x7 ops included)
        declare_op(name)
    declare_op("skip_connect", downsample=lambda d: 1 if d.stride == 1 and d.ch_in == d.ch_out else 2)
    declare_op("factorized_reduce", downsample=lambda d: 2)
    declare_op("stem_imagenet", downsample=lambda d: 4)  # two stride-2 convs, whatever its stride field says


def _pool(desc: OpDesc, pool: nn.Module) -> nn.Module:
    _same_channels(desc)
    return pool


_register_darts_ops()


class AuxTower(nn.Module):
    """DARTS' auxiliary head for CIFAR (the original's AuxiliaryHeadCIFAR: ReLU, 5x5 average pooling with
    stride 3, which takes its 8x8 input to 2x2, conv1x1 to 128, BN, ReLU, conv2x2 to 768, BN, ReLU, linear;
    adaptive pooling to 2x2 for smaller maps). The ReLU stays module 0 of `features`, so weight files keep
    their keys, but runs before the pooling, as in the original (the two do not commute)."""

    def __init__(self, ch_in: int, n_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),  # its input is also the next cell's input
            nn.Conv2d(ch_in, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features[0](x)  # the ReLU
        if x.shape[-1] >= 5 and x.shape[-2] >= 5:
            # image size 8x8 -> 2x2, exactly as the original
            x = F.avg_pool2d(x, 5, stride=3, padding=0, count_include_pad=False)
        else:
            x = F.adaptive_avg_pool2d(x, 2)
        return self.classifier(torch.flatten(self.features[1:](x), 1))


class AuxTowerImageNet(nn.Module):
    """DARTS' auxiliary head for ImageNet (the original's AuxiliaryHeadImageNet): ReLU, 5x5 average pooling
    with stride 2, conv1x1 to 128, BN, ReLU, conv2x2 to 768, ReLU, linear. The original attaches it after
    cell 2n/3, the second reduction cell, whose map is 7x7 at 224x224 (its docstring's "14x14" is not what
    its code does), so the pooling gives 2x2 and the 2x2 conv 1x1. The 768-channel conv has no BatchNorm, as
    in the paper's experiments (the original code's note). Maps the pooling would not bring to 2x2 are
    pooled to 2x2 adaptively."""

    def __init__(self, ch_in: int, n_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(ch_in, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)  # not in place: its input is also the next cell's input
        h, w = x.shape[-2:]
        if h >= 5 and w >= 5 and ((h - 5) // 2 + 1, (w - 5) // 2 + 1) == (2, 2):
            x = F.avg_pool2d(x, 5, stride=2, padding=0, count_include_pad=False)
        else:
            x = F.adaptive_avg_pool2d(x, 2)
        return self.classifier(torch.flatten(self.features(x), 1))


# the auxiliary head of each network layout (AuxTowerDesc.kind)
AUX_TOWERS: dict[str, type[nn.Module]] = {"cifar": AuxTower, "imagenet": AuxTowerImageNet}
