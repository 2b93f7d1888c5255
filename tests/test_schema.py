"""The config schema: every value validated, in one place, before any work starts (issue 10)."""

from __future__ import annotations

import pytest
import yaml

from archsearch.common.errors import ConfigError
from archsearch.config import load_config
from archsearch.config import schema as config_schema
from archsearch.experiment.run import config_files
from tests.conftest import assert_user_error


def write(path, data):
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


@pytest.fixture
def toy_files():
    return config_files("random", None, False)


def check(files, overrides=(), *fragments):
    with pytest.raises(ConfigError) as error:
        load_config(files, overrides)
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


@pytest.mark.parametrize(
    "key, value, allowed",
    [
        ("nas.search.trainer.epochs", "-1", "an integer >= 1"),
        ("nas.search.trainer.epochs", "0", "an integer >= 1; skip a phase with --search-only or --eval-only"),
        ("nas.search.loader.batch_size", "0", "an integer >= 1"),
        ("nas.search.loader.batch_size", "-1", "an integer >= 1"),
        ("nas.search.loader.batch_size", "16.0", "an integer >= 1"),
        ("nas.search.random.n_candidates", "3.0", "an integer >= 1"),
        ("nas.search.random.n_candidates", "1e9", "an integer >= 1"),
        ("nas.search.random.n_candidates", "true", "an integer >= 1"),  # bool is not int
        ("common.num_threads", "-3", "an integer >= 1 or null"),
        ("common.seed", "null", "an integer from 0 to 4294967295"),  # null only where declared
        ("common.device", "gpu", "auto, cpu, cuda or cuda:N"),
        ("nas.search.trainer.optimizer.lr", "0", "a number > 0"),
        ("nas.search.trainer.optimizer.lr", ".nan", "a number > 0"),
        ("nas.search.trainer.optimizer.type", "rmsprop", None),
        ("nas.search.trainer.lr_schedule.type", "plateau", None),
        ("nas.search.loader.train_portion", "1.0", "a number > 0 < 1"),
        ("nas.search.trainer.optimizer.betas", "[0.9]", "a list of 2 values, each a number >= 0 < 1"),
        ("common.resume", "1", "true or false"),
    ],
)
def test_override_outside_type_or_range_is_one_line(toy_files, key, value, allowed):
    expected = f"{value!r} is not allowed ({allowed}" if allowed else f"{value!r} is not one of "  # None: choices
    check(toy_files, [(key, value)], f"--{key}: {expected}")


def test_choices_name_every_valid_value(toy_files, tmp_path):
    user = write(tmp_path / "mine.yaml", {"nas": {"search": {"trainer": {"lr_schedule": {"type": "plateau"}}}}})
    check([*toy_files, user], (), "'plateau' is not one of cosine, cosine_restarts, step, constant, linear", str(user))


def test_num_threads_override_works_although_the_shipped_value_is_null():
    conf = load_config(config_files("random", None, True), [("common.num_threads", "2")])
    assert conf["common"]["num_threads"] == 2


def test_config_file_values_are_type_checked_and_name_the_file(toy_files, tmp_path):
    user = write(tmp_path / "mine.yaml", {"nas": {"search": {"loader": {"batch_size": 0}}}})
    check([*toy_files, user], (), "config nas.search.loader.batch_size", f"(from {user})", "0 is not allowed")
    floats = write(tmp_path / "floats.yaml", {"nas": {"search": {"trainer": {"epochs": 3.0}}}})
    check([*toy_files, floats], (), "config nas.search.trainer.epochs", "3.0 is not allowed")
    null = write(tmp_path / "null.yaml", {"nas": {"search": {"loader": {"augment": None}}}})
    check([*toy_files, null], (), "nas.search.loader.augment", "null is not allowed (true or false)")


def test_eval_section_that_copies_search_names_the_file_the_value_came_from(toy_files, tmp_path):
    user = write(tmp_path / "mine.yaml", {"nas": {"search": {"loader": {"test_batch_size": -4}}}})
    message = check([*toy_files, user], (), "-4 is not allowed")
    assert str(user) in message


def test_unknown_key_in_a_config_file_suggests_close_ones(toy_files, tmp_path):
    user = write(tmp_path / "mine.yaml", {"nas": {"search": {"loader": {"batch_szie": 8}}}})
    check([*toy_files, user], (), "config nas.search.loader.batch_szie", str(user), "did you mean batch_size")
    top = write(tmp_path / "top.yaml", {"comon": {"seed": 1}})
    check([*toy_files, top], (), "unknown key 'comon'", "did you mean common")
    section = write(tmp_path / "section.yaml", {"common": 3})
    check([*toy_files, section], (), "config common", "3 is not allowed (a mapping of settings)")


