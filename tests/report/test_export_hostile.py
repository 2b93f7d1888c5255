"""Hostile inputs to `archsearch export` and `archsearch show`: every one is a single `error: ...` line naming
the file or value, status 2, no traceback, and nothing is exported or created on the way."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch
import yaml

from archsearch.report.export import export_main, export_model
from archsearch.report.show import show_main
from tests.conftest import REPO, assert_user_error

ENV = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}


def one_line(capsys, code: int, *fragments: str) -> str:
    """Status 2 and one stderr line starting with 'error:' that names every fragment and gives no bad advice."""
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert "weights_only" not in err and "--common.resume" not in err, err
    return err


def archsearch(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "scripts" / "main.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ENV, cwd=REPO)


# ---- OUT ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "python"])
def test_out_that_cannot_be_written_is_one_line_before_any_export(fmt, model_pts, tmp_path, capsys):
    model_pt, _ = model_pts["nb201"]
    folder = tmp_path / ("dir.py" if fmt == "python" else "dir.onnx")
    folder.mkdir()
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    device = tmp_path / ("dev_null.py" if fmt == "python" else "dev_null")
    device.symlink_to("/dev/null")
    cases = [
        (folder, "is a directory"),  # an existing directory (python: a directory named like its file)
        (blocker / "m.onnx" if fmt != "python" else blocker / "net.py", "a part of the path is a file"),
        (blocker / "sub" / "m.onnx" if fmt != "python" else blocker / "sub" / "net.py", "a part of the path is a file"),
        (device, "not a regular file"),
        (
            "/proc/archsearch_export/m.onnx" if fmt != "python" else "/proc/archsearch_export/net.py",
            "cannot be written",
        ),
    ]
    for out, fragment in cases:
        code = export_main([str(model_pt), str(out), "--format", fmt, "--input-shape", "3,16,16"])
        one_line(capsys, code, str(out), fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a_file", folder.name, device.name])
    assert list(folder.iterdir()) == []
    if fmt == "python":  # without .py, OUT is the folder of OUT/model.py: an existing file there is one line
        code = export_main([str(model_pt), str(blocker), "--format", fmt, "--input-shape", "3,16,16"])
        one_line(capsys, code, str(blocker), "is a file, not a folder")


def test_a_read_only_out_file_is_one_line(model_pts, tmp_path, capsys):
    model_pt, _ = model_pts["nb201"]
    out = tmp_path / "m.onnx"
    # /proc/self/... is a regular-looking file no one may write, whoever runs the tests (also root)
    code = export_main([str(model_pt), "/proc/self/status", "--format", "onnx", "--input-shape", "3,16,16"])
    one_line(capsys, code, "/proc/self/status")
    assert not out.exists()


# ---- --input-shape ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, fragment",
    [
        ("-1,8,8", "between 1 and"),
        ("0,0,0", "between 1 and"),
        ("3,0,16", "between 1 and"),
        ("3,16,100000", "between 1 and"),
        ("3,16", "expected three integers"),
        ("3,16,16,1", "expected three integers"),
        ("3,16,16,", "expected three integers"),
        ("a,b,c", "expected three integers"),
        ("3.0,16,16", "expected three integers"),
        ("", "expected three integers"),
        ("4,16,16", "does not fit this model"),  # the model takes 3 channels
        ("1,16,16", "does not fit this model"),
    ],
)
def test_bad_input_shapes_are_one_line_and_nothing_is_written(shape, fragment, model_pts, tmp_path, capsys):
    model_pt, _ = model_pts["nb201"]
    out = tmp_path / "m.onnx"
    code = export_main([str(model_pt), str(out), "--format", "onnx", "--input-shape", shape])
    one_line(capsys, code, "--input-shape", fragment)
    assert not out.exists()


def test_a_shape_too_small_for_the_downsampling_is_one_line(model_pts, tmp_path, capsys):
    model_pt, _ = model_pts["nb201"]  # its reduction's 2x2 pooling: a 1x1 image cannot go through
    code = export_main([str(model_pt), str(tmp_path / "m.pt"), "--format", "torchscript", "--input-shape", "3,1,1"])
    one_line(capsys, code, "--input-shape", "does not fit this model")


def test_a_bad_shape_in_the_run_config_is_one_line_naming_it(model_pts, tmp_path, capsys):
    model_pt, _ = model_pts["nb201"]
    run = tmp_path / "run" / "eval"
    run.mkdir(parents=True)
    copy = run / "model.pt"
    copy.write_bytes(model_pt.read_bytes())
    config = run / "config.yaml"
    for dataset, fragment in [
        ({"channels": 3, "image_size": -4}, "between 1 and"),
        ({"channels": 5, "image_size": 16}, "does not fit this model"),
        ({"channels": "three", "image_size": 16}, "dataset.channels must be an integer"),
    ]:
        config.write_text(yaml.safe_dump({"dataset": dataset}))
        code = export_main([str(copy), str(tmp_path / "m.onnx"), "--format", "onnx"])
        one_line(capsys, code, fragment)
    for text, fragment in [("- a list\n", "must hold a mapping"), ("a: [\n", "is not valid YAML")]:
        config.write_text(text)
        code = export_main([str(copy), str(tmp_path / "m.onnx"), "--format", "onnx"])
        one_line(capsys, code, str(config), fragment)
    config.unlink()
    config.mkdir()  # a directory named config.yaml
    one_line(capsys, export_main([str(copy), str(tmp_path / "m.onnx"), "--format", "onnx"]), "is a directory")


# ---- the model file --------------------------------------------------------------------------------------


class Payload:
    """What a hostile pickle would carry: an object whose loading runs code."""

    def __reduce__(self):
        return (print, ("pwned",))


def model_files(tmp_path):
    """(path, what its error must say) for every way a model file can be wrong."""
    directory = tmp_path / "x.pt"
    directory.mkdir()
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file at all")
    pickled = tmp_path / "pickled.pt"
    torch.save({"arch_format": "model_desc", "arch": Payload(), "state_dict": {}}, pickled)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    truncated = tmp_path / "truncated.pt"
    return [
        (directory, "is a directory"),
        (garbage, "not a model.pt archsearch can read"),
        (pickled, "pickled Python objects"),
        (foreign, "not an archsearch model file"),
        (truncated, "truncated"),
        (tmp_path / "missing.pt", "does not exist"),
        (garbage / "below_a_file.pt", "a part of the path is a file"),
    ]


def test_bad_model_files_are_one_line_saying_what_the_file_is(model_pts, tmp_path, capsys):
    cases = model_files(tmp_path)
    real, _ = model_pts["nb201"]
    (tmp_path / "truncated.pt").write_bytes(real.read_bytes()[:300])
    for path, fragment in cases:
        code = export_main([str(path), str(tmp_path / "out.onnx"), "--format", "onnx", "--input-shape", "3,16,16"])
        err = one_line(capsys, code, str(path), fragment)
        if fragment not in ("does not exist", "is a directory", "a part of the path is a file"):
            assert "eval phase" in err, err  # how to make a good one
        one_line(capsys, show_main([str(path), "--runs", "1"]), str(path), fragment)
    assert not (tmp_path / "out.onnx").exists()


def test_show_reads_json_through_the_guarded_reader(tmp_path, capsys):
    for name, text, fragment in [
        ("bad.json", "{", "is not valid JSON"),
        ("deep.json", "[" * 5000 + "]" * 5000, "nested too deeply"),
        ("latin.json", None, "not UTF-8"),
    ]:
        path = tmp_path / name
        path.write_bytes(b'{"a": "\xe9"}' if text is None else text.encode())
        one_line(capsys, show_main([str(path)]), str(path), fragment)
    folder = tmp_path / "arch.json"
    folder.mkdir()
    one_line(capsys, show_main([str(folder)]), str(folder), "is a directory")


def test_show_bad_input_shape_is_one_line(model_pts, capsys):
    model_pt, _ = model_pts["nb201"]
    for shape, fragment in [("0,0,0", "between 1 and"), ("5,16,16", "does not fit this model"), ("x", "three")]:
        one_line(capsys, show_main([str(model_pt), "--input-shape", shape, "--runs", "1"]), "--input-shape", fragment)


def test_through_the_real_cli_a_bad_out_is_one_line_without_traceback(model_pts, tmp_path):
    model_pt, _ = model_pts["nb201"]
    proc = archsearch("export", str(model_pt), str(tmp_path), "--format", "onnx", "--input-shape", "3,16,16")
    assert_user_error(proc, str(tmp_path), "is a directory")
    proc = archsearch("show", str(tmp_path), "--runs", "1")
    assert_user_error(proc, str(tmp_path), "is a directory")


# ---- a successful export is quiet ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_a_successful_export_prints_no_tracer_warnings(fmt, model_pts, tmp_path):
    model_pt, shape = model_pts["darts"]  # DARTS' factorized reduce branches on a shape while tracing
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_model(model_pt, fmt, tmp_path / f"m.{fmt}", input_shape=shape)
    tracer = [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    assert tracer == [], [str(w.message) for w in tracer]
    # the filter is scoped to the tracing call: the process's own warning filters are as they were
    with warnings.catch_warnings(record=True) as after:
        warnings.simplefilter("default")
        warnings.warn("still shown", torch.jit.TracerWarning, stacklevel=1)
    assert len(after) == 1


def test_the_real_cli_export_prints_only_the_written_file(model_pts, tmp_path):
    model_pt, _ = model_pts["darts"]
    out = tmp_path / "m.onnx"
    proc = archsearch("export", str(model_pt), str(out), "--format", "onnx", "--input-shape", "3,16,16")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == str(out) and "TracerWarning" not in proc.stderr, proc.stderr[-2000:]
