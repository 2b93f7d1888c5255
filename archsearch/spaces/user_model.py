"""A user's own PyTorch model as a search space: its LayerChoice/InputChoice mutables (archsearch.spaces.mutables),
searched by any strategy (random and REA sample and mutate choice JSONs, DARTS trains `DartsSupernet`, ENAS
samples `EnasChildren`), and the file its result is: `search/final_arch.json`.

A model is named by import path, `package.module:Attribute` (or `package.module.Attribute`), and built with
keyword arguments: `nas.search.space.model` and `nas.search.space.model_kwargs`. The import looks in the
current directory first when the module is not found on the path, as `python -m` would, so a checkout's
`examples.mnist_space:Net` works from `scripts/main.py` and from the `archsearch` console script alike.

final_arch.json holds the choice JSON together with the model it belongs to, so evaluation and
`archsearch.load_model` rebuild the fixed network from that file:

    {"format": "user_model_json", "model": "examples.mnist_space:Net", "model_kwargs": {...},
     "choices": {"conv1": "conv5x5", "skip": [0]}, "meta": {"algo": "darts"}}

A file's "model" is never imported on the file's word: parsing is pure JSON, and `build_fixed` imports the
class only when the caller allowed that path (`CodeAllowed`: `load_model(path, model=...)`, the config's
`nas.search.space.model`, or `trust_code=True`), since an import path names any code (`os:system`).
"""

from __future__ import annotations

import difflib
import importlib
import json
import os
import random
import sys
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from archsearch.common.errors import ArchitectureError, UserError
from archsearch.common.io import atomic_write_text
from archsearch.common.readers import MAX_ARCH_BYTES, parse_json, read_text
from archsearch.model.load import ARCH_FORMATS, BuiltModel, CodeAllowed
from archsearch.search.pictures import ArchPicture
from archsearch.search.space import SPACES, SearchSpace, chosen
from archsearch.spaces.mutables import MutableSpace, apply_fixed_arch
from archsearch.spaces.token_space import Token, choices_from_tokens, mutate_arc, token_choices, tokens_from_choices
from archsearch.spaces.user_model_supernets import DartsSupernet, EnasChildren, EnasMutableSpace

ARCH_FORMAT = "user_model_json"
FINAL_ARCH = "final_arch.json"
CONF_KEY = "nas.search.space.model"


