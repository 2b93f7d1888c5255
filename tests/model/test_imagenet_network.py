"""The DARTS paper's ImageNet evaluation network (mobile setting): the original code's NetworkImageNet
layout behind `model_desc.skeleton: imagenet`, checked against a separate re-implementation of it (built
on the reference cells of test_genotypes_zoo.py, plain torch layers) and against the figures the original
code gives for DARTS_V2: 4,718,752 weights without the auxiliary head, about 530M multiply-adds at 224x224.
The shipped ImageNet recipe, and the dry run that shows the layout without any data."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import archsearch
from archsearch.experiment.run import RunOptions
from archsearch.model.builder import ModelDescBuilder
from archsearch.model.genotype import NAMED_GENOTYPES, Genotype, genotype_to_templates
from archsearch.model.model_desc import ModelDesc
from archsearch.model.network import Model, count_params
from archsearch.model.stats import count_macs
from tests.model.test_genotypes_zoo import n_weights, ref_cells, shapes

IMAGENET = {"channels": 3, "n_classes": 1000}
MOBILE = dict(skeleton="imagenet", n_cells=14, init_channels=48, n_nodes=4, stem_multiplier=3, n_reductions=2,
              aux_weight=0.4, affine=True)  # fmt: skip


class RefNetworkImageNet(nn.Module):
    """The original NetworkImageNet without its auxiliary head, from that code's structure."""

    def __init__(self, g: Genotype, c: int = 48, layers: int = 14, n_classes: int = 1000) -> None:
        super().__init__()
        self.stem0 = nn.Sequential(
            nn.Conv2d(3, c // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c // 2),
            nn.ReLU(),
            nn.Conv2d(c // 2, c, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c),
        )
        self.stem1 = nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c))
        # reduction_prev: the first cell reduces stem0's 56x56 map
        self.cells, c_p = ref_cells(g, c, c, layers, reduction_prev=True)
        self.classifier = nn.Linear(c_p, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = self.stem0(x)
        s1 = self.stem1(s0)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(torch.flatten(nn.functional.avg_pool2d(s1, 7), 1))


def build(genotype: Genotype, **conf: object) -> Model:
    desc = ModelDescBuilder({**MOBILE, **conf}, IMAGENET, genotype_to_templates(genotype)).build()
    desc.validate()
    return Model(desc)


def test_darts_v2_has_the_original_codes_weights_and_multiply_adds():
    model = build(NAMED_GENOTYPES["DARTS_V2"])
    assert count_params(model) == 4_718_752
    # the ImageNet head on cell 9's 768 channels: conv1x1 768x128, BN 2x128, conv2x2 128x768x4, linear 768x1000+1000
    assert count_params(model, exclude_aux=False) - count_params(model) == 98_304 + 256 + 393_216 + 769_000
    macs = count_macs(model, (3, 224, 224))
    assert macs == pytest.approx(530e6, rel=0.01)
    assert macs == count_macs(RefNetworkImageNet(NAMED_GENOTYPES["DARTS_V2"]), (3, 224, 224))


@pytest.mark.parametrize("name", sorted(NAMED_GENOTYPES))
def test_every_named_genotype_matches_the_reference_network(name):
    genotype = NAMED_GENOTYPES[name]
    ours, ref = build(genotype, aux_weight=0.0), RefNetworkImageNet(genotype)
    assert count_params(ours) == n_weights(ref)
    assert shapes(ours) == shapes(ref)


def test_the_layout_two_stride_2_stems_reductions_at_a_third_and_the_aux_head_at_7x7():
    model = build(NAMED_GENOTYPES["DARTS_V2"])
    desc = model.desc
    assert [s.name for s in desc.stems] == ["stem_imagenet", "conv_3x3"] and desc.stems[1].stride == 2
    assert [i for i, c in enumerate(desc.cells) if c.cell_type == "reduction"] == [4, 9]
    assert desc.cells[0].stems[0].name == "factorized_reduce"  # stem0's map is twice stem1's
    assert desc.aux_tower.kind == "imagenet" and desc.aux_tower.after_cell == 9
    sizes, aux_in = [], []
    for cell in model.cells:
        cell.register_forward_hook(lambda m, i, out: sizes.append(out.shape[-1]))
    model.aux_tower.register_forward_hook(lambda m, i, out: aux_in.append(i[0].shape[-1]))
    model.train()
    logits, aux_logits = model(torch.randn(2, 3, 224, 224))
    assert sizes == [28] * 4 + [14] * 5 + [7] * 5 and aux_in == [7]
    assert logits.shape == aux_logits.shape == (2, 1000)
    # the desc round-trips with its aux head's kind; a desc file without one (older) is the CIFAR head
    assert ModelDesc.from_yaml(desc.to_yaml()).aux_tower.kind == "imagenet"
    data = desc.to_dict()
    del data["aux_tower"]["kind"]
    assert ModelDesc.from_dict(data).aux_tower.kind == "cifar"


def test_the_cifar_layout_is_unchanged_and_the_default():
    conf = {**MOBILE, "n_cells": 8, "init_channels": 16}
    templates = genotype_to_templates(NAMED_GENOTYPES["DARTS_V2"])
    cifar = ModelDescBuilder({**conf, "skeleton": "cifar"}, IMAGENET, templates).build()
    older = ModelDescBuilder({k: v for k, v in conf.items() if k != "skeleton"}, IMAGENET, templates).build()
    assert cifar == older and [s.name for s in cifar.stems] == ["stem_conv3x3"] and cifar.aux_tower.kind == "cifar"


def test_datasets_imagenet_evaluates_this_network_with_the_papers_recipe_in_a_dry_run(tmp_path):
    # a dry run needs no ImageNet files: it builds the eval model of the given genotype and reports its size
    report = archsearch.run(
        "manual", "imagenet", RunOptions(dry_run=True, exp_prefix="inet"),
        {"nas.search.manual.genotype": "DARTS_V2", "common.logdir": str(tmp_path)},
    )  # fmt: skip
    text = "\n".join(report["lines"])
    assert "4,718,752 parameters" in text and "529.9M MACs" in text, text
    conf = archsearch.config.load_config(
        [
            archsearch.config.confs_dir() / "algos" / "manual.yaml",
            archsearch.config.confs_dir() / "datasets" / "imagenet.yaml",
        ]
    )["nas"]["eval"]
    trainer = conf["trainer"]
    assert (conf["model_desc"]["skeleton"], conf["model_desc"]["n_cells"], conf["model_desc"]["init_channels"]) == (
        "imagenet", 14, 48)  # fmt: skip
    assert conf["model_desc"]["aux_weight"] == 0.4 and conf["loader"]["batch_size"] == 128
    assert (trainer["epochs"], trainer["label_smoothing"], trainer["grad_clip"]) == (250, 0.1, 5.0)
    assert {k: trainer["optimizer"][k] for k in ("type", "lr", "momentum", "weight_decay")} == {
        "type": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 3e-5}  # fmt: skip
    assert {k: trainer["lr_schedule"][k] for k in ("type", "step_size", "gamma")} == {
        "type": "step", "step_size": 1, "gamma": 0.97}  # fmt: skip
