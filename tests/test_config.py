import pytest
import yaml

from archsearch.common.errors import ConfigError
from archsearch.config import Config, load_config, load_yaml_with_includes, resolve_copies


def write(path, data):
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_include_merges_depth_first_with_including_file_winning(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "base.yaml", {"a": {"x": 1, "y": 2}, "b": 1})
    write(tmp_path / "mid.yaml", {"__include__": "sub/base.yaml", "a": {"y": 3}, "c": 5})
    write(tmp_path / "other.yaml", {"c": 6, "d": 7})
    write(tmp_path / "top.yaml", {"__include__": ["mid.yaml", "other.yaml"], "b": 9})
    assert load_yaml_with_includes(tmp_path / "top.yaml") == {"a": {"x": 1, "y": 3}, "b": 9, "c": 6, "d": 7}


def test_include_cycle_names_the_chain(tmp_path):
    write(tmp_path / "a.yaml", {"__include__": "b.yaml"})
    write(tmp_path / "b.yaml", {"__include__": "a.yaml"})
    with pytest.raises(ConfigError, match=r"include cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_yaml_with_includes(tmp_path / "a.yaml")


def test_copy_takes_section_then_own_keys_override():
    conf = resolve_copies(
        {
            "nas": {
                "search": {"loader": {"batch": 64, "aug": {"flip": True, "crop": 4}}},
                "eval": {"loader": {"_copy": "/nas/search/loader", "batch": 96, "aug": {"crop": 0}}},
            }
        }
    )
    assert conf["nas"]["eval"]["loader"] == {"batch": 96, "aug": {"flip": True, "crop": 0}}
    assert conf["nas"]["search"]["loader"]["batch"] == 64


def test_copy_of_missing_section_and_copy_cycles_are_errors():
    with pytest.raises(ConfigError, match="/nope"):
        resolve_copies({"a": {"_copy": "/nope"}})
    with pytest.raises(ConfigError, match="cycle"):
        resolve_copies({"a": {"_copy": "/b"}, "b": {"_copy": "/a"}})


def test_overrides_parse_yaml_values_and_reach_copies(tmp_path):
    f = write(
        tmp_path / "c.yaml",
        {
            "common": {"seed": 2, "resume": False, "num_threads": None},
            "nas": {
                "search": {"loader": {"batch_size": 64}, "trainer": {"optimizer": {"lr": 0.1}},
                           "naswot": {"indices": [1]}},
                "eval": {"final_desc": None, "loader": {"_copy": "/nas/search/loader"}},
            },
        },
    )  # fmt: skip
    conf = load_config(
        [f],
        [
            ("common.seed", "3"),
            ("common.resume", "true"),
            ("common.num_threads", "2"),  # checked against the schema, not against the shipped null
            ("nas.search.trainer.optimizer.lr", "1e-3"),
            ("nas.search.naswot.indices", "[1,2]"),
            ("nas.eval.final_desc", "x.yaml"),
            ("nas.search.loader.batch_size", "32"),
        ],
    )
    assert conf["common"].to_dict() == {"seed": 3, "resume": True, "num_threads": 2}
    assert conf["nas"]["search"]["trainer"]["optimizer"]["lr"] == 0.001
    assert conf["nas"]["search"]["naswot"]["indices"] == [1, 2] and conf["nas"]["eval"]["final_desc"] == "x.yaml"
    assert conf["nas"]["eval"]["loader"]["batch_size"] == 32  # the copy sees the override (Archai's order)
    conf = load_config([f], [("nas.eval.loader.batch_size", "16")])  # a key that exists only through _copy
    assert conf["nas"]["eval"]["loader"]["batch_size"] == 16 and conf["nas"]["search"]["loader"]["batch_size"] == 64
    lr = load_config([f], [("nas.search.trainer.optimizer.lr", "1")])["nas"]["search"]["trainer"]["optimizer"]["lr"]
    assert lr == 1.0 and isinstance(lr, float)


def test_a_mapping_override_merges_into_its_section_and_is_validated():
    from archsearch.experiment.run import config_files

    files = config_files("random", None, False)
    conf = load_config(files, [("nas.search.trainer.optimizer", "{lr: 0.5}")])
    assert conf["nas"]["search"]["trainer"]["optimizer"]["lr"] == 0.5
    assert conf["nas"]["search"]["trainer"]["optimizer"]["type"] == "sgd"  # the rest of the section stays
    assert conf["nas"]["eval"]["trainer"]["optimizer"]["lr"] == 0.5  # and reaches the copy
    with pytest.raises(
        ConfigError, match=r"optimizer\.lrr \(from --nas\.search\.trainer\.optimizer\).*did you mean lr"
    ):
        load_config(files, [("nas.search.trainer.optimizer", "{lrr: 0.5}")])


def test_override_of_unknown_key_suggests_close_keys(tmp_path):
    f = write(tmp_path / "c.yaml", {"nas": {"eval": {"trainer": {"epochs": 1}}}})
    with pytest.raises(
        ConfigError, match=r"--nas\.eval\.trainer\.epochz: no key 'epochz'.*--nas\.eval\.trainer\.epochs"
    ):
        load_config([f], [("nas.eval.trainer.epochz", "3")])


@pytest.mark.parametrize("value", ["abc", "1.5", "16.0", "1e9", "[1]", "true", "null", "0", "-1"])
def test_override_must_fit_the_declared_type_and_range(tmp_path, value):
    f = write(tmp_path / "c.yaml", {"nas": {"search": {"loader": {"batch_size": 3}}}})
    with pytest.raises(ConfigError, match=r"--nas\.search\.loader\.batch_size: .* is not allowed \(an integer >= 1\)"):
        load_config([f], [("nas.search.loader.batch_size", value)])


def test_missing_key_and_bad_yaml_errors(tmp_path):
    conf = Config({"nas": {"search": {"epochs": 1}}})
    with pytest.raises(ConfigError, match=r"'nas\.search\.epoch' is missing \(did you mean epochs\?\)"):
        conf["nas"]["search"]["epoch"]
    bad = write(tmp_path / "bad.yaml", "a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config([bad])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config([tmp_path / "nope.yaml"])


def test_config_is_read_only():
    conf = Config({"a": {"b": [1]}})
    with pytest.raises(TypeError):
        conf["a"]["c"] = 1  # type: ignore[index]
    conf["a"]["b"].append(2)  # lists come back as copies
    assert conf["a"]["b"] == [1]


def test_shipped_configs_resolve_for_every_algorithm():
    from archsearch.experiment.run import config_files
    from archsearch.search.strategy import STRATEGIES as RUNNERS

    for algo in RUNNERS.names():
        for full in (False, True):
            conf = load_config(config_files(algo, None, full, ()))
            assert conf["dataset"]["name"] == ("cifar10" if full else "digits")
            assert conf["nas"]["eval"]["loader"]["test_batch_size"] > 0


def test_a_section_chosen_by_name_takes_the_name_directly():
    from archsearch.experiment.run import config_files

    conf = load_config(config_files("darts", None, False), [("nas.search.space", "nasbench201")])
    assert conf["nas"]["search"]["space"]["name"] == "nasbench201"
    assert conf["nas"]["search"]["space"]["model"] is None  # the rest of the section stays


def test_a_string_key_takes_a_nasbench201_cell_as_written():
    from archsearch.experiment.run import config_files

    cell = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    conf = load_config(config_files("manual", None, False), [("nas.search.manual.genotype", cell)])
    assert conf["nas"]["search"]["manual"]["genotype"] == cell  # not a YAML block scalar
    with pytest.raises(ConfigError, match="not valid YAML"):  # an unsafe tag is still refused
        load_config(config_files("manual", None, False), [("nas.search.manual.genotype", "!!python/object:os.system")])
