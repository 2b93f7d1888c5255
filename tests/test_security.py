"""Loading is safe: a model file or an architecture JSON never imports or calls code the caller did not name.

The malicious files here pass `torch.load(weights_only=True)` and name `os:system` (with a payload that
creates a file), `builtins:exec`, or a module that creates a file when imported; each is refused with one
line telling how to allow it, and the payload's file is checked to be absent afterwards.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

import archsearch
from archsearch.common import io
from archsearch.common.checkpoint import save_checkpoint
from archsearch.common.errors import ArchitectureError, UserError
from archsearch.common.io import atomic_write_text
from archsearch.model.load import CodeAllowed
from archsearch.spaces.user_model import UserModelArch, UserModelRef
from tests.conftest import REPO, assert_user_error, config_fixture

NET = "examples.mnist_space:Net"
EXAMPLE = str(REPO / "examples" / "mnist_space.yaml")
CHOICES = {"conv1": "conv5x5", "conv2": "conv3x3", "skip": []}


def arch_json(model: str, model_kwargs: dict, choices: dict = CHOICES) -> str:
    return json.dumps({"format": "user_model_json", "model": model, "model_kwargs": model_kwargs, "choices": choices})


def model_file(path: Path, model: str, model_kwargs: dict, state_dict: dict | None = None) -> Path:
    """A model.pt as the final training writes it, whose architecture names `model`."""
    arch = {"arch_format": "user_model_json", "arch": arch_json(model, model_kwargs), "state_dict": state_dict or {}}
    return save_checkpoint(arch, path)


def system_payload(tmp_path: Path) -> tuple[dict, Path]:
    """kwargs for os.system that create a file: the proof that the code ran."""
    marker = tmp_path / "pwned"
    return {"command": f"touch {marker}"}, marker


def test_a_model_file_naming_os_system_is_refused_and_runs_nothing(tmp_path):
    kwargs, marker = system_payload(tmp_path)
    path = model_file(tmp_path / "model.pt", "os:system", kwargs)
    with pytest.raises(ArchitectureError) as refused:
        archsearch.load_model(path)
    message = str(refused.value)
    assert "\n" not in message and f"{path} names user code 'os:system'" in message
    assert 'load_model(path, model="os:system")' in message and "trust_code=True" in message
    assert not marker.exists()
    with pytest.raises(ArchitectureError, match=f'not the model="{NET}" you allowed'):
        archsearch.load_model(path, model=NET)  # naming another class does not allow this one
    assert not marker.exists()


def test_the_os_system_payload_is_live_so_trust_code_really_is_needed(tmp_path):
    """Guards the test above: the same file with trust_code=True does run its command."""
    kwargs, marker = system_payload(tmp_path)
    path = model_file(tmp_path / "model.pt", "os:system", kwargs)
    with pytest.raises(UserError, match="not a torch.nn.Module"):
        archsearch.load_model(path, trust_code=True)
    assert marker.exists()


def test_a_model_file_naming_builtins_exec_is_refused(tmp_path):
    path = model_file(tmp_path / "model.pt", "builtins:exec", {"source": "open('pwned', 'w')"})
    with pytest.raises(ArchitectureError, match="names user code 'builtins:exec'; load it with"):
        archsearch.load_model(path)


def test_a_refused_file_does_not_even_import_its_module(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "payload_on_import.py").write_text(f"open({str(marker)!r}, 'w').close()\nNet = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = model_file(tmp_path / "model.pt", "payload_on_import:Net", {})
    with pytest.raises(ArchitectureError, match="payload_on_import:Net"):
        archsearch.load_model(path)
    assert not marker.exists() and "payload_on_import" not in sys.modules


def test_a_real_user_model_file_loads_when_its_class_is_named_or_trusted(tmp_path):
    ref = UserModelRef(NET, {"width": 8})
    trained = UserModelArch(ref, CHOICES).build_fixed(CodeAllowed(NET))
    path = model_file(tmp_path / "model.pt", NET, ref.kwargs, trained.state_dict())
    for model in (archsearch.load_model(path, model=NET), archsearch.load_model(path, trust_code=True)):
        assert model.conv1.out_channels == 8 and not model.training
    with pytest.raises(ArchitectureError, match=f'load_model\\(path, model="{NET}"\\)'):
        archsearch.load_model(path)


def test_code_allowed_from_a_config_key_names_the_key_and_both_models():
    with pytest.raises(ArchitectureError) as refused:
        CodeAllowed(NET, named_by="nas.search.space.model").check("os:system", "final_arch.json")
    assert str(refused.value) == (
        f"final_arch.json names user code 'os:system' but nas.search.space.model is '{NET}'; "
        "set --nas.search.space.model os:system if you trust that code"
    )
    CodeAllowed(NET, named_by="nas.search.space.model").check(NET, "final_arch.json")  # the configured one


tiny_eval = config_fixture({"nas": {"eval": {"loader": {"limit_batches": 1}, "trainer": {"epochs": 1}}}})


def evil_json(tmp_path: Path, model: str) -> tuple[Path, Path]:
    """evil.json, a user-model architecture naming `model` with the os.system payload, and its marker."""
    kwargs, marker = system_payload(tmp_path)
    evil = tmp_path / "evil.json"
    evil.write_text(arch_json(model, kwargs))
    return evil, marker


@pytest.mark.parametrize("evil_model", ["os:system", "builtins:exec"])
def test_eval_only_takes_the_class_from_the_config_not_the_file(cli, tmp_path, tiny_eval, evil_model):
    evil, marker = evil_json(tmp_path, evil_model)
    proc = cli(
        "--algos",
        "darts",
        "--config",
        EXAMPLE,
        "--config",
        tiny_eval,
        "--eval-only",
        "--nas.eval.final_desc",
        str(evil),
    )
    assert_user_error(proc, f"{evil} names user code '{evil_model}'", f"nas.search.space.model is '{NET}'")
    assert not marker.exists()


def test_eval_only_of_a_user_model_json_without_a_configured_model_runs_nothing(cli, tmp_path):
    evil, marker = evil_json(tmp_path, "os:system")
    proc = cli("--algos", "darts", "--datasets", "synthetic", "--eval-only", "--nas.eval.final_desc", str(evil))
    assert_user_error(proc, str(evil))
    assert not marker.exists()


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_atomic_writes_get_the_umask_mode_not_mkstemps_0600(tmp_path, umask):
    old = os.umask(umask)
    io._umask.cache_clear()  # the umask is read once per process; this test changes it
    try:
        path = atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
        io._umask.cache_clear()
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
