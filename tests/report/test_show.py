"""show: parameters equal count_params, latency at both batch sizes, and a decodable cell PNG."""

from __future__ import annotations

import matplotlib.image

import archsearch
from archsearch.model.network import count_params
from archsearch.report.show import render, show, show_main


def test_show_a_darts_model_pt(model_pts, tmp_path):
    path, shape = model_pts["darts"]
    info = show(path, input_shape=shape, runs=2, warmup=1, picture=tmp_path / "cells.png", device="cpu")
    assert info["params"] == count_params(archsearch.load_model(path))
    assert set(info["latency_ms"]) == {1, 64} and all(v > 0 for v in info["latency_ms"].values())
    image = matplotlib.image.imread(info["cells_png"])
    assert image.shape[0] > 0 and image.shape[1] > 0
    assert "parameters" in render(info)


def test_show_cli_is_one_line_on_a_missing_file(tmp_path, capsys):
    assert show_main([str(tmp_path / "nope.yaml")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
