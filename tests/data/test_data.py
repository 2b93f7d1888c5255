import numpy as np
import pytest
import torch

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
    with pytest.raises(DatasetError, match="labels span 0..3; set --dataset.n_classes"):
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
