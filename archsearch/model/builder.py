"""ModelDescBuilder: config (+ cell templates) -> ModelDesc for the DARTS-style network skeletons.

`model_desc.skeleton: cifar` (the default) follows the original DARTS NetworkCIFAR: one 3x3 stem conv to
stem_multiplier*C channels; cells that take the two previous states, preprocess them with ReLU-conv1x1-BN
(or a factorized reduce when the state before was made by a reduction cell); reduction cells at 1/3 and
2/3 depth double the channels; the auxiliary tower sits after the 2/3-depth cell; then global pooling and
a linear layer.

`skeleton: imagenet` is the original NetworkImageNet (the DARTS paper's mobile setting): stem0 = conv3x3
stride 2 to C/2, BN, ReLU, conv3x3 stride 2 to C, BN; stem1 = ReLU, conv3x3 stride 2, BN (224 -> 28 before
the first cell); the first cell reads stem0's and stem1's outputs and, as stem1 halved the map, reduces
its first input (reduction_prev); the ImageNet auxiliary head; global average pooling (the original's
AvgPool2d(7), the same at 224x224). stem_multiplier is not used.

Every step is a method so an algorithm overrides only what differs (DARTS overrides `build_nodes`).
`scale()` is the pure ModelDesc -> ModelDesc function evaluation uses to widen and deepen a found cell.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from archsearch.common.errors import ArchitectureError
from archsearch.common.readers import MAX_ARCH_BYTES, read_text
from archsearch.model.genotype import CellTemplate, templates_to_genotype
from archsearch.model.model_desc import AuxTowerDesc, CellDesc, EdgeDesc, ModelDesc, NodeDesc, OpDesc


class ModelDescBuilder:
    def __init__(
        self,
        conf_model_desc: Mapping,
        conf_dataset: Mapping,
        templates: dict[str, CellTemplate] | None = None,
    ) -> None:
        self.conf = conf_model_desc
        self.conf_dataset = conf_dataset
        self.templates = templates or {}
        self.affine: bool = conf_model_desc["affine"]

    # ---- the whole network ---------------------------------------------------------------------
    @property
    def skeleton(self) -> str:
        """cifar or imagenet; cifar when the conf does not name one (a hand-built mapping of the older keys:
        every shipped config sets it, in confs/common.yaml)."""
        return self.conf["skeleton"] if "skeleton" in self.conf else "cifar"  # noqa: SIM401 - Config.get raises

    def build(self, meta: dict | None = None) -> ModelDesc:
        n_cells: int = self.conf["n_cells"]
        c: int = self.conf["init_channels"]
        ch_in: int = self.conf_dataset["channels"]
        n_classes: int = self.conf_dataset["n_classes"]
        stems = self.build_stems(ch_in, c)
        ch_states = [stems[-2].ch_out if len(stems) > 1 else stems[-1].ch_out, stems[-1].ch_out]
        reductions = self.reduction_indices(n_cells)
        cells: list[CellDesc] = []
        c_node = c
        aux_tower = None
        for index in range(n_cells):
            reduction = index in reductions
            if reduction:
                c_node *= 2
            # ImageNet's first cell: stem1 halved the map, so the cell's first input is reduced to match
            reduction_prev = cells[-1].cell_type == "reduction" if cells else self.skeleton == "imagenet"
            cell = self.build_cell(index, "reduction" if reduction else "regular", ch_states, c_node, reduction_prev)
            cells.append(cell)
            ch_states.append(cell.c_out)
            if index == self.aux_tower_index(n_cells) and self.conf["aux_weight"] > 0:
                aux_tower = AuxTowerDesc(cell.c_out, n_classes, float(self.conf["aux_weight"]), index, self.skeleton)
        pool_op, logits_op = self.build_head(ch_states[-1], n_classes)
        return ModelDesc(ch_in, n_classes, stems, cells, pool_op, logits_op, aux_tower, dict(meta or {}))

    def with_templates(self, templates: dict[str, CellTemplate]) -> ModelDescBuilder:
        return type(self)(self.conf, self.conf_dataset, templates)

    def scale(self, found: ModelDesc) -> ModelDesc:
        """Rebuild `found`'s cells at this builder's size (cells, channels, aux tower)."""
        return self.with_templates(templates_from_desc(found)).build(meta=copy.deepcopy(found.meta))

    # ---- the seams -----------------------------------------------------------------------------
    def reduction_indices(self, n_cells: int) -> list[int]:
        n_reductions = self.conf["n_reductions"]
        return sorted({n_cells * k // (n_reductions + 1) for k in range(1, n_reductions + 1)})

    def aux_tower_index(self, n_cells: int) -> int:
        return 2 * n_cells // 3

    def build_stems(self, ch_in: int, c: int) -> list[OpDesc]:
        if self.skeleton == "imagenet":
            return [OpDesc.of("stem_imagenet", ch_in, c), OpDesc.of("conv_3x3", c, c, stride=2)]
        if self.skeleton != "cifar":
            raise ArchitectureError(f"model_desc.skeleton {self.skeleton!r} is not one of cifar, imagenet")
        return [OpDesc.of("stem_conv3x3", ch_in, self.conf["stem_multiplier"] * c)]

    def build_cell(
        self, index: int, cell_type: str, ch_states: list[int], c_node: int, reduction_prev: bool
    ) -> CellDesc:
        stems = self.build_cell_stems(ch_states[-2], ch_states[-1], c_node, reduction_prev)
        nodes, concat = self.build_nodes(index, cell_type, c_node)
        return CellDesc(cell_type, [-2, -1], stems, nodes, concat, c_node)

    def build_cell_stems(self, ch_s0: int, ch_s1: int, c_node: int, reduction_prev: bool) -> list[OpDesc]:
        s0 = "factorized_reduce" if reduction_prev else "relu_conv_bn_1x1"
        return [
            OpDesc.of(s0, ch_s0, c_node, affine=self.affine),
            OpDesc.of("relu_conv_bn_1x1", ch_s1, c_node, affine=self.affine),
        ]

    def build_nodes(self, index: int, cell_type: str, c_node: int) -> tuple[list[NodeDesc], list[int]]:
        """Nodes from the template of this cell type; ops reading a cell input stride in reduction cells."""
        template = self.templates.get(cell_type)
        if template is None:
            raise ArchitectureError(
                f"no {cell_type} cell template: give a genotype or desc, or use an algorithm that builds cells"
            )
        nodes = []
        for node in template.nodes:
            edges = []
            for op_name, input_id in node:
                stride = 2 if cell_type == "reduction" and input_id < template.n_inputs else 1
                edges.append(EdgeDesc(OpDesc.of(op_name, c_node, c_node, stride, affine=self.affine), input_id))
            nodes.append(NodeDesc(edges))
        return nodes, list(template.concat)

    def build_head(self, ch: int, n_classes: int) -> tuple[OpDesc, OpDesc]:
        return OpDesc.of("global_avg_pool", ch, ch), OpDesc.of("linear", ch, n_classes)


def templates_from_desc(desc: ModelDesc) -> dict[str, CellTemplate]:
    """The node structure of the first cell of each type (cells of a type share their structure)."""
    templates: dict[str, CellTemplate] = {}
    for cell in desc.cells:
        if cell.cell_type in templates:
            continue
        for node in cell.nodes:
            for edge in node.edges:
                if edge.op.params.get("candidates"):
                    raise ArchitectureError(
                        f"desc still holds searchable op {edge.op.name!r}; finalize it before evaluation"
                    )
        templates[cell.cell_type] = CellTemplate(
            nodes=[[(e.op.name, e.input_id) for e in node.edges] for node in cell.nodes],
            concat=list(cell.concat),
            n_inputs=cell.n_inputs,
        )
    if "regular" not in templates:
        raise ArchitectureError(
            "desc has no regular cell to take the cell structure from (with n_reductions=2, use n_cells >= 3)"
        )
    templates.setdefault("reduction", templates["regular"])
    return templates


def desc_genotype(desc: ModelDesc) -> str:
    """The DARTS notation of a desc's cells, for logs."""
    return str(templates_to_genotype(templates_from_desc(desc)))


