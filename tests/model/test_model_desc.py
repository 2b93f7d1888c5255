import pytest
import yaml

from archsearch.common.errors import ArchitectureError
from archsearch.model.builder import ModelDescBuilder
from archsearch.model.genotype import DARTS_V2, genotype_to_templates
from archsearch.model.model_desc import ModelDesc

CONF = dict(n_cells=5, init_channels=8, n_nodes=4, stem_multiplier=3, n_reductions=2, aux_weight=0.4, affine=True)
DATASET = dict(channels=3, n_classes=10)


def darts_desc(**overrides) -> ModelDesc:
    return ModelDescBuilder({**CONF, **overrides}, DATASET, genotype_to_templates(DARTS_V2)).build(meta={"x": 1})


def test_yaml_round_trip_is_exact(tmp_path):
    desc = darts_desc()
    path = desc.save(tmp_path / "d.yaml")
    loaded = ModelDesc.load(path)
    assert loaded == desc
    assert loaded.to_yaml() == desc.to_yaml()


def corrupt(desc: ModelDesc, edit) -> str:
    data = desc.to_dict()
    edit(data)
    return yaml.safe_dump(data)


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda d: d["cells"][1]["nodes"][0]["edges"][0]["op"].update(name="sep_conv_4x4"),
            r"cells\[1\]\.nodes\[0\]\.edges\[0\]\.op\.name: unknown op 'sep_conv_4x4' \(did you mean .*sep_conv_3x3",
        ),
        (
            lambda d: d["cells"][0]["nodes"][2]["edges"][1].update(input_id=7),
            r"cells\[0\]\.nodes\[2\]\.edges\[1\]\.input_id: 7 must be in 0\.\.3",
        ),
        (
            lambda d: d["cells"][2]["nodes"][0]["edges"][0]["op"]["conv"].update(ch_in="x"),
            r"cells\[2\]\.nodes\[0\]\.edges\[0\]\.op\.conv\.ch_in: expected an int, got 'x'",
        ),
        (
            lambda d: d["cells"][3]["stems"][0]["conv"].update(ch_in=5),
            r"cells\[3\]\.stems\[0\]\.ch_in: is 5 but state -2 has",
        ),
        (lambda d: d.pop("logits_op"), r"top level: missing field 'logits_op'"),
        (lambda d: d["cells"][0].update(colour="red"), r"cells\[0\]: unknown field\(s\) 'colour'"),
        (lambda d: d["cells"][0].update(cell_type="normal"), r"cells\[0\]\.cell_type: 'normal' is not one of"),
        (lambda d: d["logits_op"]["conv"].update(ch_out=11), r"logits_op\.ch_out: is 11, expected n_classes=10"),
        (lambda d: d["cells"][0].update(concat=[9]), r"cells\[0\]\.concat\[0\]: 9 must be in 0\.\.5"),
        (  # the crash: a stride that makes one edge's map smaller than its node's other edge
            lambda d: d["cells"][0]["nodes"][0]["edges"][0]["op"].update(stride=2),
            r"cells\[0\]\.nodes\[0\]\.edges: the maps its edges sum are downsampled 2x, 1x: mismatched strides",
        ),
        (
            lambda d: d["cells"][1]["nodes"][0]["edges"][1]["op"].update(stride=1),
            r"cells\[1\]\.nodes\[0\]\.edges: .* downsampled 2x, 1x",
        ),
        (
            lambda d: d["cells"][1].update(concat=[0, 2]),
            r"cells\[1\]\.concat: the states it joins are downsampled 1x, 2x",
        ),
        (
            lambda d: d["cells"][0]["nodes"][0]["edges"][0]["op"].update(params={"kernel": 5}),
            r"cells\[0\]\.nodes\[0\]\.edges\[0\]\.op\.params: unknown param\(s\) 'kernel'; sep_conv_3x3 takes none",
        ),
        (lambda d: d["cells"][0]["nodes"][0]["edges"][0]["op"].update(params=[1]), r"op\.params: expected a mapping"),
        (lambda d: d.update(stems="x"), r"stems: expected a list, got str"),
        (lambda d: d["pool_op"].update(stride=True), r"pool_op\.stride: expected an int, got True"),
    ],
)
def test_validation_names_the_bad_field(edit, message):
    with pytest.raises(ArchitectureError, match=message):
        ModelDesc.from_yaml(corrupt(darts_desc(), edit), "d.yaml")


