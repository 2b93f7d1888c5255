"""Export a trained eval/model.pt so it runs without archsearch: ONNX, TorchScript, or a standalone .py file.

The `python` format writes a plain nn.Module that imports only torch. Its forward is the graph torch.export
captures (aten ops, a dynamic batch axis), not archsearch's module classes, because several of those have
Python control flow on shapes (DARTS' factorized reduce, ENAS' macro layers) that torch.fx cannot trace but
torch.export resolves for the example input's spatial size. Parameters and buffers keep their original
qualified names, so the exported `state_dict` file reads like the original model's.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import tempfile
import warnings
from pathlib import Path

import click
import torch
from torch import nn

from archsearch.common import readers
from archsearch.common.errors import ArchitectureError, CheckpointError, UserError
from archsearch.common.readers import read_yaml
from archsearch.config.schema import ONNX_OPSETS

FORMATS = ("onnx", "torchscript", "python")
DEFAULT_IMAGE_SIZE = 32  # CIFAR-size, what every archsearch space is built for when a file does not say
MAX_SIDE = 4096  # the largest C, H or W taken for an example input (batch 2 of 4096x4096x3 is ~400 MB)
MAKE_MODEL = "a model.pt is written by a run's eval phase (EXP/<algo>/eval/model.pt; archsearch --eval-only)"


class ExportError(UserError):
    """A model file, an output path or an input shape export/show cannot use."""


# ---- the model file ------------------------------------------------------------------------------------


def check_model_file(path: Path, what: str = "model file") -> Path:
    """`path` as a readable regular file, or one line saying what it is instead (missing, a directory, ...)."""
    path = Path(path).expanduser()
    fix = "give a model.pt (the one inside a run's eval folder)"
    readers.check_regular_file(path, what, ExportError, fix=fix, missing=MAKE_MODEL)
    return path


def model_file_error(path: Path, err: UserError) -> ExportError:
    """A load error of `path` said for someone reading a model, not resuming a run: what the file is and how
    to make a good one. The low-level message (common/checkpoint.py) advises a resume and, for a pickle that
    would run code, can carry torch's advice to load it with weights_only=False, which is never repeated."""
    text = str(err)
    for prefix in (f"{path}: ", f"{path} "):
        text = text.removeprefix(prefix)
    for advice in ("; delete it, or rerun without --common.resume", "; rerun without --common.resume"):
        text = text.split(advice)[0]
    lowered = text.lower()
    if "beyond tensors" in lowered:  # checkpoint.py's word for torch's refusal of a pickle of other objects
        text = "holds pickled Python objects, which archsearch never loads (loading them could run any code)"
    elif "weights_only" in lowered or "weights only" in lowered or "cannot be read" in lowered:
        text = "is not a model.pt archsearch can read (not a torch file, truncated, or foreign objects)"
    return ExportError(f"{path}: {text}; {MAKE_MODEL}")


def load_net(model_pt: Path, model: str | None, trust_code: bool) -> nn.Module:
    """archsearch.load_model with every way the file can be bad as one line about the model file."""
    from archsearch.plugins import load_model

    model_pt = check_model_file(model_pt)
    try:
        return load_model(model_pt, model=model, trust_code=trust_code).eval()
    except CheckpointError as err:
        raise model_file_error(model_pt, err) from None
    except ArchitectureError as err:
        if "not an archsearch model file" in str(err):  # a torch file of something else: say how to make one
            raise ExportError(f"{err}; {MAKE_MODEL}") from None
        raise
    except (RuntimeError, KeyError, TypeError, ValueError) as err:  # weights that do not fit the architecture
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ExportError(f"{model_pt}: its weights do not fit its architecture ({first}); {MAKE_MODEL}") from None


def load_state(model_pt: Path) -> dict:
    from archsearch.common.checkpoint import load_checkpoint

    try:
        return load_checkpoint(model_pt)
    except CheckpointError as err:
        raise model_file_error(model_pt, err) from None


# ---- the example input -------------------------------------------------------------------------------


def _run_configs(model_pt: Path):
    """(path, mapping) of the run's config.yaml beside EXP/eval/model.pt or above it, read through the guarded
    reader (a directory, a FIFO, bad YAML or a list is one line naming it)."""
    for folder in (model_pt.parent, model_pt.parent.parent):
        path = folder / "config.yaml"
        if path.exists():
            yield path, read_yaml(path, "run config", ExportError, expect=dict, empty={})


def _section(config: dict, key: str, path: Path) -> dict:
    value = config.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ExportError(f"run config {path}: {key} must be a mapping, not {type(value).__name__}")
    return value