class ScalingBuilder(Protocol):
    def scale(self, found: ModelDesc) -> ModelDesc: ...


def refuse_foreign_architecture(path: Path) -> None:
    """A one-line error when `path` is a JSON architecture of another kind than a ModelDesc (a user model's
    final_arch.json, a morphism graph), instead of a ModelDesc parser's complaint about unknown fields."""
    text = read_text(path, "architecture file", ArchitectureError, max_bytes=MAX_ARCH_BYTES)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return  # not JSON: the ModelDesc loader reports what is wrong with it
    if isinstance(data, dict) and data.get("format") == "user_model_json" and isinstance(data.get("model"), str):
        raise ArchitectureError(
            f"{path} is an architecture of user model {data['model']!r}; evaluate it with "
            f"--nas.search.space.model {data['model']} if you trust that code"
        )
    if isinstance(data, dict) and {"layer_id_to_input_node_ids", "operation_history"} <= set(data):
        raise ArchitectureError(f"{path} is a network-morphism graph; evaluate it with --algos morphism")


def scaled_eval_model(builder: ScalingBuilder, final_arch: Path, eval_dir: Path | None):
    """The evaluation network of a found desc file: `builder.scale` (a pure desc -> desc function) to the
    eval size, written to eval_dir/model_desc.yaml, compiled (an evaluater BuiltModel)."""
    from archsearch.model.load import BuiltModel
    from archsearch.model.network import Model

    refuse_foreign_architecture(final_arch)
    desc = builder.scale(ModelDesc.load(final_arch))
    if eval_dir is not None:
        desc.save(eval_dir / "model_desc.yaml")
    return BuiltModel(Model(desc), "model_desc", desc.to_yaml())