def test_malformed_yaml_and_missing_file(tmp_path):
    with pytest.raises(ArchitectureError, match="line 1 is not valid YAML"):
        ModelDesc.from_yaml("cells: [1, 2", "d.yaml")
    with pytest.raises(ArchitectureError, match="top level: expected a mapping"):
        ModelDesc.from_yaml("- 1\n- 2\n", "d.yaml")
    with pytest.raises(ArchitectureError, match="does not exist"):
        ModelDesc.load(tmp_path / "missing.yaml")


def test_scaling_is_pure_and_keeps_the_cells():
    small = darts_desc()
    before = small.to_yaml()
    big = ModelDescBuilder({**CONF, "n_cells": 8, "init_channels": 16}, DATASET).scale(small)
    assert small.to_yaml() == before
    assert len(big.cells) == 8 and big.stems[0].ch_out == 48
    regular = [c for c in big.cells if c.cell_type == "regular"][0]
    assert [[(e.op.name, e.input_id) for e in n.edges] for n in regular.nodes] == genotype_to_templates(DARTS_V2)[
        "regular"
    ].nodes
    assert big.meta == {"x": 1}


def test_non_utf8_and_self_referencing_desc_files(tmp_path):
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(darts_desc().to_yaml().replace("meta:", "# caf\xe9\nmeta:").encode("latin-1"))
    with pytest.raises(ArchitectureError, match=f"{latin} is not UTF-8"):
        ModelDesc.load(latin)
    with pytest.raises(ArchitectureError, match="alias cycle"):
        ModelDesc.from_yaml("&a {stems: *a}", "d.yaml")
    with pytest.raises(ArchitectureError, match="not valid YAML"):
        ModelDesc.from_yaml("!!python/object/apply:os.system [echo]", "d.yaml")


def genotype(normal_input="1", normal_concat="[2]", reduce_concat="[2]") -> str:
    edges = "[('skip_connect', 0), ('skip_connect', {})]"
    return (
        f"Genotype(normal={edges.format(normal_input)}, normal_concat={normal_concat}, "
        f"reduce={edges.format(1)}, reduce_concat={reduce_concat})"
    )


@pytest.mark.parametrize(
    "text, message",
    [
        (genotype(normal_concat="5"), "normal_concat must be a non-empty list"),  # the case
        (genotype(normal_input="5"), "input 5 must be in 0..1"),
        (genotype(reduce_concat="[7]"), "reduction_concat: 7 must be in 0..2"),
        (genotype(normal_input="True"), "even-length list of"),
        (genotype(normal_concat="range(0, 10**12)"), "must be a literal list or range"),
        (genotype(normal_concat="range(0, 1000000000000)"), "far too long"),
        ("Genotype(**fields)", "not **mapping"),
        ("Genotype(normal={[]: 1}, normal_concat=[], reduce=[], reduce_concat=[])", "must be a literal list"),
        ("Genotype(\x00)", "not valid syntax"),
    ],
)
def test_bad_genotypes_are_one_architecture_error(text, message):
    from archsearch.model.genotype import parse_genotype

    with pytest.raises(ArchitectureError, match=message.replace("(", r"\(").replace("*", r"\*")):
        parse_genotype(text)


def test_validation_checks_ops_against_the_table_it_is_given():
    from archsearch.common.registry import Registry
    from archsearch.model.builder import ModelDescBuilder
    from archsearch.model.genotype import genotype_to_templates, parse_genotype
    from archsearch.model.ops import REGISTERED_OPS, OpTable

    conf = {"n_cells": 3, "init_channels": 4, "n_nodes": 4, "stem_multiplier": 3, "n_reductions": 2,
            "aux_weight": 0.0, "affine": True}  # fmt: skip
    dataset = {"channels": 3, "n_classes": 10}
    desc = ModelDescBuilder(conf, dataset, genotype_to_templates(parse_genotype("DARTS_V2"))).build()
    desc.validate("DARTS_V2", REGISTERED_OPS)
    only_linear = Registry("op")
    only_linear.add("linear", REGISTERED_OPS.builders.get("linear"))
    with pytest.raises(ArchitectureError, match="unknown op"):
        desc.validate("DARTS_V2", OpTable(only_linear, {}, {}))
