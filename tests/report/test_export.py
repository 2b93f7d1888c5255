"""Every export format gives the original model's logits (within 1e-4) for every architecture kind, and
the standalone python file runs in a process where archsearch cannot be imported."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import archsearch
from archsearch.common.errors import UserError
from archsearch.report.export import export_main, export_model
from tests.report.conftest import KINDS, USER_MODEL

TOL = 1e-4
# -I drops PYTHONPATH and the cwd, but the venv's editable install still puts the repository on sys.path:
# (a .pth entry or an editable finder): drop both, then put the export folder (the cwd) first
BOOT = (
    "import os, sys; sys.path[:] = ['.'] + [p for p in sys.path if p and "
    "not os.path.exists(os.path.join(p, 'archsearch'))]; "
    "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]; exec(sys.stdin.read())"
)


def _reference(path, shape, batch: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    model = archsearch.load_model(path, model=USER_MODEL)
    x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return x, model(x)


@pytest.mark.parametrize("kind", KINDS)
def test_onnx_matches(kind, model_pts, tmp_path):
    import onnxruntime as ort

    path, shape = model_pts[kind]
    (onnx_file,) = export_model(path, "onnx", tmp_path / "m.onnx", model=USER_MODEL, input_shape=shape)
    x, expected = _reference(path, shape)  # batch 3, not the export's 2: the batch axis is dynamic
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x.numpy()})
    np.testing.assert_allclose(got, expected.numpy(), atol=TOL, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_torchscript_matches(kind, model_pts, tmp_path):
    path, shape = model_pts[kind]
    (ts_file,) = export_model(path, "torchscript", tmp_path / "m.ts", model=USER_MODEL, input_shape=shape)
    x, expected = _reference(path, shape)
    got = torch.jit.load(str(ts_file))(x)
    torch.testing.assert_close(got, expected, atol=TOL, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_standalone_python_matches_without_archsearch(kind, model_pts, tmp_path):
    path, shape = model_pts[kind]
    py_file, weights = export_model(path, "python", tmp_path / "net.py", model=USER_MODEL, input_shape=shape)
    text = py_file.read_text()
    assert "import archsearch" not in text and "from archsearch" not in text
    x, expected = _reference(path, shape)
    torch.save(x, tmp_path / "x.pt")
    script = (
        "import json, sys, torch\n"
        "try:\n    import archsearch\n    sys.exit('archsearch is importable')\nexcept ImportError:\n    pass\n"
        "from net import ExportedNet\n"
        "net = ExportedNet(); net.load_state_dict(torch.load('net.pt', weights_only=True)); net.eval()\n"
        "with torch.no_grad():\n    y = net(torch.load('x.pt'))\n"
        "torch.save(y, 'y.pt'); print(json.dumps(list(y.shape)))\n"
    )
    # -I: isolated mode, no PYTHONPATH, no user site, no script dir; the cwd is put back explicitly
    proc = subprocess.run(
        [sys.executable, "-I", "-c", BOOT],
        input=script,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == list(expected.shape)
    torch.testing.assert_close(torch.load(tmp_path / "y.pt"), expected, atol=TOL, rtol=0)


def test_unknown_format_and_missing_file_are_one_line(model_pts, tmp_path, capsys):
    with pytest.raises(UserError, match="unknown export format"):
        export_model(model_pts["nb201"][0], "tflite", tmp_path / "x")
    assert export_main([str(tmp_path / "nope.pt"), str(tmp_path / "o"), "--format", "onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not exist" in err


def test_user_model_is_not_imported_unless_allowed(model_pts, tmp_path, capsys):
    assert export_main([str(model_pts["user"][0]), str(tmp_path / "o.onnx"), "--format", "onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "names user code" in err


def test_cli_writes_the_files(model_pts, tmp_path, capsys):
    out = tmp_path / "n.py"
    code = export_main([str(model_pts["nb201"][0]), str(out), "--format", "python", "--input-shape", "3,16,16"])
    assert code == 0 and out.is_file() and out.with_suffix(".pt").is_file()
