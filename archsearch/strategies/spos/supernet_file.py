"""The trained supernet as a file (search/supernet.pt): train once, search many times.

The file is a plain dict of tensors and YAML-safe values, written with its sha256 beside it
(`save_checkpoint`) and read with `torch.load(weights_only=True)` (`load_checkpoint`):

- `format`, `version`: what this is;
- `identity`: everything the supernet's shapes and meaning depend on: the space's name, its own settings
  (nas.search.space without `name`), the search-size network (nas.search.model_desc) and the dataset's
  name, channels, classes and image size. A later `--nas.search.supernet PATH` run refuses a file whose identity
  differs from its own with one line naming the first key that differs, before any weight is read;
- `state`: the supernet's state_dict (weights and BatchNorm statistics);
- `history`: the training's per-epoch figures, which a later run shows as this supernet's training curve.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from archsearch.common.checkpoint import load_checkpoint, save_checkpoint
from archsearch.common.errors import CheckpointError, ConfigError
from archsearch.common.fingerprint import flatten
from archsearch.common.logging import plain
from archsearch.search.space import SearchSpace

SUPERNET_FILE = "supernet.pt"
FORMAT = "archsearch-spos-supernet"
VERSION = 1
DATASET_KEYS = ("name", "channels", "n_classes", "image_size")  # not its path: a moved copy of the data is fine
RETRAIN = "train one for these settings (leave --nas.search.supernet out) or search with the settings it had"


def supernet_identity(space: SearchSpace) -> dict[str, Any]:
    """What a supernet of `space` (at its current settings) must match to be searched."""
    conf_space = {k: v for k, v in plain(dict(space.conf_space)).items() if k != "name"}
    dataset = {k: plain(space.conf_dataset[k]) for k in DATASET_KEYS if k in list(space.conf_dataset)}
    return {"space": space.name, "space_settings": conf_space, "model_desc": plain(dict(space.conf_model_desc)),
            "dataset": dataset}  # fmt: skip


def save_supernet(path: Path, supernet: nn.Module, space: SearchSpace, history: list[dict[str, Any]]) -> Path:
    state = {
        "format": FORMAT,
        "version": VERSION,
        "identity": supernet_identity(space),
        "state": {k: v.detach().cpu() for k, v in supernet.state_dict().items()},
        "history": plain(history),
    }
    return save_checkpoint(state, path)


def _differs(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> tuple[str, Any, Any] | None:
    """The first dotted key whose value differs: (key, recorded, current)."""
    a, b = flatten(recorded), flatten(current)
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            return key, a.get(key, "<absent>"), b.get(key, "<absent>")
    return None


def read_supernet(path: Path, space: SearchSpace) -> dict[str, Any]:
    """The supernet file at `path`, checked to be one and to match `space`'s settings (one line otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"nas.search.supernet {path}: no such file; give the search/{SUPERNET_FILE} of an earlier --algos spos run"
        )
    data = load_checkpoint(path)
    if data.get("format") != FORMAT or not isinstance(data.get("identity"), dict) or "state" not in data:
        raise CheckpointError(
            f"nas.search.supernet {path}: not a supernet file (format {data.get('format')!r}); give the "
            f"search/{SUPERNET_FILE} of an --algos spos run"
        )
    if data.get("version") != VERSION:
        raise CheckpointError(f"nas.search.supernet {path}: version {data.get('version')!r}, this archsearch reads "
                              f"{VERSION}; {RETRAIN}")  # fmt: skip
    identity = data["identity"]
    if identity.get("space") != space.name:
        raise ConfigError(
            f"nas.search.supernet {path}: a supernet of space {identity.get('space')!r}, and this run searches "
            f"{space.name!r}; pass --nas.search.space {identity.get('space')} or {RETRAIN}"
        )
    differ = _differs(identity, supernet_identity(space))
    if differ is not None:
        key, was, now = differ
        where = {"space_settings": "nas.search.space", "model_desc": "nas.search.model_desc"}
        head, _, rest = key.partition(".")
        name = f"{where.get(head, head)}.{rest}" if rest else key
        raise ConfigError(
            f"nas.search.supernet {path}: trained with {name} = {was!r}, and this run has {now!r}; {RETRAIN}"
        )
    return data


def load_supernet(path: Path, space: SearchSpace) -> tuple[nn.Module, list[dict[str, Any]]]:
    """The space's sampled supernet with the weights of the file at `path`, and the file's training history."""
    data = read_supernet(path, space)
    supernet = space.sampled_supernet()
    try:
        supernet.load_state_dict(data["state"])
    except (RuntimeError, KeyError, ValueError, TypeError) as e:  # same settings, other shapes: another code version
        first = " ".join(str(e).strip().splitlines()[:1])[:200]
        raise CheckpointError(f"nas.search.supernet {path}: does not fit this supernet ({first}); {RETRAIN}") from None
    history = data.get("history")
    return supernet, list(history) if isinstance(history, list) else []