@dataclass(frozen=True)
class UserModelRef:
    path: str  # "package.module:Attribute"
    kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_conf(cls, conf_space: Mapping) -> UserModelRef:
        kwargs = conf_space["model_kwargs"]
        kwargs = kwargs.to_dict() if hasattr(kwargs, "to_dict") else dict(kwargs or {})
        return cls(str(conf_space["model"]), kwargs)

    def module_and_attribute(self) -> tuple[str, str]:
        module, sep, attribute = self.path.partition(":")
        if not sep:
            module, _, attribute = self.path.rpartition(".")
        if not module or not attribute:
            raise UserError(f"{CONF_KEY} {self.path!r} is not an import path; write it like examples.mnist_space:Net")
        return module, attribute

    def resolve(self) -> Any:
        """The class (or factory) the path names."""
        module_name, attribute = self.module_and_attribute()
        module = _import(module_name, self.path)
        if not hasattr(module, attribute):
            names = [n for n in dir(module) if not n.startswith("_")]
            close = difflib.get_close_matches(attribute, names, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            if ":" not in self.path:
                hint += f"; write the path as module:Class, e.g. {module_name}.{attribute}:Net"
            raise UserError(f"{CONF_KEY}: module {module_name!r} has no attribute {attribute!r}{hint}")
        return getattr(module, attribute)

    def build(self) -> nn.Module:
        factory = self.resolve()
        if isinstance(factory, types.ModuleType):
            raise UserError(
                f"{CONF_KEY}: {self.path} is a module; write the path as module:Class, e.g. {self.path}:Net"
            )
        if not callable(factory):
            raise UserError(f"{CONF_KEY}: {self.path} is a {type(factory).__name__}, not a model class or factory")
        try:
            model = factory(**self.kwargs)
        except TypeError as e:  # wrong model_kwargs, the usual cause; anything else keeps its traceback
            raise UserError(
                f"cannot build {self.path}(**{self.kwargs}): {e}; fix nas.search.space.model_kwargs"
            ) from None
        if not isinstance(model, nn.Module):
            raise UserError(f"{CONF_KEY}: {self.path}(...) returned a {type(model).__name__}, not a torch.nn.Module")
        return model

    def build_space(self) -> tuple[nn.Module, MutableSpace]:
        """The model with its mutables, and their space (an error when it has none)."""
        model = self.build()
        return model, MutableSpace(model, f"model {self.path}")


def _import(module_name: str, path: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        missing = e.name or ""
        if not (module_name == missing or module_name.startswith(missing + ".")):
            raise  # the user's module imports something missing: its own traceback says what
        cwd = os.getcwd()
        if cwd not in sys.path:  # once: the retry finds cwd on the path and reports
            sys.path.insert(0, cwd)
            return _import(module_name, path)
        raise UserError(
            f"{CONF_KEY} {path!r}: cannot import module {module_name!r} ({e}); give an importable module, "
            f"e.g. examples.mnist_space:Net run from the repository root"
        ) from None


class _FirstLayerReached(BaseException):  # not an Exception: a model's own `except Exception` cannot swallow it
    pass


def check_model_inputs(model: nn.Module, conf_dataset: Mapping, path: str) -> None:
    """One line when the model's first layer cannot take the dataset's images (a model built for 3 channels on
    1-channel digits), instead of torch's traceback at the first training step.

    A zero batch shaped like the dataset's goes in until the first convolution or linear layer is called (a
    forward pre-hook stops it there: nothing is computed past it); that layer's expected input channels (or
    features) are compared with what it receives. A model whose forward fails before any such layer for
    another reason is left to fail where it runs, with its own error."""
    import torch

    if "channels" not in conf_dataset or "image_size" not in conf_dataset:
        return  # not a run's dataset section (a run's always has both: the schema declares them)
    channels, size = conf_dataset["channels"], conf_dataset["image_size"]
    first: dict[str, Any] = {}

    def stop(module: nn.Module, args: tuple) -> None:
        first.setdefault("module", module)
        first.setdefault("input", args[0] if args and isinstance(args[0], torch.Tensor) else None)
        raise _FirstLayerReached

    layers = [m for m in model.modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    handles = [m.register_forward_pre_hook(stop) for m in layers]
    training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(2, channels, size, size))
    except _FirstLayerReached:
        pass
    except Exception:  # noqa: BLE001 - not this check's problem: the model's own error shows where it runs
        return
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)
    module, x = first.get("module"), first.get("input")
    if module is None or x is None or x.dim() < 2:
        return
    name = next((n for n, m in model.named_modules() if m is module), "") or "the model"
    layer = f"{name!r} ({type(module).__name__})"
    dataset = f"dataset {conf_dataset['name']}" if "name" in conf_dataset else "dataset"
    if isinstance(module, nn.modules.conv._ConvNd) and x.shape[1] != module.in_channels:
        raise UserError(
            f"{CONF_KEY} {path}: its first layer {layer} takes {module.in_channels} input channels, but the "
            f"{dataset} has {x.shape[1]} (dataset.channels {channels}); build the model for {x.shape[1]} channels "
            f"(nas.search.space.model_kwargs) or use a dataset with {module.in_channels}"
        )
    if isinstance(module, nn.Linear) and x.shape[-1] != module.in_features:
        raise UserError(
            f"{CONF_KEY} {path}: its first layer {layer} takes {module.in_features} input features, but the "
            f"{dataset}'s {channels}x{size}x{size} images give it {x.shape[-1]}; build the model for the dataset "
            f"(nas.search.space.model_kwargs) or use a dataset whose images fit it"
        )


@dataclass
class UserModelArch:
    """The contents of final_arch.json: a model reference and the choice JSON found for it."""

    model: UserModelRef
    choices: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        data = {
            "format": ARCH_FORMAT,
            "model": self.model.path,
            "model_kwargs": self.model.kwargs,
            "choices": self.choices,
            "meta": self.meta,
        }
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str, model: UserModelRef | None = None) -> UserModelArch:
        """Parse final_arch.json; with `model`, a bare choice JSON `{key: choice}` is taken to belong to it."""
        data = parse_json(text, where, ArchitectureError)
        if not isinstance(data, dict):
            raise ArchitectureError(f"{where}: expected a JSON object, got {type(data).__name__}")
        if "choices" not in data and model is not None:
            return cls(model, data, {"source": where})
        if not isinstance(data.get("model"), str) or not isinstance(data.get("choices"), dict):
            raise ArchitectureError(
                f"{where} is not a user-model architecture: expected an object with 'model' and 'choices' "
                f"(a search's search/{FINAL_ARCH})"
            )
        if not isinstance(data.get("model_kwargs", {}), dict):
            raise ArchitectureError(f"{where}: 'model_kwargs' must be a JSON object")
        return cls(UserModelRef(data["model"], data.get("model_kwargs", {})), data["choices"], data.get("meta", {}))

    @classmethod
    def load(cls, path: Path, model: UserModelRef | None = None) -> UserModelArch:
        text = read_text(path, "architecture file", ArchitectureError, max_bytes=MAX_ARCH_BYTES)
        return cls.from_json(text, str(path), model)

    def save(self, path: Path) -> Path:
        return atomic_write_text(path, self.to_json())

    def build_fixed(self, allowed: CodeAllowed, where: str = "choice JSON") -> nn.Module:
        """The user's model with only the chosen candidates (untrained), if `allowed` permits importing it;
        `where` names the file in errors."""
        allowed.check(self.model.path, where)
        model, _ = self.model.build_space()
        return apply_fixed_arch(model, self.choices, where=where)

    @classmethod
    def build_from_text(cls, text: str, where: str, allowed: CodeAllowed) -> nn.Module:
        """The `user_model_json` builder of archsearch.load_model."""
        return cls.from_json(text, where).build_fixed(allowed, where)


