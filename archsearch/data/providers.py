"""Dataset providers: name -> (train, test) images.

Datasets that fit in memory (digits, MNIST-likes, CIFAR, SVHN, npz, synthetic) come back as `TensorImages`
(uint8 or float NCHW tensors) so loaders can batch, augment and normalize on the training device without
per-image Python work. Folder datasets (image_folder, imagenet) come back as torchvision datasets.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from archsearch.common.errors import DatasetError
from archsearch.common.registry import Registry


@dataclass
class TensorImages:
    """In-memory images: x is uint8 (0..255) or float (0..1), shape (N, C, H, W); y int64 (N,)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


# name -> provider(conf_dataset) -> (train, test)
DATASETS: Registry = Registry("dataset")


def get_dataset(conf_dataset: Mapping) -> tuple:
    """(train, test) for the dataset named by `conf_dataset['name']`."""
    return DATASETS.get(conf_dataset["name"])(conf_dataset)


def _dataroot(conf: Mapping, sub: str) -> Path:
    return Path(conf["dataroot"]).expanduser() / sub


def _missing(name: str, where: Path, how: str, error: Exception | None = None) -> DatasetError:
    why = f" and could not be downloaded ({type(error).__name__}: {str(error).splitlines()[0][:120]})" if error else ""
    return DatasetError(f"dataset {name} not found in {where}{why}; {how}, or set --dataset.dataroot DIR")


def _to_nchw_uint8(x: np.ndarray | torch.Tensor, layout: str) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(x))
    if x.ndim == 3:
        x = x.unsqueeze(1)
    elif layout == "nhwc":
        x = x.permute(0, 3, 1, 2)
    return x.contiguous()


def _torchvision(name: str, factory, sub: str, how: str, layout: str, label_attr: str = "targets"):
    def provider(conf: Mapping) -> tuple[TensorImages, TensorImages]:
        root = _dataroot(conf, sub)
        parts = []
        for train in (True, False):
            try:
                ds = factory(root, train, False)  # look on disk first: no network when present
            except (RuntimeError, FileNotFoundError):
                if not conf["download"]:
                    raise _missing(name, root, how) from None
                try:
                    ds = factory(root, train, True)
                except Exception as e:  # noqa: BLE001 - any download failure becomes one clear line
                    raise _missing(name, root, how, e) from None
            labels = torch.as_tensor(np.asarray(getattr(ds, label_attr)), dtype=torch.int64)
            parts.append(TensorImages(_to_nchw_uint8(ds.data, layout), labels))
        return parts[0], parts[1]

    DATASETS.add(name, provider)


def _register_torchvision() -> None:
    from torchvision import datasets as tvd

    cifar = "download cifar-{n}-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and extract it there"
    _torchvision(
        "cifar10", lambda r, t, d: tvd.CIFAR10(str(r), train=t, download=d), "cifar10", cifar.format(n=10), "nhwc"
    )
    _torchvision(
        "cifar100", lambda r, t, d: tvd.CIFAR100(str(r), train=t, download=d), "cifar100", cifar.format(n=100), "nhwc"
    )
    mnist = "place the {n} raw files (train-images-idx3-ubyte etc.) in {n}/raw there"
    _torchvision("mnist", lambda r, t, d: tvd.MNIST(str(r), train=t, download=d), "", mnist.format(n="MNIST"), "nchw")
    _torchvision(
        "fashion_mnist",
        lambda r, t, d: tvd.FashionMNIST(str(r), train=t, download=d),
        "",
        mnist.format(n="FashionMNIST"),
        "nchw",
    )
    _torchvision(
        "svhn",
        lambda r, t, d: tvd.SVHN(str(r), split="train" if t else "test", download=d),
        "svhn",
        "place train_32x32.mat and test_32x32.mat there",
        "nchw",
        label_attr="labels",
    )


_register_torchvision()


@DATASETS.register("digits")
def digits(conf: Mapping) -> tuple[TensorImages, TensorImages]:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images): real data, no download.

    Split into train/test by a fixed permutation (seed 0) so every run tests on the same images.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(data.target, dtype=torch.int64)
    return _split(x, y, conf["test_fraction"], seed=0)


def _split(x: torch.Tensor, y: torch.Tensor, test_fraction: float, seed: int) -> tuple[TensorImages, TensorImages]:
    if not 0.0 < test_fraction < 1.0:
        raise DatasetError(f"dataset.test_fraction must be between 0 and 1, got {test_fraction}")
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(len(y) * test_fraction))
    test, train = perm[:n_test], perm[n_test:]
    return TensorImages(x[train], y[train]), TensorImages(x[test], y[test])


