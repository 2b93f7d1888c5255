"""The NAS-Bench-201 ops, registered into the shared op registry `OPS`.

Layer for layer as the benchmark's inference network (xautodl `cell_operations.py`, `TinyNetwork`), so a
network built here has exactly the parameter count the benchmark reports:

- `nor_conv_1x1`, `nor_conv_3x3`: ReLU-conv-BN; identical to the DARTS `ReLUConvBN` (the benchmark's
  inference cells use affine BN that tracks running stats, the `ReLUConvBN` default).
- `none`, `skip_connect`, `avg_pool_3x3`: the DARTS ops already in `OPS` are identical for stride 1 and
  equal channels, which is all a NAS-Bench-201 cell uses.
- `nb201_resblock`: the ResNet basic block between stages (ReLU-conv3x3-BN twice; the shortcut of the
  stride-2 block is avg-pool 2x2 then a 1x1 conv, without BN).
- `bn_relu_global_avg_pool`: the network's last BN-ReLU followed by global average pooling.

Importing this module registers the ops; `archsearch.spaces.nasbench201` imports it.
"""

from __future__ import annotations

import torch
from torch import nn

from archsearch.model.model_desc import OpDesc
from archsearch.model.ops import OPS, ReLUConvBN, declare_op


class ResNetBasicBlock(nn.Module):
    """NAS-Bench-201's residual block: two ReLU-conv3x3-BN on the main path plus a shortcut."""

    def __init__(self, ch_in: int, ch_out: int, stride: int, affine: bool = True) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"nb201_resblock: stride must be 1 or 2, got {stride}")
        self.conv_a = ReLUConvBN(ch_in, ch_out, 3, stride, 1, affine)
        self.conv_b = ReLUConvBN(ch_out, ch_out, 3, 1, 1, affine)
        self.downsample: nn.Module | None
        if stride == 2:
            # no BN on this shortcut in the benchmark: it costs ch_in * ch_out weights and nothing else
            self.downsample = nn.Sequential(
                nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
                nn.Conv2d(ch_in, ch_out, kernel_size=1, bias=False),
            )
        elif ch_in != ch_out:
            self.downsample = ReLUConvBN(ch_in, ch_out, 1, 1, 0, affine)
        else:
            self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        return residual + self.conv_b(self.conv_a(x))


class LastActGlobalPool(nn.Sequential):
    """The benchmark's `lastact` (BN, ReLU) and global average pooling, flattened to (batch, channels).

    The class name must not contain "ReLU": NASWOT hooks every module whose class name does (see
    `archsearch.strategies.naswot.proxies.relu_by_class_name`), and the benchmark's `lastact` is a plain
    nn.Sequential, so only the ReLU inside counts.
    """

    def __init__(self, channels: int) -> None:
        # in-place ReLU as in the benchmark: its input (the BN output) is used nowhere else
        super().__init__(nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(1))


def _nor_conv(kernel: int):
    def build(d: OpDesc) -> nn.Module:
        return ReLUConvBN(d.ch_in, d.ch_out, kernel, d.stride, kernel // 2, d.affine)

    return build


def _build_resblock(d: OpDesc) -> nn.Module:
    return ResNetBasicBlock(d.ch_in, d.ch_out, d.stride, d.affine)


def _build_last_pool(d: OpDesc) -> nn.Module:
    if d.ch_in != d.ch_out:
        raise ValueError(f"op {d.name} needs ch_in == ch_out, got {d.ch_in} -> {d.ch_out}")
    return LastActGlobalPool(d.ch_in)


# Module-level builders, so a second import of this module (e.g. importlib.reload in a notebook) would
# still be caught by the registry's duplicate check rather than silently replacing the ops.
OPS.add("nor_conv_1x1", _nor_conv(1))
OPS.add("nor_conv_3x3", _nor_conv(3))
OPS.add("nb201_resblock", _build_resblock)
OPS.add("bn_relu_global_avg_pool", _build_last_pool)
for _name in ("nor_conv_1x1", "nor_conv_3x3", "nb201_resblock", "bn_relu_global_avg_pool"):
    declare_op(_name)  # no params; each downsamples by its stride
