"""The ONNX opset comes from the run's config (`export.onnx_opset`), and --opset overrides it."""

from __future__ import annotations

import onnx
import yaml

from archsearch.report.export import export_main


def test_onnx_opset_from_the_run_config_and_the_cli_override(model_pts, tmp_path):
    model_pt, _ = model_pts["nb201"]
    (model_pt.parent / "config.yaml").write_text(yaml.safe_dump({"export": {"onnx_opset": 14}}))
    try:
        assert export_main([str(model_pt), str(tmp_path / "a.onnx"), "--format", "onnx"]) == 0
        assert export_main([str(model_pt), str(tmp_path / "b.onnx"), "--format", "onnx", "--opset", "16"]) == 0
    finally:
        (model_pt.parent / "config.yaml").unlink()  # the session's model files are shared by other tests

    def opset(name: str) -> int:
        return next(o.version for o in onnx.load(str(tmp_path / name)).opset_import if o.domain in ("", "ai.onnx"))

    assert opset("a.onnx") == 14 and opset("b.onnx") == 16


def test_an_opset_the_exporter_cannot_write_is_one_line(model_pts, tmp_path, capsys):
    model_pt, _ = model_pts["nb201"]
    assert export_main([str(model_pt), str(tmp_path / "c.onnx"), "--format", "onnx", "--opset", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --opset 3: the ONNX exporter writes opsets 7 to 20; pass one of those"
    assert not (tmp_path / "c.onnx").exists()