@DATASETS.register("npz")
def npz(conf: Mapping) -> tuple[TensorImages, TensorImages]:
    """A user's arrays: `x` (N,H,W,C), (N,C,H,W) or (N,H,W), uint8 or float in [0,1]; integer `y`;
    optional `x_test`/`y_test`, else a seeded split by `test_fraction`."""
    path = conf["path"]
    if not path:
        raise DatasetError("dataset npz needs a file: set --dataset.path FILE.npz")
    path = Path(path).expanduser()
    arrays = _read_npz(path)
    for key in ("x", "y"):
        if key not in arrays:
            found = ", ".join(arrays) or "no arrays"
            raise DatasetError(
                f"npz file {path} has no array {key!r} (found: {found}); save it with np.savez(x=..., y=...)"
            )
    channels = conf["channels"]

    def images(x: np.ndarray, key: str) -> torch.Tensor:
        if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
            raise DatasetError(
                f"npz {path} array {key!r} holds {x.dtype}; images must be uint8 (0..255) or float (0..1)"
            )
        if x.ndim == 3:
            x = x[:, None]
        elif x.ndim == 4 and x.shape[-1] == channels and x.shape[1] != channels:
            x = x.transpose(0, 3, 1, 2)
        if x.ndim != 4 or x.shape[1] != channels or 0 in x.shape:
            raise DatasetError(
                f"npz {path} array {key!r} has shape {x.shape}; expected N x H x W x {channels} "
                f"or N x {channels} x H x W with N, H, W >= 1 (set --dataset.channels to match)"
            )
        if x.dtype != np.uint8 and not np.isfinite(x).all():
            raise DatasetError(f"npz {path} array {key!r} holds NaN or infinite values")
        t = torch.from_numpy(np.ascontiguousarray(x))
        return t if t.dtype == torch.uint8 else t.float()

    def labels(y: np.ndarray, key: str, n: int) -> torch.Tensor:
        if y.ndim != 1 or len(y) != n or not np.issubdtype(y.dtype, np.integer):
            raise DatasetError(f"npz {path} array {key!r} must be {n} integer labels, got {y.dtype} {y.shape}")
        if y.min() < 0 or y.max() >= conf["n_classes"]:
            raise DatasetError(
                f"npz {path} array {key!r}: labels span {y.min()}..{y.max()} but dataset.n_classes is "
                f"{conf['n_classes']}; set --dataset.n_classes to cover them"
            )
        return torch.from_numpy(y.astype(np.int64))

    x = images(arrays["x"], "x")
    y = labels(arrays["y"], "y", len(x))
    if "x_test" in arrays and "y_test" in arrays:
        x_test = images(arrays["x_test"], "x_test")
        return TensorImages(x, y), TensorImages(x_test, labels(arrays["y_test"], "y_test", len(x_test)))
    return _split(x, y, conf["test_fraction"], seed=0)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz file, read now, so a bad file fails here as one line naming it.

    np.load reads arrays lazily: an array of Python objects (refused without pickle) or a truncated
    member would otherwise fail later, deep inside the loader.
    """
    not_npz = DatasetError(f"{path} is not an .npz archive; save it with np.savez(path, x=..., y=...)")
    try:
        arrays = np.load(path, allow_pickle=False)
        if not isinstance(arrays, np.lib.npyio.NpzFile):
            raise not_npz
        with arrays:
            return {key: arrays[key] for key in arrays.files}
    except FileNotFoundError:
        raise DatasetError(f"npz file {path} does not exist; set --dataset.path to your .npz file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise DatasetError(f"npz file {path} cannot be read: {reason}") from None


@DATASETS.register("synthetic")
def synthetic(conf: Mapping) -> tuple[TensorImages, TensorImages]:
    """Random images whose class shifts the mean: learnable, shape-configurable, for tests."""
    g = torch.Generator().manual_seed(1234)
    c, size, n_classes = conf["channels"], conf["image_size"], conf["n_classes"]
    prototypes = torch.rand(n_classes, c, size, size, generator=g)
    parts = []
    for n in (conf["synthetic_train"], conf["synthetic_test"]):
        y = torch.randint(0, n_classes, (n,), generator=g)
        x = (0.7 * prototypes[y] + 0.3 * torch.rand(n, c, size, size, generator=g)).clamp(0, 1)
        parts.append(TensorImages(x, y))
    return parts[0], parts[1]


def _folder(conf: Mapping, root: Path, name: str):
    from torchvision.datasets import ImageFolder

    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DatasetError(
                f"dataset {name}: folder {root / split} does not exist; place class folders in "
                f"{root}/train/<class>/*.jpg and {root}/val/<class>/*.jpg"
            )
    parts = []
    for split in ("train", "val"):
        try:
            parts.append(ImageFolder(str(root / split)))
        except (FileNotFoundError, RuntimeError) as e:  # no class folders, or class folders without images
            raise DatasetError(
                f"dataset {name}: folder {root / split} has no images in class folders "
                f"({str(e).splitlines()[0][:120]}); place them as {root / split}/<class>/*.jpg"
            ) from None
        if len(parts[-1].classes) > conf["n_classes"]:
            raise DatasetError(
                f"dataset {name}: {root / split} has {len(parts[-1].classes)} class folders but dataset.n_classes "
                f"is {conf['n_classes']}; set --dataset.n_classes {len(parts[-1].classes)}"
            )
    return parts[0], parts[1]


@DATASETS.register("image_folder")
def image_folder(conf: Mapping):
    if not conf["path"]:
        raise DatasetError("dataset image_folder needs a folder: set --dataset.path DIR (with train/ and val/)")
    return _folder(conf, Path(conf["path"]).expanduser(), "image_folder")


@DATASETS.register("imagenet")
def imagenet(conf: Mapping):
    return _folder(conf, _dataroot(conf, "imagenet"), "imagenet")
