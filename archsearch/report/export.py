"""Export a trained eval/model.pt so it runs without archsearch: ONNX, TorchScript, or a standalone .py file.

The `python` format writes a plain nn.Module that imports only torch. Its forward is the graph torch.export
captures (aten ops, a dynamic batch axis), not archsearch's module classes, because several of those have
Python control flow on shapes (DARTS' factorized reduce, ENAS' macro layers) that torch.fx cannot trace but
torch.export resolves for the example input's spatial size. Parameters and buffers keep their original
qualified names, so the exported `state_dict` file reads like the original model's.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click
import torch
from torch import nn

from archsearch.common.errors import UserError
from archsearch.config.schema import ONNX_OPSETS

FORMATS = ("onnx", "torchscript", "python")
DEFAULT_IMAGE_SIZE = 32  # CIFAR-size, what every archsearch space is built for when a file does not say


# ---- the example input -------------------------------------------------------------------------------


def _config_shape(model_pt: Path) -> tuple[int, int, int] | None:
    """(C, H, W) from the run's config.yaml (EXP/eval/model.pt -> EXP/config.yaml), where the run wrote one."""
    import yaml

    for folder in (model_pt.parent, model_pt.parent.parent):
        path = folder / "config.yaml"
        if path.is_file():
            dataset = (yaml.safe_load(path.read_text()) or {}).get("dataset", {})
            if "channels" in dataset and "image_size" in dataset:
                return int(dataset["channels"]), int(dataset["image_size"]), int(dataset["image_size"])
    return None


def arch_input_shape(arch_format: str, arch_text: str) -> tuple[int, int, int] | None:
    """(C, H, W) the architecture text itself implies, or None when it names only the channels or nothing."""
    if arch_format == "morphism_graph_json":
        h, w, c = json.loads(arch_text)["input_shape"]  # NNI's graphs are channels last
        return int(c), int(h), int(w)
    if arch_format == "model_desc":
        from archsearch.model.model_desc import ModelDesc

        return ModelDesc.from_yaml(arch_text, "model.pt").ch_in, DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE
    return None


def input_shape_of(model_pt: Path, given: tuple[int, int, int] | None = None) -> tuple[int, int, int]:
    """The (C, H, W) of one image for `model_pt`: as given, else the run's config, else the architecture."""
    if given is not None:
        return tuple(int(v) for v in given)  # type: ignore[return-value]
    found = _config_shape(model_pt)
    if found is not None:
        return found
    from archsearch.common.checkpoint import load_checkpoint

    state = load_checkpoint(model_pt)
    found = arch_input_shape(str(state.get("arch_format", "")), str(state.get("arch", "")))
    if found is None:
        raise UserError(f"{model_pt}: cannot tell the input size of this model; pass --input-shape C,H,W")
    return found


# ---- the formats ---------------------------------------------------------------------------------------


def _export_onnx(model: nn.Module, example: torch.Tensor, out: Path, opset: int) -> list[Path]:
    try:
        import onnx  # noqa: F401 - torch.onnx needs it; fail here with the fix rather than deep inside torch
    except ImportError:
        raise UserError("ONNX export needs the onnx package: pip install 'archsearch[export]'") from None
    low, high = ONNX_OPSETS
    if not low <= opset <= high:  # torch raises a many-line RuntimeError from deep inside the exporter
        raise UserError(f"--opset {opset}: the ONNX exporter writes opsets {low} to {high}; pass one of those")
    out.parent.mkdir(parents=True, exist_ok=True)
    # the TorchScript-based exporter (dynamo=False): it needs no onnxscript and handles every model kind
    torch.onnx.export(
        model,
        (example,),
        str(out),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=opset,
        dynamo=False,
    )
    return [out]


def _export_torchscript(model: nn.Module, example: torch.Tensor, out: Path) -> list[Path]:
    # trace, not script: archsearch's modules use Python (dicts of ops, registries) that scripting rejects;
    # tracing records the ops for the example's spatial size and keeps the batch size symbolic
    out.parent.mkdir(parents=True, exist_ok=True)
    traced = torch.jit.trace(model, (example,), check_trace=False)
    traced.save(str(out))
    return [out]


_GLOBAL_IMPORTS = {  # what fx code generation may name beyond `torch`, and the line that provides it
    "inf": "from math import inf",
    "nan": "from math import nan",
    "device": "from torch import device",
    "NoneType": "NoneType = type(None)",
}