def test_normalization_constants_must_match_the_channels(toy_files):
    check(toy_files, [("dataset.mean", "[0.5, 0.5, 0.5]")], "dataset.mean", "--dataset.mean", "dataset.channels is 1")
    check(toy_files, [("dataset.mean", "null")], "both be set or both be null")
    conf = load_config(config_files("random", "npz", False))
    assert conf["dataset"]["mean"] is None and conf["dataset"]["channels"] == 1  # computed from the data


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("&a [*a]", "alias cycle"),
        ("!!python/object:os.system x", "not valid YAML"),
        ("!!python/name:os.system", "not valid YAML"),
        ("[1, 2", "not valid YAML"),
    ],
)
def test_yaml_alias_cycle_and_odd_tags_in_an_override(toy_files, text, fragment):
    check(toy_files, [("common.seed", text)], "--common.seed", fragment)


def test_yaml_alias_cycle_odd_tag_and_non_utf8_in_a_file(toy_files, tmp_path):
    cycle = write(tmp_path / "cycle.yaml", "common: &a\n  seed: *a\n")
    check([*toy_files, cycle], (), str(cycle), "alias cycle")
    tag = write(tmp_path / "tag.yaml", "common: !!python/object/apply:os.system [echo]\n")
    check([*toy_files, tag], (), str(tag), "not valid YAML")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("common: {logdir: caf\xe9}\n".encode("latin-1"))
    check([*toy_files, latin], (), str(latin), "not UTF-8")
    bomb = write(tmp_path / "bomb.yaml", "a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},"
        f"*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n"
        for i in range(8)
    ))  # fmt: skip
    check([bomb], (), str(bomb), "too large")


def test_rules_spanning_keys_reach_copied_sections(toy_files):
    check(toy_files, [("nas.eval.model_desc.n_cells", "2")], "config nas.eval.model_desc.n_cells (from --nas.eval",
          "2 is not allowed (with n_reductions=2, n_cells >= 3)")  # fmt: skip


def test_float_keys_store_floats_and_int_keys_never_hold_floats(toy_files):
    conf = load_config(toy_files, [("nas.search.trainer.grad_clip", "3")])
    assert isinstance(conf["nas"]["search"]["trainer"]["grad_clip"], float)
    assert isinstance(conf["nas"]["eval"]["trainer"]["grad_clip"], float)


def test_every_shipped_value_fits_and_every_key_read_is_declared():
    """Each shipped config passes, and each key it holds is declared (no key escapes the schema)."""
    from archsearch.search.strategy import STRATEGIES as RUNNERS

    for algo in RUNNERS.names():
        for full in (False, True):
            for dataset in (None, "npz", "image_folder", "svhn", "mnist", "cifar100"):
                load_config(config_files(algo, dataset, full))


def test_a_key_is_declared_once():
    config_schema.register_section("nas.search.loader", {"batch_size": config_schema.Int(ge=1)})  # same: fine
    with pytest.raises(ValueError, match="declared twice"):
        config_schema.register_section("nas.search.loader", {"batch_size": config_schema.Int(ge=0)})


def test_a_plugin_can_declare_its_section(toy_files, tmp_path):
    config_schema.register_section("nas.search.my_plugin", {"width": config_schema.Int(ge=1)})
    try:
        user = write(tmp_path / "p.yaml", {"nas": {"search": {"my_plugin": {"width": 0}}}})
        check([*toy_files, user], (), "nas.search.my_plugin.width", "an integer >= 1")
    finally:
        del config_schema.SECTIONS["nas.search.my_plugin"]


# ---- through the real CLI: one line, exit 2, no traceback -----------------------------------------


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--nas.search.loader.batch_size", "0"], ["--nas.search.loader.batch_size: '0' is not allowed"]),
        (["--nas.search.trainer.epochs", "-1"], ["--nas.search.trainer.epochs", "an integer >= 1"]),
        (["--common.num_threads", "-3"], ["--common.num_threads", "an integer >= 1 or null"]),
        (["--common.seed", "&a [*a]"], ["--common.seed", "alias cycle"]),
        (["--common.logdir", "!!python/object/apply:os.system [echo]"], ["--common.logdir", "not valid YAML"]),
    ],
)
def test_cli_rejects_bad_values_in_one_line(cli_in_process, args, fragments):
    cli = cli_in_process
    assert_user_error(cli("--algos", "random", *args), *fragments)


def test_cli_rejects_unknown_key_in_a_config_file(cli_in_process, tmp_path):
    cli = cli_in_process
    user = write(tmp_path / "mine.yaml", {"nas": {"search": {"trainer": {"epoch": 3}}}})
    assert_user_error(cli("--algos", "random", "--config", str(user)), str(user), "did you mean epochs")
