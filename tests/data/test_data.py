import numpy as np
import pytest
import torch
import yaml

from archsearch.common.errors import DatasetError
from archsearch.data import providers
from archsearch.data.loaders import Augment, TensorLoader, cutout, eval_loaders, random_crop, search_loaders
from archsearch.data.providers import TensorImages, get_dataset

BASE = dict(
    name="digits",
    dataroot="/nonexistent",
    download=False,
    channels=1,
    n_classes=10,
    image_size=8,
    mean=[0.5],
    std=[0.25],
    crop_padding=1,
    hflip=False,
    test_fraction=0.2,
    path=None,
    synthetic_train=64,
    synthetic_test=32,
)
LOADER = dict(
    batch_size=16, test_batch_size=50, train_portion=0.5, augment=True, cutout=0, workers=0, limit_batches=None
)


def test_digits_is_real_offline_data_with_a_fixed_split():
    train, test = get_dataset(BASE)
    assert (len(train), len(test)) == (1438, 359)
    assert train.x.shape[1:] == (1, 8, 8) and train.x.min() >= 0.0 and train.x.max() <= 1.0
    again, _ = get_dataset(BASE)
    assert torch.equal(train.y, again.y)


def test_search_split_is_disjoint_and_test_set_untouched():
    weights, arch = search_loaders(BASE, LOADER, torch.device("cpu"), seed=0)
    assert weights.n_samples + arch.n_samples == 1438
    wx = {tuple(r.flatten().tolist()) for r in weights.x}
    ax = {tuple(r.flatten().tolist()) for r in arch.x}
    _, test = get_dataset(BASE)
    tx = {tuple(r.flatten().tolist()) for r in test.x}
    assert not (wx & tx) and not (ax & tx)
    x, y = next(iter(weights))
    assert x.shape == (16, 1, 8, 8) and y.dtype == torch.int64


def test_epoch_order_is_seeded_by_epoch():
    loader, _ = eval_loaders(BASE, {**LOADER, "limit_batches": 3}, torch.device("cpu"), seed=5)
    assert len(loader) == 3
    loader.set_epoch(1)
    a = [y.tolist() for _, y in loader]
    loader.set_epoch(2)
    b = [y.tolist() for _, y in loader]
    loader.set_epoch(1)
    assert a == [y.tolist() for _, y in loader] and a != b


def test_random_crop_matches_padding_then_window():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    out = random_crop(x, 2, g)
    g = torch.Generator().manual_seed(0)
    oy = torch.randint(0, 5, (2, 1), generator=g)
    ox = torch.randint(0, 5, (2, 1), generator=g)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        assert torch.equal(out[i], padded[i, :, oy[i, 0] : oy[i, 0] + 4, ox[i, 0] : ox[i, 0] + 4])


def test_cutout_zeroes_a_clipped_square_like_darts():
    x = torch.ones(200, 1, 32, 32)
    out = cutout(x, 16, torch.Generator().manual_seed(0))
    zeros = (out == 0).sum(dim=(1, 2, 3))
    assert zeros.max() == 256 and zeros.min() >= 64  # a full 16x16 square, or one clipped at a corner


def test_tensor_loader_normalizes():
    images = TensorImages(torch.full((4, 1, 2, 2), 255, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64))
    loader = TensorLoader(
        images,
        torch.arange(4),
        4,
        shuffle=False,
        augment=Augment(),
        mean=[0.5],
        std=[0.25],
        device=torch.device("cpu"),
        seed=0,
    )
    x, _ = next(iter(loader))
    assert torch.allclose(x, torch.full_like(x, 2.0))