def python_source(model: nn.Module, example: torch.Tensor, class_name: str = "ExportedNet") -> tuple[str, dict]:
    """The source of a torch-only module reproducing `model` and the plain tensor dict it loads."""
    from torch.export import Dim, export
    from torch.export.graph_signature import InputKind, OutputKind

    try:
        program = export(model, (example,), dynamic_shapes=({0: Dim("batch", min=1, max=65536)},), strict=False)
    except Exception as err:  # torch's messages are many lines; the user needs to know which format failed
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot export this model as standalone python (torch.export failed: {first})") from None
    signature = program.graph_signature
    if any(spec.kind != OutputKind.USER_OUTPUT for spec in signature.output_specs):
        raise UserError("cannot export this model as standalone python: its forward mutates its buffers")
    tensors: dict[str, torch.Tensor] = {}
    params: list[str] = []
    buffers: list[str] = []
    order: list[str] = []  # the graph's inputs before the image, as state_dict keys
    user_inputs = 0
    state = program.state_dict
    for spec in signature.input_specs:
        if spec.kind == InputKind.USER_INPUT:
            user_inputs += 1
            continue
        target = spec.target
        if spec.kind == InputKind.PARAMETER:
            params.append(target)
            tensors[target] = state[target].detach().clone()
        elif spec.kind == InputKind.BUFFER:
            buffers.append(target)
            tensors[target] = (state[target] if target in state else program.constants[target]).detach().clone()
        elif spec.kind == InputKind.CONSTANT_TENSOR:
            buffers.append(target)  # tensors the forward creates, lifted by torch.export; kept as buffers
            tensors[target] = program.constants[target].detach().clone()
        else:
            raise UserError(f"cannot export this model as standalone python: input kind {spec.kind.name}")
        order.append(target)
    if user_inputs != 1:
        raise UserError(f"cannot export this model as standalone python: it takes {user_inputs} inputs, not 1")
    graph = program.graph_module.graph
    graph.set_codegen(torch.fx.graph.CodeGen())  # plain arguments and return, not pytree (un)flattening
    code = graph.python_code(root_module="self")
    imports = set()
    for name in code.globals:
        # fx lists its default globals whether or not the code uses them; only the used ones matter
        if name in ("torch", "builtins") or not re.search(rf"\b{re.escape(name)}\b", code.src):
            continue
        if name not in _GLOBAL_IMPORTS:
            raise UserError(f"cannot export this model as standalone python: its graph names {name!r}")
        imports.add(_GLOBAL_IMPORTS[name])
    body = code.src.replace("def forward(self,", "def _graph(self,", 1)
    lines = [
        f'"""{class_name}: a standalone copy of an archsearch model (generated by `archsearch export`).',
        "",
        "It imports only torch. Load its weights with:",
        f"    net = {class_name}(); net.load_state_dict(torch.load(STATE_DICT_PATH)); net.eval()",
        f'The input is a batch of {tuple(example.shape[1:])} images (any batch size)."""',
        "",
        "import torch",
        "from torch import nn",
        *sorted(imports),
        "",
        f"INPUT_SHAPE = {tuple(example.shape[1:])!r}",
        f"PARAMETERS = {json.dumps({k: list(tensors[k].shape) for k in params})}",
        f"BUFFERS = {json.dumps({k: [list(tensors[k].shape), str(tensors[k].dtype)] for k in buffers})}",
        f"GRAPH_INPUTS = {json.dumps(order)}",
        "",
        "",
        "def _owner(root: nn.Module, qualified: str) -> tuple[nn.Module, str]:",
        '    """The submodule holding `qualified` ("cells.0.w"), created on the way, and the attribute name."""',
        '    *path, leaf = qualified.split(".")',
        "    module = root",
        "    for part in path:",
        "        if part not in module._modules:",
        "            module.add_module(part, nn.Module())",
        "        module = module._modules[part]",
        "    return module, leaf",
        "",
        "",
        "# The traced graph (aten ops); its arguments are the tensors of GRAPH_INPUTS in order, then the image.",
        body.strip(),
        "",
        "",
        f"class {class_name}(nn.Module):",
        "    def __init__(self) -> None:",
        "        super().__init__()",
        "        # empty tensors of the right shape and the original names; load_state_dict fills them",
        "        for name, shape in PARAMETERS.items():",
        "            owner, leaf = _owner(self, name)",
        "            owner.register_parameter(leaf, nn.Parameter(torch.empty(shape)))",
        "        for name, (shape, dtype) in BUFFERS.items():",
        "            owner, leaf = _owner(self, name)",
        '            owner.register_buffer(leaf, torch.empty(shape, dtype=getattr(torch, dtype.split(".")[-1])))',
        "        self._names = GRAPH_INPUTS",
        "",
        "    def _tensor(self, qualified: str) -> torch.Tensor:",
        "        owner, leaf = _owner(self, qualified)",
        "        return getattr(owner, leaf)",
        "",
        "    def forward(self, x: torch.Tensor) -> torch.Tensor:",
        "        out = _graph(self, *[self._tensor(n) for n in self._names], x)",
        "        return out[0] if isinstance(out, (tuple, list)) else out",
        "",
    ]
    return "\n".join(lines), tensors