ARCH_FORMATS.add(ARCH_FORMAT, UserModelArch.build_from_text)


# ---- the SearchSpace ---------------------------------------------------------------------------------


@SPACES.register("user_model")
class UserModelSpace(SearchSpace):
    """The LayerChoice/InputChoice mutables of the model `nas.search.space.model` names. An architecture is
    the choice JSON `{key: candidate name | [input indices]}`, exactly as final_arch.json stores it."""

    name = "user_model"
    summary = "your own nn.Module with LayerChoice/InputChoice (nas.search.space.model)"
    final_file = FINAL_ARCH
    cell_based = False  # no cell model_desc to show in --dry-run

    @classmethod
    def pictures(cls, final_file: Mapping[str, Any]) -> list[ArchPicture]:
        return []  # a model's choices read better as a table (arch_table)

    @classmethod
    def arch_table(cls, final_file: Mapping[str, Any]) -> list[tuple[str, str]]:
        """One row per mutable: its key and the chosen candidate, or the chosen inputs."""
        rows = []
        for name, value in (final_file.get("choices") or {}).items():
            if isinstance(value, list):
                value = "inputs " + ", ".join(str(v) for v in value) if value else "no input (skipped)"
            rows.append((str(name), str(value)))
        return rows

    def __init__(self, conf_space: Mapping, conf_model_desc: Mapping, conf_dataset: Mapping) -> None:
        super().__init__(conf_space, conf_model_desc, conf_dataset)
        if not conf_space["model"]:
            raise UserError(f"the user_model space needs a model: set --{CONF_KEY} package.module:Class")
        self.ref = UserModelRef.from_conf(conf_space)
        self._tokens: EnasMutableSpace | None = None
        self._inputs_checked = False

    def _model(self) -> nn.Module:
        """A fresh instance of the user's model; the first one is checked to take the dataset's images."""
        model = self.ref.build()
        if not self._inputs_checked:
            check_model_inputs(model, self.conf_dataset, self.ref.path)
            self._inputs_checked = True
        return model

    def mutables(self) -> EnasMutableSpace:
        """The choices of one instance of the model (built once: what every instance shares)."""
        if self._tokens is None:
            model = self._model()
            self._tokens = EnasMutableSpace(model, f"model {self.ref.path}")
        return self._tokens

    def describe(self) -> str:
        return f"user_model {self.ref.path}: {self.mutables().describe()}"

    def size(self) -> int:
        return self.mutables().size()

    def sample(self, rng: random.Random) -> dict[str, Any]:
        space = self.mutables()
        return space.to_json(space.random_choices(rng))

    def mutate(self, arch: Mapping[str, Any], rng: random.Random) -> dict[str, Any]:
        """One token of the ENAS layout changed: one LayerChoice candidate, one input subset, or one input
        of an any-number InputChoice dropped or kept."""
        return self.arch_from_tokens(mutate_arc(self.mutables().encode_arc(self.parse(arch)), self.token_spec(), rng))

    def parse(self, arch: Any, where: str = "choice JSON") -> dict:
        return self.mutables().parse(arch, where)

    def to_json(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        return dict(arch)

    def from_json(self, data: Any, where: str = "architecture") -> dict[str, Any]:
        return self.mutables().to_json(self.parse(data, where))

    def build(self, arch: Mapping[str, Any]) -> nn.Module:
        return apply_fixed_arch(self._model(), arch)

    def save_arch(self, arch: Mapping[str, Any], folder: Path, meta: Mapping[str, Any]) -> Path:
        return UserModelArch(self.ref, dict(arch), dict(meta)).save(Path(folder) / FINAL_ARCH)

    def load_arch(self, path: Path) -> dict[str, Any]:
        return self.from_json(UserModelArch.load(path, self.ref).choices, str(path))

    def eval_model(self, path: Path, conf_model_desc: Mapping, eval_dir: Path | None) -> BuiltModel:
        """The user's model with the chosen candidates; the class comes from the config alone: a file naming
        another one is refused, never imported. A bare choice JSON is taken for the configured model."""
        arch = UserModelArch.load(path, self.ref)
        model = arch.build_fixed(CodeAllowed(self.ref.path, named_by=CONF_KEY), str(path))
        check_model_inputs(model, self.conf_dataset, arch.model.path)
        if eval_dir is not None:
            arch.save(Path(eval_dir) / FINAL_ARCH)
        return BuiltModel(model, ARCH_FORMAT, arch.to_json())

    def differentiable_supernet(self) -> nn.Module:
        model = self._model()
        return DartsSupernet(model, MutableSpace(model, f"model {self.ref.path}"))

    def sampled_supernet(self) -> nn.Module:
        model = self._model()
        return EnasChildren(model, MutableSpace(model, f"model {self.ref.path}"))

    def token_spec(self) -> list[Token]:
        return self.mutables().token_spec()

    def arch_from_tokens(self, tokens: Sequence[int]) -> dict[str, Any]:
        space = self.mutables()
        return space.to_json(space.decode_arc(tokens))

    def choices(self) -> list[tuple[str, list[Any]]]:
        """The searched choices as the ENAS tokens name them: a LayerChoice's candidates by name, an InputChoice
        of k inputs by subset, one of any number by a keep/drop decision per input."""
        return token_choices(self.token_spec())

    def arch_from_choices(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return self.arch_from_tokens(tokens_from_choices(self.token_spec(), chosen(self, values)))

    def choices_of(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        space = self.mutables()
        return choices_from_tokens(self.token_spec(), space.encode_arc(space.parse(arch)))
