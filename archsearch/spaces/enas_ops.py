"""ENAS' own ops (Pham et al., 2018): the macro space's general_child branches (conv-BN-ReLU order, a 1x1
conv first) and the micro search child's head, registered in the op registry."""

from __future__ import annotations

from torch import nn

from archsearch.model.model_desc import OpDesc
from archsearch.model.ops import OPS, GlobalAvgPool

MACRO_OPS = (
    "enas_conv_3x3",
    "enas_sep_conv_3x3",
    "enas_conv_5x5",
    "enas_sep_conv_5x5",
    "enas_avg_pool_3x3",
    "enas_max_pool_3x3",
)


class EnasBranch(nn.Sequential):
    """conv1x1-BN-ReLU, then a kxk (separable) conv-BN-ReLU or a 3x3 stride-1 pool."""

    def __init__(self, ch_in: int, ch_out: int, kind: str, kernel: int, affine: bool) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(ch_in, ch_out, 1, bias=False),
            nn.BatchNorm2d(ch_out, affine=affine),
            nn.ReLU(inplace=False),
        ]
        pad = kernel // 2
        if kind == "conv":
            layers += [nn.Conv2d(ch_out, ch_out, kernel, padding=pad, bias=False)]
        elif kind == "sep_conv":
            layers += [
                nn.Conv2d(ch_out, ch_out, kernel, padding=pad, groups=ch_out, bias=False),
                nn.Conv2d(ch_out, ch_out, 1, bias=False),
            ]
        if kind in ("conv", "sep_conv"):
            layers += [nn.BatchNorm2d(ch_out, affine=affine), nn.ReLU(inplace=False)]
        elif kind == "avg_pool":
            layers += [nn.AvgPool2d(3, 1, 1, count_include_pad=False)]  # TF "SAME" pooling ignores padding
        elif kind == "max_pool":
            layers += [nn.MaxPool2d(3, 1, 1)]
        else:
            raise ValueError(f"unknown ENAS branch kind {kind!r}")
        super().__init__(*layers)


def _stride_one(desc: OpDesc) -> OpDesc:
    if desc.stride != 1:
        raise ValueError(f"op {desc.name} only supports stride 1, got {desc.stride}")
    return desc


class EnasFinalConvPool(nn.Sequential):
    """The micro search child's head: ReLU-conv1x1-BN over the last cell's loose ends (micro_child's
    `final_conv`), then ReLU and global average pooling, as its classifier input."""

    def __init__(self, ch_in: int, ch_out: int, affine: bool) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(ch_in, ch_out, 1, bias=False),
            nn.BatchNorm2d(ch_out, affine=affine),
            nn.ReLU(inplace=False),
            GlobalAvgPool(),
        )


def _register_enas_ops() -> None:
    builders = {
        "enas_final_conv_pool": lambda d: EnasFinalConvPool(d.ch_in, d.ch_out, d.affine),
        "enas_batch_norm": lambda d: nn.BatchNorm2d(d.ch_out, affine=d.affine),
        # the concat-combine of the fixed-arc child, split per input block (no BN: it follows the sum)
        "enas_relu_conv_1x1": lambda d: nn.Sequential(
            nn.ReLU(inplace=False), nn.Conv2d(d.ch_in, d.ch_out, 1, bias=False)
        ),
    }
    for name in MACRO_OPS:
        kind, kernel = name[len("enas_") : -len("_3x3")], int(name[-1])
        builders[name] = lambda d, kind=kind, kernel=kernel: EnasBranch(
            _stride_one(d).ch_in, d.ch_out, kind, kernel, d.affine
        )
    for name, builder in builders.items():
        if name not in OPS:  # a module reload must not register twice
            OPS.add(name, builder)


_register_enas_ops()
