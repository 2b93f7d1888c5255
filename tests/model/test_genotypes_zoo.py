"""The named genotypes (DARTS_V1/V2 and the DARTS paper's NASNet-A and AmoebaNet-A baselines) and the ops
only they use (`sep_conv_7x7`, `conv_7x1_1x7`).

The parameter-count check compares archsearch's Model against `RefNetworkCIFAR` below: a small, separate
re-implementation of the original DARTS code's NetworkCIFAR / Cell / op table (quark0/darts, cnn/model.py
and cnn/operations.py), written from that code's structure with plain torch layers and nothing from
archsearch, so a count is never checked against itself. The reference is anchored on the number the
original code prints for DARTS_V2 ("param size = 3.349342MB").
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archsearch.model.builder import ModelDescBuilder
from archsearch.model.genotype import NAMED_GENOTYPES, Genotype, genotype_to_templates, parse_genotype
from archsearch.model.model_desc import OpDesc
from archsearch.model.network import Model, count_params
from archsearch.model.ops import REGISTERED_OPS, build_op

CIFAR = {"channels": 3, "n_classes": 10}
PAPER = {"n_cells": 20, "init_channels": 36, "n_nodes": 4, "stem_multiplier": 3, "n_reductions": 2}
PAPER.update(aux_weight=0.4, affine=True)
NEW_OPS = ("sep_conv_7x7", "conv_7x1_1x7")


# ---- the reference: the original DARTS evaluation network, re-derived -------------------------------------
def ref_relu_conv_bn(c_in: int, c_out: int) -> nn.Module:
    return nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))


def ref_dw_pw(c: int, kernel: int, stride: int, padding: int, dilation: int) -> list[nn.Module]:
    """One ReLU - depthwise - pointwise - BN block, the unit of the original's SepConv and DilConv."""
    return [
        nn.ReLU(),
        nn.Conv2d(c, c, kernel, stride, padding, dilation=dilation, groups=c, bias=False),
        nn.Conv2d(c, c, 1, bias=False),
        nn.BatchNorm2d(c),
    ]


def ref_sep_conv(c: int, kernel: int, stride: int) -> nn.Module:
    return nn.Sequential(*ref_dw_pw(c, kernel, stride, kernel // 2, 1), *ref_dw_pw(c, kernel, 1, kernel // 2, 1))


class RefFactorizedReduce(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.b = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(x)
        return self.bn(torch.cat([self.a(x), self.b(x[:, :, 1:, 1:])], dim=1))


def ref_op(name: str, c: int, stride: int) -> nn.Module:
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride, 1, count_include_pad=False)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride, 1)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else RefFactorizedReduce(c, c)
    if name.startswith("sep_conv_"):
        return ref_sep_conv(c, int(name[-1]), stride)
    if name.startswith("dil_conv_"):
        k = int(name[-1])
        return nn.Sequential(*ref_dw_pw(c, k, stride, k - 1, 2))
    if name == "conv_7x1_1x7":
        return nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(c, c, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
            nn.Conv2d(c, c, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
            nn.BatchNorm2d(c),
        )
    raise KeyError(name)


class RefCell(nn.Module):
    def __init__(self, g: Genotype, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool) -> None:
        super().__init__()
        self.pre0 = RefFactorizedReduce(c_pp, c) if reduction_prev else ref_relu_conv_bn(c_pp, c)
        self.pre1 = ref_relu_conv_bn(c_p, c)
        edges, self.concat = (g.reduce, g.reduce_concat) if reduction else (g.normal, g.normal_concat)
        # as the original: in a reduction cell only the edges reading the two cell inputs stride
        self.ops = nn.ModuleList(ref_op(name, c, 2 if reduction and i < 2 else 1) for name, i in edges)
        self.inputs = [i for _, i in edges]
        self.multiplier = len(self.concat)  # the cell's width is len(concat) * c, loose ends or not

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for k in range(0, len(self.ops), 2):
            states.append(self.ops[k](states[self.inputs[k]]) + self.ops[k + 1](states[self.inputs[k + 1]]))
        return torch.cat([states[i] for i in self.concat], dim=1)


def ref_cells(g: Genotype, c_stem: int, c: int, layers: int, reduction_prev: bool) -> tuple[nn.ModuleList, int]:
    """The original's cell stack (reductions at 1/3 and 2/3) after a stem of c_stem channels; also returns
    the last cell's output channels."""
    c_pp, c_p, c_cur = c_stem, c_stem, c
    cells = nn.ModuleList()
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        c_cur *= 2 if reduction else 1
        cell = RefCell(g, c_pp, c_p, c_cur, reduction, reduction_prev)
        cells.append(cell)
        reduction_prev = reduction
        c_pp, c_p = c_p, cell.multiplier * c_cur
    return cells, c_p


class RefNetworkCIFAR(nn.Module):
    """NetworkCIFAR without its auxiliary head (the original's parameter count skips it too)."""

    def __init__(self, g: Genotype, c: int = 36, layers: int = 20, n_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 3 * c, 3, padding=1, bias=False), nn.BatchNorm2d(3 * c))
        self.cells, c_p = ref_cells(g, 3 * c, c, layers, reduction_prev=False)
        self.classifier = nn.Linear(c_p, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(s1, 1), 1))