def _config_int(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ExportError(f"{where} must be an integer, not {value!r}")
    return value


def _config_shape(model_pt: Path) -> tuple[int, int, int] | None:
    """(C, H, W) from the run's config.yaml (EXP/eval/model.pt -> EXP/config.yaml), where the run wrote one."""
    for path, config in _run_configs(model_pt):
        dataset = _section(config, "dataset", path)
        if "channels" in dataset and "image_size" in dataset:
            c = _config_int(dataset["channels"], f"run config {path}: dataset.channels")
            size = _config_int(dataset["image_size"], f"run config {path}: dataset.image_size")
            return check_shape((c, size, size), f"dataset.channels/image_size of run config {path}")
    return None


def arch_input_shape(arch_format: str, arch_text: str) -> tuple[int, int, int] | None:
    """(C, H, W) the architecture text itself implies, or None when it names only the channels or nothing."""
    if arch_format == "morphism_graph_json":
        try:
            h, w, c = json.loads(arch_text)["input_shape"]  # NNI's graphs are channels last
            return int(c), int(h), int(w)
        except (ValueError, KeyError, TypeError):
            return None  # then the caller asks for --input-shape
    if arch_format == "model_desc":
        from archsearch.model.model_desc import ModelDesc

        return ModelDesc.from_yaml(arch_text, "model.pt").ch_in, DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE
    return None


def input_shape_of(model_pt: Path, given: tuple[int, int, int] | None = None) -> tuple[int, int, int]:
    """The (C, H, W) of one image for `model_pt`: as given, else the run's config, else the architecture."""
    if given is not None:
        return check_shape(tuple(given), "--input-shape")
    found = _config_shape(model_pt)
    if found is not None:
        return found
    state = load_state(model_pt)
    found = arch_input_shape(str(state.get("arch_format", "")), str(state.get("arch", "")))
    if found is None:
        raise ExportError(f"{model_pt}: cannot tell the input size of this model; pass --input-shape C,H,W")
    return check_shape(found, f"the input shape {model_pt} records")


def check_shape(shape: tuple, where: str) -> tuple[int, int, int]:
    """(C, H, W) of positive integers up to MAX_SIDE, or one line naming `where` the shape came from."""
    text = ",".join(map(str, shape))
    if len(shape) != 3 or any(isinstance(v, bool) or not isinstance(v, int) for v in shape):
        raise ExportError(f"{where} {text!r}: expected three integers C,H,W such as 3,32,32")
    if any(v < 1 or v > MAX_SIDE for v in shape):
        raise ExportError(f"{where} {text!r}: C, H and W must each be between 1 and {MAX_SIDE}")
    return tuple(shape)  # type: ignore[return-value]


def check_fits(net: nn.Module, example: torch.Tensor, where: str) -> None:
    """One forward pass at the example's shape: a wrong channel count or an image too small for the model's
    downsampling is one line here, before any exporter (whose messages are tracebacks) sees it."""
    shape = ",".join(map(str, example.shape[1:]))
    try:
        with torch.no_grad():
            net(example)
    except (RuntimeError, ValueError, IndexError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ExportError(
            f"{where} {shape} does not fit this model ({first}); pass the shape it was trained on"
        ) from None


# ---- the output path -----------------------------------------------------------------------------------


def check_output(out: Path, what: str = "OUT") -> None:
    """`out` can be written as a file: not a directory or another non-file, no file on the way to it, and
    its folder (created here when missing) takes a new file. Checked before anything is exported."""
    try:
        info = out.stat()
    except NotADirectoryError:
        raise ExportError(f"{what} {out}: a part of the path is a file, not a folder") from None
    except FileNotFoundError:
        info = None
    except OSError as e:
        raise ExportError(f"{what} {out} cannot be written: {e.strerror}") from None
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise ExportError(f"{what} {out} is a directory; give a file path inside it (e.g. {out / 'model.onnx'})")
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise ExportError(f"{what} {out} is not a regular file (a device, pipe or socket); give a file path")
    folder = out.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".archsearch-export-"):
            pass  # the folder takes a new file (root ignores permission bits, so asking os.access is not enough)
    except (FileExistsError, NotADirectoryError):
        raise ExportError(f"{what} {out}: a part of the path is a file, not a folder") from None
    except OSError as e:
        raise ExportError(f"{what} {out} cannot be written ({folder}: {e.strerror})") from None
    if info is not None and not os.access(out, os.W_OK):
        raise ExportError(f"{what} {out} cannot be written (the file is read-only)")


def _write_error(out: Path, err: OSError) -> ExportError:
    return ExportError(f"cannot write {out}: {err.strerror or err}")


# ---- the formats ---------------------------------------------------------------------------------------


def _export_onnx(model: nn.Module, example: torch.Tensor, out: Path, opset: int) -> list[Path]:
    # the TorchScript-based exporter (dynamo=False): it needs no onnxscript and handles every model kind
    try:
        with warnings.catch_warnings():
            # tracing warns about every Python value it records as a constant (shapes, the batch-size branch
            # of a reduce); the export is checked to match the model, so the warnings only alarm the user
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
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
    except OSError as err:
        raise _write_error(out, err) from None
    return [out]


def check_opset(opset: int) -> int:
    low, high = ONNX_OPSETS
    if not low <= opset <= high:  # torch raises a many-line RuntimeError from deep inside the exporter
        raise ExportError(f"--opset {opset}: the ONNX exporter writes opsets {low} to {high}; pass one of those")
    return opset


def _check_onnx_installed() -> None:
    try:
        import onnx  # noqa: F401 - torch.onnx needs it; fail here with the fix rather than deep inside torch
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install 'archsearch[export]'") from None


def _export_torchscript(model: nn.Module, example: torch.Tensor, out: Path) -> list[Path]:
    # trace, not script: archsearch's modules use Python (dicts of ops, registries) that scripting rejects;
    # tracing records the ops for the example's spatial size and keeps the batch size symbolic
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        traced = torch.jit.trace(model, (example,), check_trace=False)
    try:
        traced.save(str(out))
    except (OSError, RuntimeError) as err:  # TorchScript's writer raises RuntimeError for an unwritable file
        if isinstance(err, OSError):
            raise _write_error(out, err) from None
        raise ExportError(f"cannot write {out}: {(str(err).strip().splitlines() or [''])[0][:200]}") from None
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


def python_outputs(out: Path) -> tuple[Path, Path]:
    """(the .py file, its weights) for OUT: OUT itself when it ends in .py, else OUT/model.py."""
    if out.suffix != ".py" and out.exists() and not out.is_dir():
        raise ExportError(
            f"OUT {out} is a file, not a folder: the python format writes OUT/model.py, or give OUT ending in .py"
        )
    out = out if out.suffix == ".py" else out / "model.py"
    if not out.stem.isidentifier():  # the user imports it by its name
        raise ExportError(f"{out}: the file name must be a Python identifier to import it (e.g. net.py)")
    return out, out.with_suffix(".pt")


def _export_python(model: nn.Module, example: torch.Tensor, out: Path) -> list[Path]:
    source, tensors = python_source(model, example)
    out, weights = python_outputs(out)
    try:
        out.write_text(source)
        torch.save(tensors, weights)  # a plain dict of tensors: torch.load(weights_only=True) reads it
    except OSError as err:
        raise _write_error(out, err) from None
    return [out, weights]


def configured_opset(model_pt: Path) -> int:
    """The ONNX opset of `export.onnx_opset`: the run's config.yaml beside EXP/eval/model.pt when it has the
    key, else the shipped default (confs/common.yaml), so a run's own choice travels with its folder."""
    for path, config in _run_configs(model_pt):
        opset = _section(config, "export", path).get("onnx_opset")
        if opset is not None:
            return _config_int(opset, f"run config {path}: export.onnx_opset")
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
    `opset` (ONNX) to `export.onnx_opset` of the run's config, then the shipped default.

    Everything is checked before anything is exported: the format, the opset, the output path (not a
    directory, its folder writable), the model file, and the input shape (one forward pass)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    model_pt, out = Path(model_pt).expanduser(), Path(out).expanduser()
    if input_shape is not None:
        input_shape = check_shape(tuple(input_shape), "--input-shape")
    if fmt == "onnx":
        _check_onnx_installed()
        if opset is not None:
            check_opset(opset)
    check_model_file(model_pt)
    if fmt == "python":
        for path in python_outputs(out):
            check_output(path)
    else:
        check_output(out)
    if fmt == "onnx":
        opset = check_opset(opset if opset is not None else configured_opset(model_pt))
    net = load_net(model_pt, model, trust_code)
    shape = input_shape_of(model_pt, input_shape)
    example = torch.randn(2, *shape)  # batch 2, not 1: a size-1 axis would be specialised as a constant
    where = "--input-shape" if input_shape is not None else f"the input shape of {model_pt} (from its run)"
    check_fits(net, example, where)
    with torch.no_grad():
        if fmt == "onnx":
            return _export_onnx(net, example, out, opset)
        if fmt == "torchscript":
            return _export_torchscript(net, example, out)
        return _export_python(net, example, out)


# ---- the CLI -------------------------------------------------------------------------------------------


def parse_shape(text: str | None) -> tuple[int, int, int] | None:
    """--input-shape C,H,W as three integers between 1 and MAX_SIDE, or one line."""
    if text is None:
        return None
    parts = text.split(",")
    if len(parts) != 3 or not all(re.fullmatch(r"\s*[+-]?\d+\s*", p) for p in parts):
        raise ExportError(f"--input-shape {text!r}: expected three integers C,H,W such as 3,32,32")
    return check_shape(tuple(int(p) for p in parts), "--input-shape")


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
