"""The architecture pictures, as each space draws its own (SearchSpace.pictures / arch_pictures) and the report
renders them: igraph's layered layout gives every node its own place (no two boxes of a DARTS cell overlap),
every op of the genotype is drawn as a labelled edge, and the PNG decodes."""

from __future__ import annotations

import itertools
import json

import matplotlib.image
import pytest

from archsearch.model.genotype import DARTS_V2, NASNET, format_genotype
from archsearch.report import drawing
from archsearch.spaces.darts_cells import DartsCellSpace
from archsearch.spaces.enas import macro_picture
from archsearch.spaces.morphism.space import MorphismSpace
from archsearch.spaces.nasbench201 import NasBench201Space
from tests.report.conftest import MORPH_JSON


def boxes_overlap(dag: drawing.Dag) -> list[tuple[str, str]]:
    pos, _ = drawing.layout(dag)
    halves = [drawing._box_half(label, 9) for label, _ in dag.nodes]
    clashes = []
    for i, j in itertools.combinations(range(len(dag.nodes)), 2):
        (xi, yi), (xj, yj) = pos[i], pos[j]
        if abs(xi - xj) < halves[i][0] + halves[j][0] and abs(yi - yj) < halves[i][1] + halves[j][1]:
            clashes.append((dag.nodes[i][0], dag.nodes[j][0]))
    return clashes


@pytest.mark.parametrize("genotype", [DARTS_V2, NASNET], ids=["darts_v2", "nasnet"])
def test_darts_cells_have_no_overlapping_nodes_and_every_op_labelled(genotype):
    dags = DartsCellSpace.arch_pictures(format_genotype(genotype))
    assert [d.title.split()[0] for d in dags] == ["normal", "reduction"]
    for dag, edges in zip(dags, (genotype.normal, genotype.reduce), strict=True):
        assert not boxes_overlap(dag), dag.title
        drawn = sorted(op for _, _, op in dag.edges if op is not None)
        assert drawn == sorted(op for op, _ in edges)  # one labelled edge per genotype op, none lost
        assert sum(op is None for _, _, op in dag.edges) == len(
            genotype.normal_concat if dag is dags[0] else genotype.reduce_concat
        )  # the output's concatenation


def test_nb201_cell_leaves_out_none_edges_and_says_so():
    cell = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|"
    (dag,) = NasBench201Space.arch_pictures(cell)
    assert sorted(op for _, _, op in dag.edges) == ["avg_pool_3x3", "nor_conv_1x1", "nor_conv_3x3", "skip_connect"]
    assert "2 'none' edges" in dag.note and not boxes_overlap(dag)
    assert [role for _, role in dag.nodes] == ["input", "inner", "inner", "output"]


def test_macro_chain_and_morphism_graph_draw_to_png(tmp_path):
    macro = macro_picture(["conv_3x3", "sep_conv_5x5", "max_pool_3x3"], [[], [0], [0, 1]])
    assert (0, 2, "skip") in macro.edges and (0, 3, "skip") in macro.edges and (1, 3, "skip") in macro.edges
    (morph,) = MorphismSpace.pictures(json.loads(MORPH_JSON.read_text()))
    assert not boxes_overlap(morph) and morph.vertical
    path = tmp_path / "picture.png"
    path.write_bytes(drawing.png_bytes(drawing.figure_of([macro])))
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 100 and image.shape[1] > 300 and image.std() > 0.05  # drawn, not blank