def n_weights(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def shapes(module: nn.Module) -> list[tuple[int, ...]]:
    return sorted(tuple(p.shape) for p in module.parameters())


# ---- archsearch's networks -----------------------------------------------------------------------------------
def build(genotype: Genotype, **conf: object) -> Model:
    desc = ModelDescBuilder({**PAPER, **conf}, CIFAR, genotype_to_templates(genotype)).build()
    desc.validate()
    return Model(desc)


def test_the_reference_reproduces_the_original_codes_darts_v2_count():
    assert n_weights(RefNetworkCIFAR(NAMED_GENOTYPES["DARTS_V2"])) == 3_349_342


@pytest.mark.parametrize("name", sorted(NAMED_GENOTYPES))
def test_named_genotype_has_the_original_networks_parameter_count(name):
    genotype = parse_genotype(name)
    model, ref = build(genotype), RefNetworkCIFAR(genotype)
    assert count_params(model) == n_weights(ref)
    # the same tensors, not only the same total: no two layer differences may cancel out
    aux = {id(p) for p in model.aux_tower.parameters()}
    assert sorted(tuple(p.shape) for p in model.nonarch_params() if id(p) not in aux) == shapes(ref)


def test_nasnet_and_amoebanet_counts_at_paper_size():
    # What the original NetworkCIFAR gives at 20 cells / 36 channels (the reference above): NASNet's 5C-wide
    # normal cells make it larger than the 3.3M of the DARTS paper's Table 1, which quotes NASNet's own network.
    counts = {name: n_weights(RefNetworkCIFAR(NAMED_GENOTYPES[name])) for name in ("NASNet", "AmoebaNet")}
    assert counts == {"NASNet": 3_830_950, "AmoebaNet": 3_145_078}
    assert {name: count_params(build(NAMED_GENOTYPES[name])) for name in counts} == counts


@pytest.mark.parametrize("name", sorted(NAMED_GENOTYPES))
def test_named_genotype_runs_forward_at_cifar_eval_size(name):
    torch.manual_seed(0)
    model = build(parse_genotype(name)).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_named_genotype_trains_with_its_aux_tower_on_a_small_network():
    model = build(NAMED_GENOTYPES["AmoebaNet"], n_cells=5, init_channels=8).train()
    logits, aux_logits = model(torch.randn(2, 3, 16, 16))
    (logits.sum() + aux_logits.sum()).backward()
    assert logits.shape == aux_logits.shape == (2, 10)


@pytest.mark.parametrize("name", NEW_OPS)
@pytest.mark.parametrize("stride", [1, 2])
def test_new_ops_keep_channels_and_divide_the_size_by_their_stride(name, stride):
    op = build_op(OpDesc.of(name, 6, 6, stride, affine=True))
    desc = OpDesc.of(name, 6, 6, stride)
    assert op(torch.randn(2, 6, 12, 12)).shape == (2, 6, 12 // stride, 12 // stride)
    assert REGISTERED_OPS.downsample[name](desc) == stride and REGISTERED_OPS.params[name] == frozenset()
    assert n_weights(op) == n_weights(ref_op(name, 6, stride))


def test_dry_run_prints_the_reference_count_for_a_named_genotype(cli):
    proc = cli("--algos", "manual", "--full", "--dry-run", "--dataset.dataroot", "/nonexistent",
               "--nas.search.manual.genotype", "AmoebaNet")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"{n_weights(RefNetworkCIFAR(NAMED_GENOTYPES['AmoebaNet'])):,} parameters" in proc.stdout