def test_npz_layouts_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    nhwc = tmp_path / "a.npz"
    np.savez(nhwc, x=rng.integers(0, 255, (20, 6, 6, 3), dtype=np.uint8), y=rng.integers(0, 4, 20))
    conf = {**BASE, "name": "npz", "path": str(nhwc), "channels": 3, "n_classes": 4, "image_size": 6}
    train, test = get_dataset(conf)
    assert train.x.shape[1:] == (3, 6, 6) and len(train) + len(test) == 20
    split = tmp_path / "b.npz"
    np.savez(
        split,
        x=rng.random((10, 3, 6, 6)).astype(np.float32),
        y=np.arange(10) % 4,
        x_test=rng.random((5, 3, 6, 6)).astype(np.float32),
        y_test=np.arange(5) % 4,
    )
    train, test = get_dataset({**conf, "path": str(split)})
    assert (len(train), len(test)) == (10, 5) and train.x.dtype == torch.float32
    with pytest.raises(DatasetError, match="does not exist"):
        get_dataset({**conf, "path": str(tmp_path / "missing.npz")})
    with pytest.raises(DatasetError, match="labels span 0..3 but dataset.n_classes is 2; set --dataset.n_classes"):
        get_dataset({**conf, "path": str(nhwc), "n_classes": 2})
    with pytest.raises(DatasetError, match="set --dataset.channels"):
        get_dataset({**conf, "channels": 1})
    with pytest.raises(DatasetError, match="set --dataset.path"):
        get_dataset({**conf, "path": None})


def test_missing_torchvision_dataset_without_download(tmp_path):
    with pytest.raises(DatasetError, match=f"dataset cifar10 not found in {tmp_path}/cifar10; download cifar-10"):
        get_dataset({**BASE, "name": "cifar10", "dataroot": str(tmp_path)})


def test_failed_download_is_one_clear_error(tmp_path, monkeypatch):
    from torchvision import datasets as tvd

    def offline(self, *args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tvd.CIFAR10, "download", offline)
    with pytest.raises(DatasetError, match=r"could not be downloaded \(OSError: network is unreachable\)"):
        get_dataset({**BASE, "name": "cifar10", "dataroot": str(tmp_path), "download": True})


def test_image_folder_needs_train_and_val(tmp_path):
    with pytest.raises(DatasetError, match="train/<class>"):
        get_dataset({**BASE, "name": "image_folder", "path": str(tmp_path)})


def test_registry_lists_every_documented_dataset():
    for name in (
        "cifar10",
        "cifar100",
        "mnist",
        "fashion_mnist",
        "svhn",
        "imagenet",
        "image_folder",
        "digits",
        "npz",
        "synthetic",
    ):
        assert name in providers.DATASETS


NPZ = {**BASE, "name": "npz", "channels": 1, "n_classes": 4, "image_size": 8}


def npz_file(tmp_path, name="d.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({}, r"has no array 'x' \(found: no arrays\)"),
        ({"x": np.zeros((0, 8, 8), np.uint8), "y": np.zeros(0, np.int64)}, r"shape \(0, 1, 8, 8\)"),
        ({"x": np.array([["a"] * 8] * 8 * 3).reshape(3, 8, 8), "y": np.zeros(3, np.int64)}, "holds <U1; images must"),
        ({"x": np.zeros((3, 8, 8), np.int32), "y": np.zeros(3, np.int64)}, "holds int32; images must be uint8"),
        ({"x": np.zeros((3, 8), np.uint8), "y": np.zeros(3, np.int64)}, r"shape \(3, 8\)"),
        ({"x": np.full((3, 8, 8), np.nan, np.float32), "y": np.zeros(3, np.int64)}, "NaN or infinite"),
        ({"x": np.zeros((3, 8, 8), np.uint8), "y": np.zeros(2, np.int64)}, r"must be 3 integer labels"),
        ({"x": np.zeros((3, 8, 8), np.uint8), "y": np.full(3, 0.5)}, r"must be 3 integer labels"),
        ({"x": np.zeros((3, 8, 8), np.uint8), "y": np.array([0, 1, 9])}, r"labels span 0..9 but dataset.n_classes"),
        ({"x": np.zeros((3, 8, 8), np.uint8), "y": np.array([-1, 1, 2])}, r"labels span -1..2"),
    ],
    ids=["empty", "no-images", "strings", "int32", "ndim", "nan", "short-labels", "float-labels", "label-range", "neg"],
)
def test_bad_npz_is_one_dataset_error_naming_the_file(tmp_path, arrays, message):
    path = npz_file(tmp_path, **arrays)
    with pytest.raises(DatasetError, match=message) as error:
        get_dataset({**NPZ, "path": path})
    assert path in str(error.value) and "\n" not in str(error.value)


