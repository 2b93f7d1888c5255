"""Property tests: whatever a user hands the parsers, only the project's UserError escapes (issue 10).

Random override strings, YAML documents (as --config files and as ModelDesc files), genotype strings,
mutated ModelDesc and IR documents, NAS-Bench-201 strings and ENAS arc sequences. Derandomized, so a
failure reproduces; each property is capped to keep the file well under a minute on a busy CPU.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archsearch.plugins  # noqa: F401 - registers ops and spaces, as the CLI does
from archsearch.cli import parse_overrides
from archsearch.common.errors import UserError
from archsearch.config import apply_override, load_config, load_yaml_with_includes
from archsearch.experiment.run import config_files
from archsearch.model.genotype import DARTS_V2, parse_genotype
from archsearch.model.model_desc import ModelDesc
from archsearch.spaces.nasbench201 import arch_to_desc, index_to_arch, parse_arch
from archsearch.spaces.token_space import ModelSpace, Operation

FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],  # no speed dependence
)
TOY = config_files("random", None, False)


def only_user_errors(call, *args):
    """Run `call`; a UserError must be one line, anything else fails the property."""
    try:
        return call(*args)
    except UserError as e:
        assert "\n" not in str(e), str(e)
        return None


def merged_toy() -> dict:
    merged: dict = {}
    from archsearch.config import deep_merge

    for f in TOY:
        merged = deep_merge(merged, load_yaml_with_includes(f))
    return merged


KEYS = [
    "common.seed",
    "common.num_threads",
    "common.device",
    "common.logdir",
    "dataset.mean",
    "nas.search.loader.batch_size",
    "nas.eval.loader.batch_size",
    "nas.search.trainer.optimizer",
    "nas.search.trainer.optimizer.lr",
    "nas.search.trainer.epochs",
    "nas.search.random.primitives",
    "nas.eval.final_desc",
    "nas",
]
YAMLISH = st.sampled_from(
    ["null", "true", "1", "-1", "0", "3.0", "1e9", ".nan", "[1, 2]", "{a: 1}", "&a [*a]", "!!python/object:x y",
     "!!binary aGk=", "2020-01-01", "'x'", "[", "{", "*x", "!!set {a}", "~", "0x10", "1_000"]
)  # fmt: skip
VALUES = st.one_of(YAMLISH, st.text(max_size=30))


@FUZZ
@given(st.lists(st.one_of(st.sampled_from(["--" + k for k in KEYS]), st.text(max_size=20), VALUES), max_size=6))
def test_random_command_lines_parse_to_overrides_or_one_user_error(args):
    only_user_errors(parse_overrides, args)


@FUZZ
@given(st.lists(st.tuples(st.one_of(st.sampled_from(KEYS), st.text(max_size=20)), VALUES), max_size=4))
def test_random_overrides_give_a_valid_config_or_one_user_error(overrides):
    conf = only_user_errors(load_config, TOY, overrides)
    if conf is not None:  # whatever got through fits the schema: an int key never holds a float
        assert isinstance(conf["nas"]["search"]["loader"]["batch_size"], int)
        assert conf["nas"]["search"]["loader"]["batch_size"] >= 1


@FUZZ
@given(st.sampled_from(KEYS), VALUES)
def test_apply_override_on_the_raw_tree(key, value):
    only_user_errors(apply_override, merged_toy(), key, value)


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**10), st.floats(allow_nan=True), st.text(max_size=8))
SECTION_NAMES = st.sampled_from(["common", "dataset", "nas", "search", "eval", "loader", "trainer", "batch_size",
                                 "epochs", "seed", "lr", "_copy", "__include__", "optimizer", "mean", "x"])  # fmt: skip
DOCS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(SECTION_NAMES, inner, max_size=3)),
    max_leaves=12,
)


def yaml_text(draw_doc, raw: str) -> str:
    return yaml.safe_dump(draw_doc) if raw == "" else raw


@FUZZ
@given(DOCS, st.one_of(st.just(""), st.text(max_size=60), YAMLISH))
def test_random_yaml_documents_as_config_files(tmp_path_factory, doc, raw):
    path = tmp_path_factory.mktemp("conf") / "user.yaml"
    path.write_text(yaml_text(doc, raw))
    only_user_errors(load_config, [*TOY, path])


@FUZZ
@given(st.binary(max_size=40))
def test_random_bytes_as_config_files(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("bytes") / "user.yaml"
    path.write_bytes(data)
    only_user_errors(load_config, [*TOY, path])


OPS = st.sampled_from(["sep_conv_3x3", "skip_connect", "max_pool_3x3", "none", "nope", ""])
INTS = st.one_of(st.integers(-3, 8), st.booleans(), st.just(10**12))


@st.composite
def genotype_strings(draw) -> str:
    def edges() -> str:
        pairs = draw(st.lists(st.tuples(OPS, INTS), max_size=6))
        return repr(pairs) if draw(st.booleans()) else draw(st.sampled_from(["5", "'x'", "[1]", "[('a',)]"]))

    def concat() -> str:
        return draw(st.sampled_from(["5", "[2, 3]", "[2, 99]", "[]", "range(2, 6)", "range(10**12)", "range('a')",
                                     "[-1]", "[True]", "None", "{1: 2}", "[[1]]", "{[]: 1}"]))  # fmt: skip

    fields = {"normal": edges(), "normal_concat": concat(), "reduce": edges(), "reduce_concat": concat()}
    keep = draw(st.lists(st.sampled_from([*fields, "extra", "**kw"]), unique=True, max_size=5))
    body = ", ".join(k if k == "**kw" else f"{k}={fields.get(k, '1')}" for k in keep)
    return f"Genotype({body})"


@FUZZ
@given(st.one_of(genotype_strings(), st.text(max_size=80), st.just(str(DARTS_V2))))
def test_random_genotype_strings(text):
    only_user_errors(parse_genotype, text)


def mutate(doc, draw) -> object:
    """`doc` with one random leaf replaced, one key dropped or one key added, at a random depth."""
    doc = copy.deepcopy(doc)
    node = doc
    for _ in range(draw(st.integers(0, 8))):
        children = (
            list(node.items()) if isinstance(node, dict) else list(enumerate(node)) if isinstance(node, list) else []
        )
        children = [(k, v) for k, v in children if isinstance(v, (dict, list)) and v]
        if not children:
            break
        node = draw(st.sampled_from(children))[1]
    if isinstance(node, dict) and node:
        key = draw(st.sampled_from(sorted(node, key=str)))
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        if action == "replace":
            node[key] = draw(DOCS)
        elif action == "drop":
            del node[key]
        else:
            node[draw(st.text(max_size=6))] = draw(SCALARS)
    elif isinstance(node, list) and node:
        node[draw(st.integers(0, len(node) - 1))] = draw(DOCS)
    return doc


DESC = arch_to_desc(index_to_arch(1234), C=4, N=1, ch_in=1, n_classes=3).to_dict()


@FUZZ
@given(st.data())
def test_mutated_model_desc_files(tmp_path_factory, data):
    doc = mutate(DESC, data.draw)
    path = tmp_path_factory.mktemp("desc") / "desc.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    desc = only_user_errors(ModelDesc.load, path)
    if desc is not None:  # a desc that validates also builds a model
        from archsearch.model.network import Model

        only_user_errors(Model, desc)


@FUZZ
@given(st.one_of(DOCS.map(yaml.safe_dump), st.text(max_size=80), YAMLISH))
def test_random_yaml_as_model_desc(text):
    only_user_errors(ModelDesc.from_yaml, text)


@pytest.fixture(scope="module")
def ir_doc() -> dict:
    path = Path(__file__).parent / "strategies" / "morphism" / "data" / "nni_seed_cnn_32x32x3.json"
    return json.loads(path.read_text())


@FUZZ
@given(st.data())
def test_mutated_ir_json(ir_doc, data):
    from archsearch.strategies.morphism import json_to_graph

    only_user_errors(json_to_graph, json.dumps(mutate(ir_doc, data.draw)))


@FUZZ
@given(st.one_of(st.binary(max_size=40), st.text(max_size=40)))
def test_random_ir_bytes(data):
    from archsearch.strategies.morphism import json_to_graph

    only_user_errors(json_to_graph, data)


@FUZZ
@given(st.one_of(st.text(alphabet="|+~0123_abcdeklnoprstv", max_size=80), st.text(max_size=40), SCALARS))
def test_random_nasbench201_strings(text):
    only_user_errors(parse_arch, text)


SPACE = ModelSpace([[Operation(f"op{j}") for j in range(3)] for _ in range(4)], skip_connections=True)


@FUZZ
@given(st.one_of(st.lists(st.one_of(SCALARS, st.lists(SCALARS, max_size=2)), max_size=12), SCALARS))
def test_random_arc_sequences(arc):
    only_user_errors(SPACE.decode, arc)


# ---- the cases the issue names, as plain examples ----------------------------------------------------


def test_ir_json_file_non_utf8_missing_field_and_wrong_type(tmp_path, ir_doc):
    from archsearch.spaces.morphism.ir_json import load_graph_file

    latin = tmp_path / "latin.json"
    latin.write_bytes(json.dumps({"vis": "caf\xe9"}).encode("utf-8").replace(b"\\u00e9", b"\xe9"))
    with pytest.raises(UserError, match=f"{latin}: IR JSON: not UTF-8 text"):
        load_graph_file(latin)
    with pytest.raises(UserError, match="does not exist"):
        load_graph_file(tmp_path / "missing.json")
    missing = tmp_path / "missing_field.json"
    missing.write_text(json.dumps({k: v for k, v in ir_doc.items() if k != "adj_list"}))
    with pytest.raises(UserError, match="missing key 'adj_list'"):
        load_graph_file(missing)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({**ir_doc, "weighted": "yes"}))
    with pytest.raises(UserError, match="weighted must be true or false"):
        load_graph_file(wrong)
    assert load_graph_file(write_json(tmp_path / "ok.json", ir_doc)).n_layers > 0


def write_json(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    "call, arg, message",
    [
        (parse_arch, "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|", "2 node group"),
        (parse_arch, 5, "must be a string"),
        (SPACE.decode, [True] * SPACE.arc_length(), r"arc_seq\[0\] = True must be an int"),
        (SPACE.decode, [9] * SPACE.arc_length(), "out of range"),
    ],
)
def test_nasbench201_strings_and_arc_sequences_are_strict(call, arg, message):
    with pytest.raises(UserError, match=message):
        call(arg)
