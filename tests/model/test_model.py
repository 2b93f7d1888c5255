import pytest
import torch
from torch import nn

from archsearch.common.errors import ArchitectureError
from archsearch.model.builder import ModelDescBuilder, desc_genotype
from archsearch.model.genotype import DARTS_V1, DARTS_V2, format_genotype, genotype_to_templates, parse_genotype
from archsearch.model.network import Model, count_params
from archsearch.model.ops import FactorizedReduce, ReLUConvBN

DATASET = dict(channels=3, n_classes=10)


def build(genotype=DARTS_V2, **conf) -> Model:
    base = dict(n_cells=20, init_channels=36, n_nodes=4, stem_multiplier=3, n_reductions=2, aux_weight=0.4, affine=True)
    return Model(ModelDescBuilder({**base, **conf}, DATASET, genotype_to_templates(genotype)).build())


def test_darts_v2_at_paper_size_has_the_original_parameter_count():
    # The original DARTS code (NetworkCIFAR, 36 channels, 20 layers, auxiliary) reports 3.349342 MB
    # without the auxiliary head.
    model = build()
    assert count_params(model) == 3_349_342
    aux = sum(p.numel() for p in model.aux_tower.parameters())
    assert count_params(model, exclude_aux=False) == 3_349_342 + aux


def test_network_follows_the_original_darts_layout():
    model = build(n_cells=8, init_channels=16)
    stem = model.stems[0]
    assert isinstance(stem[0], nn.Conv2d) and stem[0].out_channels == 48 and isinstance(stem[1], nn.BatchNorm2d)
    types = [c.desc.cell_type for c in model.cells]
    assert [i for i, t in enumerate(types) if t == "reduction"] == [2, 5]  # layers//3, 2*layers//3
    for i, cell in enumerate(model.cells):
        after_reduction = i > 0 and types[i - 1] == "reduction"
        assert isinstance(cell.stems[0], FactorizedReduce if after_reduction else ReLUConvBN)
        assert isinstance(cell.stems[1], ReLUConvBN)
    assert model.aux_after_cell == 5  # after the 2/3-depth reduction cell
    assert model.aux_tower.features[1].in_channels == model.cells[5].desc.c_out


def test_forward_shapes_regular_reduction_and_aux():
    model = build(n_cells=5, init_channels=8)
    x = torch.randn(3, 3, 32, 32)
    model.train()
    logits, aux = model(x)
    assert logits.shape == aux.shape == (3, 10)
    model.eval()
    assert model(x).shape == (3, 10)
    # reduction cells halve the resolution and double the channels
    feats = {}
    for i, cell in enumerate(model.cells):
        cell.register_forward_hook(lambda m, inp, out, i=i: feats.__setitem__(i, out.shape))
    model(x)
    assert feats[0] == (3, 32, 32, 32) and feats[1] == (3, 64, 16, 16) and feats[3] == (3, 128, 8, 8)


def test_drop_path_only_in_training_and_never_on_identity():
    model = build(n_cells=3, init_channels=8, aux_weight=0.0)
    model.drop_path_prob = 0.5
    x = torch.randn(4, 3, 16, 16)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    torch.manual_seed(0)
    a = model(x)
    torch.manual_seed(1)
    assert not torch.allclose(a, model(x))


def test_genotype_text_round_trips_and_rejects_bad_text():
    for g in (DARTS_V1, DARTS_V2):
        assert parse_genotype(format_genotype(g)) == g
    desc = ModelDescBuilder(
        dict(n_cells=8, init_channels=16, n_nodes=4, stem_multiplier=3, n_reductions=2, aux_weight=0.0, affine=True),
        DATASET,
        genotype_to_templates(DARTS_V2),
    ).build()
    assert parse_genotype(desc_genotype(desc)) == DARTS_V2
    original = (
        "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], normal_concat=range(2, 3), "
        "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1)], reduce_concat=range(2, 3))"
    )
    assert parse_genotype(original).normal_concat == [2]
    with pytest.raises(ArchitectureError, match="unknown op 'sep_conv_9x9'"):
        parse_genotype(original.replace("sep_conv_3x3', 1", "sep_conv_9x9', 1"))
    with pytest.raises(ArchitectureError, match="input 5 must be in 0..1"):
        parse_genotype(original.replace("('sep_conv_3x3', 1)", "('sep_conv_3x3', 5)"))
    with pytest.raises(ArchitectureError, match="not valid syntax"):
        parse_genotype("Genotype(normal=[")
    with pytest.raises(ArchitectureError, match="must be Genotype"):
        parse_genotype("__import__('os').system('true')")


@pytest.mark.parametrize(
    "kind, size, stride, bn768", [("cifar", 8, 3, True), ("imagenet", 7, 2, False)]
)  # the original heads: AuxiliaryHeadCIFAR at 8x8, AuxiliaryHeadImageNet at 7x7 (no BN after the 768 conv)
def test_aux_heads_apply_relu_before_pooling_as_the_original(kind, size, stride, bn768):
    from archsearch.model.ops import AUX_TOWERS

    torch.manual_seed(0)
    head = AUX_TOWERS[kind](16, 10).eval()
    convs = [m for m in head.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in head.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [c.kernel_size for c in convs] == [(1, 1), (2, 2)] and len(bns) == 1 + bn768
    x = torch.randn(2, 16, size, size)
    h = nn.functional.avg_pool2d(torch.relu(x), 5, stride=stride, count_include_pad=False)  # ReLU first
    h = torch.relu(bns[0](convs[0](h)))
    h = convs[1](h)
    h = torch.relu(bns[1](h) if bn768 else h)
    assert torch.allclose(head(x), head.classifier(torch.flatten(h, 1)), atol=1e-6)