def test_npz_of_objects_empty_file_and_plain_npy_are_one_line(tmp_path):
    objects = tmp_path / "objects.npz"
    np.savez(objects, x=np.array([{"a": 1}] * 3, dtype=object), y=np.zeros(3, np.int64))
    with pytest.raises(DatasetError, match="objects.npz cannot be read: Object arrays cannot be loaded"):
        get_dataset({**NPZ, "path": str(objects)})
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(DatasetError, match="empty.npz cannot be read"):
        get_dataset({**NPZ, "path": str(empty)})
    plain = tmp_path / "plain.npy"
    np.save(plain, np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(DatasetError, match="is not an .npz archive"):
        get_dataset({**NPZ, "path": str(plain)})


def test_one_channel_npz_with_null_normalization_gets_constants_from_the_data(tmp_path):
    """The issue's crash: a valid 1-channel 8x8 npz in toy mode. npz.yaml now leaves mean/std null."""
    rng = np.random.default_rng(0)
    path = npz_file(tmp_path, x=rng.integers(0, 255, (40, 8, 8), dtype=np.uint8), y=rng.integers(0, 4, 40))
    conf = {**NPZ, "path": path, "mean": None, "std": None}
    weights, _ = search_loaders(conf, LOADER, torch.device("cpu"), seed=0)
    x, _ = next(iter(weights))
    assert x.shape[1] == 1 and weights.mean.shape == (1, 1, 1, 1)
    train, test = eval_loaders(conf, LOADER, torch.device("cpu"), seed=0)
    assert torch.equal(train.mean, test.mean)  # the test split is normalized with the training constants


def test_null_normalization_needs_in_memory_data(tmp_path):
    from archsearch.data.loaders import normalization

    with pytest.raises(DatasetError, match="--dataset.mean and --dataset.std must be set for image folders"):
        normalization({**BASE, "mean": None, "std": None}, object())


def test_too_few_images_for_the_search_split(tmp_path):
    path = npz_file(tmp_path, x=np.zeros((2, 8, 8), np.uint8), y=np.zeros(2, np.int64))
    conf = {**NPZ, "path": path, "test_fraction": 0.5}
    with pytest.raises(DatasetError, match="cannot be split by train_portion"):
        search_loaders(conf, LOADER, torch.device("cpu"), seed=0)


def test_empty_image_folder_and_too_many_classes(tmp_path):
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
    with pytest.raises(DatasetError, match=r"train has no images in class folders"):
        get_dataset({**BASE, "name": "image_folder", "path": str(tmp_path)})
    from PIL import Image

    for split in ("train", "val"):
        for c in ("a", "b", "c"):
            (tmp_path / split / c).mkdir()
            Image.new("RGB", (4, 4)).save(tmp_path / split / c / "0.png")
    with pytest.raises(DatasetError, match="has 3 class folders but dataset.n_classes is 2"):
        get_dataset({**BASE, "name": "image_folder", "path": str(tmp_path), "n_classes": 2})


def test_one_channel_npz_runs_in_toy_mode_through_the_cli(cli, tmp_path):
    """The issue's crash, end to end: the toy config's channels (1) and npz.yaml's null constants agree."""
    rng = np.random.default_rng(0)
    path = npz_file(tmp_path, x=rng.integers(0, 255, (120, 8, 8), dtype=np.uint8), y=rng.integers(0, 4, 120))
    tiny = {"model_desc": {"n_cells": 3, "init_channels": 4}, "loader": {"batch_size": 32, "limit_batches": 2},
            "trainer": {"epochs": 1}}  # fmt: skip
    conf = tmp_path / "tiny.yaml"
    conf.write_text(yaml.safe_dump({"nas": {"search": {**tiny, "random": {"n_candidates": 1}}, "eval": tiny},
                                    "dataset": {"n_classes": 4}}))  # fmt: skip
    proc = cli("--algos", "random", "--datasets", "npz", "--dataset.path", path, "--config", str(conf))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "test accuracy" in proc.stdout