def _export_python(model: nn.Module, example: torch.Tensor, out: Path) -> list[Path]:
    source, tensors = python_source(model, example)
    out = out if out.suffix == ".py" else out / "model.py"
    if not out.stem.isidentifier():  # the user imports it by its name
        raise UserError(f"{out}: the file name must be a Python identifier to import it (e.g. net.py)")
    out.parent.mkdir(parents=True, exist_ok=True)
    weights = out.with_suffix(".pt")
    out.write_text(source)
    torch.save(tensors, weights)  # a plain dict of tensors: torch.load(weights_only=True) reads it
    return [out, weights]


def configured_opset(model_pt: Path) -> int:
    """The ONNX opset of `export.onnx_opset`: the run's config.yaml beside EXP/eval/model.pt when it has the
    key, else the shipped default (confs/common.yaml), so a run's own choice travels with its folder."""
    import yaml

    for folder in (model_pt.parent, model_pt.parent.parent):
        path = folder / "config.yaml"
        if path.is_file():
            opset = ((yaml.safe_load(path.read_text()) or {}).get("export") or {}).get("onnx_opset")
            if opset is not None:
                return int(opset)
    from archsearch.config import confs_dir, load_yaml_with_includes

    return int(load_yaml_with_includes(confs_dir() / "common.yaml")["export"]["onnx_opset"])


def export_model(
    model_pt: Path,
    fmt: str,
    out: Path,
    opset: int | None = None,
    *,
    model: str | None = None,
    trust_code: bool = False,
    input_shape: tuple[int, int, int] | None = None,
) -> list[Path]:
    """Write eval/model.pt as `fmt` (onnx | torchscript | python) at `out`; returns the files written.

    `model` / `trust_code` go to archsearch.load_model unchanged: a user model's class is imported only when
    the caller allowed it. `input_shape` (C, H, W) defaults to the run's config, then to the architecture;
    `opset` (ONNX) to `export.onnx_opset` of the run's config, then the shipped default."""
    from archsearch.plugins import load_model

    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    model_pt, out = Path(model_pt).expanduser(), Path(out).expanduser()
    if not model_pt.is_file():
        raise UserError(f"{model_pt} does not exist (expected an eval/model.pt)")
    net = load_model(model_pt, model=model, trust_code=trust_code).eval()
    shape = input_shape_of(model_pt, input_shape)
    example = torch.randn(2, *shape)  # batch 2, not 1: a size-1 axis would be specialised as a constant
    with torch.no_grad():
        if fmt == "onnx":
            return _export_onnx(net, example, out, opset if opset is not None else configured_opset(model_pt))
        if fmt == "torchscript":
            return _export_torchscript(net, example, out)
        return _export_python(net, example, out)


# ---- the CLI -------------------------------------------------------------------------------------------


def parse_shape(text: str | None) -> tuple[int, int, int] | None:
    if text is None:
        return None
    try:
        c, h, w = (int(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"--input-shape {text!r}: expected C,H,W such as 3,32,32") from None
    return c, h, w


@click.command(name="export", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("path", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True, help="What to write.")
@click.option("--opset", type=int, default=None, help="ONNX opset (default: export.onnx_opset of the run's config).")
@click.option("--input-shape", default=None, help="C,H,W of one image (default: the run's config).")
@click.option("--model", default=None, help="The user model class (package.module:Class) the file may import.")
@click.option("--trust-code", is_flag=True, help="Let the file import whatever user code it names.")
def _export_cli(
    path: Path, out: Path, fmt: str, opset: int | None, input_shape: str | None, model: str | None, trust_code: bool
) -> None:
    """Export eval/model.pt PATH to OUT so it runs without archsearch."""
    written = export_model(
        path, fmt, out, opset, model=model, trust_code=trust_code, input_shape=parse_shape(input_shape)
    )
    for p in written:
        click.echo(str(p))


def run_click(command: click.Command, argv: list[str]) -> int:
    """Run a click command as `main(argv) -> int`: a UserError is one line on stderr and status 2."""
    try:
        command.main(args=list(argv), prog_name=f"archsearch {command.name}", standalone_mode=False)
    except UserError as err:
        click.echo(f"error: {err}", err=True)
        return 2
    except click.exceptions.Exit as done:
        return int(done.exit_code or 0)
    except click.ClickException as err:
        err.show()
        return 2
    except click.exceptions.Abort:
        return 130
    return 0


def export_main(argv: list[str]) -> int:
    """`archsearch export PATH --format onnx|torchscript|python OUT`."""
    return run_click(_export_cli, argv)


if __name__ == "__main__":
    sys.exit(export_main(sys.argv[1:]))
