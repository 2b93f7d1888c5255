"""Loaders for search (weights/arch split of the training set) and evaluation (train/test).

In-memory datasets use `TensorLoader`: it indexes whole batches, moves them to the device and runs
crop/flip/cutout/normalize there, batched, so a CPU core never decodes or augments image by image.
Every epoch's order and augmentation come from a generator seeded by (seed, epoch): a resumed run sees
exactly the batches an uninterrupted one would.

Under torchrun `batch_size` stays the global batch: every rank draws the same seeded permutation, forms the
same global batches (augmented as one, so the numbers drawn do not depend on the world size) and keeps its
own contiguous slice (`torch.tensor_split`: padding-free, the slices add up to the batch). A training loader
drops a last global batch smaller than the world size (some rank would get no sample); an evaluation loader
keeps every sample, so a metric reduced over the ranks covers the whole split exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from archsearch.common import distributed
from archsearch.common.errors import ConfigError, DatasetError
from archsearch.data.providers import TensorImages, get_dataset

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Augment:
    crop_padding: int = 0
    hflip: bool = False
    cutout: int = 0


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def random_crop(x: torch.Tensor, padding: int, g: torch.Generator) -> torch.Tensor:
    """torchvision RandomCrop(size, padding) for a whole batch: zero-pad, take a random window per image."""
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    oy = torch.randint(0, 2 * padding + 1, (n, 1), generator=g).to(x.device)
    ox = torch.randint(0, 2 * padding + 1, (n, 1), generator=g).to(x.device)
    rows = oy + torch.arange(h, device=x.device)
    cols = ox + torch.arange(w, device=x.device)
    out = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * padding))
    return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def random_hflip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    flip = (torch.rand(x.shape[0], generator=g) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def cutout(x: torch.Tensor, length: int, g: torch.Generator) -> torch.Tensor:
    """DARTS' Cutout: zero a length x length square (clipped at the border) centred uniformly at random."""
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n, 1, 1), generator=g).to(x.device)
    cx = torch.randint(0, w, (n, 1, 1), generator=g).to(x.device)
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    half = length // 2
    inside = (ys >= cy - half) & (ys < cy + half) & (xs >= cx - half) & (xs < cx + half)
    return x * (~inside)[:, None].to(x.dtype)


def n_batches(n: int, batch_size: int, drop_tiny_last: bool, world: int) -> int:
    """Global batches of an epoch of n samples; a last batch with fewer samples than ranks is dropped in
    training (`drop_tiny_last`), since a rank without a sample cannot take a step with the others."""
    full, rest = divmod(n, batch_size)
    return full + (1 if rest and not (drop_tiny_last and rest < world) else 0)


def rank_slice(batch: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This rank's contiguous part of a global batch (all of it without torchrun)."""
    return batch if world == 1 else torch.tensor_split(batch, world)[rank]


class TensorLoader:
    """Batches from in-memory images with on-device augmentation and normalization."""

    def __init__(
        self,
        images: TensorImages,
        indices: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool,
        augment: Augment | None,
        mean: list[float],
        std: list[float],
        device: torch.device,
        seed: int,
        limit_batches: int | None = None,
        shard: bool = True,
    ) -> None:
        on_device = device.type == "cuda"
        self.x = images.x[indices].to(device) if on_device else images.x[indices]
        self.y = images.y[indices].to(device) if on_device else images.y[indices]
        self.batch_size = batch_size
        self.shuffle, self.augment, self.device, self.seed = shuffle, augment, device, seed
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.limit_batches = limit_batches
        self.epoch = 0
        # shard=False: every rank sees whole batches (a proxy scoring one fixed batch the same everywhere)
        self.rank, self.world = (distributed.rank(), distributed.world_size()) if shard else (0, 1)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def n_samples(self) -> int:
        return len(self.y)

    def __len__(self) -> int:
        n = n_batches(len(self.y), self.batch_size, self.shuffle, self.world)
        return min(n, self.limit_batches) if self.limit_batches else n

    def __iter__(self) -> Iterator[Batch]:
        g = _epoch_generator(self.seed, self.epoch)
        n = len(self.y)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        order = order.to(self.x.device)
        sharded = self.world > 1
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            if sharded and self.augment is None:  # nothing random per image: load only this rank's slice
                idx = rank_slice(idx, self.rank, self.world)
            x = self.x[idx].to(self.device, non_blocking=True)
            y = self.y[idx].to(self.device, non_blocking=True)
            x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
            aug = self.augment
            if aug is not None and aug.crop_padding:
                x = random_crop(x, aug.crop_padding, g)
            if aug is not None and aug.hflip:
                x = random_hflip(x, g)
            x = (x - self.mean) / self.std
            if aug is not None and aug.cutout:
                x = cutout(x, aug.cutout, g)
            if sharded and aug is not None:  # augmented as the whole global batch, then sliced
                x, y = rank_slice(x, self.rank, self.world), rank_slice(y, self.rank, self.world)
            if len(y):  # an evaluation rank whose slice of a tiny last batch is empty skips it
                yield x, y


class FolderLoader:
    """A torch DataLoader over an image folder with torchvision transforms, seeded per epoch."""

    def __init__(
        self,
        dataset,
        batch_size: int,
        *,
        shuffle: bool,
        workers: int,
        seed: int,
        device: torch.device,
        limit_batches: int | None = None,
        shard: bool = True,
    ) -> None:
        self.dataset, self.batch_size, self.shuffle, self.workers = dataset, batch_size, shuffle, workers
        self.seed, self.device, self.limit_batches, self.epoch = seed, device, limit_batches, 0
        self.rank, self.world = (distributed.rank(), distributed.world_size()) if shard else (0, 1)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def n_samples(self) -> int:
        return len(self.dataset)

    def __len__(self) -> int:
        n = n_batches(len(self.dataset), self.batch_size, self.shuffle, self.world)
        return min(n, self.limit_batches) if self.limit_batches else n

    def rank_batches(self) -> list[list[int]]:
        """This rank's slice of every global batch of the epoch's seeded permutation (torchrun)."""
        n = len(self.dataset)
        g = _epoch_generator(self.seed, self.epoch)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        batches = [order[b * self.batch_size : (b + 1) * self.batch_size] for b in range(len(self))]
        return [part.tolist() for part in (rank_slice(b, self.rank, self.world) for b in batches) if len(part)]

    def __iter__(self) -> Iterator[Batch]:
        common = dict(num_workers=self.workers, pin_memory=self.device.type == "cuda")
        if self.world > 1:
            loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=self.rank_batches(), **common)
        else:
            loader = torch.utils.data.DataLoader(
                self.dataset,
                self.batch_size,
                shuffle=self.shuffle,
                generator=_epoch_generator(self.seed, self.epoch),
                **common,
            )
        for b, (x, y) in enumerate(loader):
            if b >= len(self):
                break
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def _folder_transforms(
    norm_constants: tuple[list[float], list[float]], conf_dataset: Mapping, train: bool, cutout_len: int
):
    from torchvision import transforms as T

    size = conf_dataset["image_size"]
    norm = [T.ToTensor(), T.Normalize(*norm_constants)]
    if not train:
        return T.Compose([T.Resize(int(size * 8 / 7)), T.CenterCrop(size), *norm])
    steps = [T.RandomResizedCrop(size), T.RandomHorizontalFlip(), *norm]
    if cutout_len:
        steps.append(T.Lambda(lambda x: cutout(x[None], cutout_len, torch.default_generator)[0]))
    return T.Compose(steps)


def normalization(conf_dataset: Mapping, train) -> tuple[list[float], list[float]]:
    """(mean, std) per channel: the dataset section's, or computed from the training images when both are null
    (the npz default), so a user's arrays need no hand-computed constants that might not match their channels."""
    mean, std = conf_dataset["mean"], conf_dataset["std"]
    if mean is not None and std is not None:
        return list(mean), list(std)
    if not isinstance(train, TensorImages):
        raise DatasetError(
            f"dataset {conf_dataset['name']}: --dataset.mean and --dataset.std must be set for image folders "
            "(computing them needs one pass over every image)"
        )
    x = train.x.float().div_(255.0) if train.x.dtype == torch.uint8 else train.x.float()
    computed_std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)  # a constant channel must not divide by zero
    return x.mean(dim=(0, 2, 3)).tolist(), computed_std.tolist()


def _make_loader(
    data,
    indices: torch.Tensor | None,
    conf_dataset: Mapping,
    conf_loader: Mapping,
    *,
    train: bool,
    device: torch.device,
    seed: int,
    norm: tuple[list[float], list[float]],
    batch_size: int | None = None,
    shard: bool = True,
):
    section = getattr(conf_loader, "path", "") or "nas.<phase>.loader"
    key = f"{section}.{'batch_size' if batch_size is None else 'test_batch_size'}"
    batch_size = batch_size or conf_loader["batch_size"]
    distributed.per_rank_batch(batch_size, key)  # the global batch must split evenly among torchrun's ranks
    limit = conf_loader["limit_batches"] if train else None  # always test on the whole test set
    if isinstance(data, TensorImages):
        augment = None
        if train and conf_loader["augment"]:
            augment = Augment(conf_dataset["crop_padding"], conf_dataset["hflip"], conf_loader["cutout"])
        idx = indices if indices is not None else torch.arange(len(data))
        return TensorLoader(
            data,
            idx,
            batch_size,
            shuffle=train,
            augment=augment,
            mean=norm[0],
            std=norm[1],
            device=device,
            seed=seed,
            limit_batches=limit,
            shard=shard,
        )
    data.transform = _folder_transforms(norm, conf_dataset, train and conf_loader["augment"], conf_loader["cutout"])
    subset = torch.utils.data.Subset(data, indices.tolist()) if indices is not None else data
    return FolderLoader(
        subset,
        batch_size,
        shuffle=train,
        workers=conf_loader["workers"],
        seed=seed,
        device=device,
        limit_batches=limit,
        shard=shard,
    )


def search_loaders(conf_dataset: Mapping, conf_loader: Mapping, device: torch.device, seed: int, shard: bool = True):
    """(weights loader, arch loader): the training set split by `train_portion` (DARTS: 0.5).

    The test set is never touched during search. `shard=False` gives every torchrun rank whole batches.
    """
    train, _ = get_dataset(conf_dataset)
    n = len(train)
    portion = conf_loader["train_portion"]
    if not 0.0 < portion < 1.0:
        raise ConfigError(f"config nas.search.loader.train_portion must be between 0 and 1, got {portion}")
    split = int(n * portion)
    if not 0 < split < n:
        raise DatasetError(
            f"dataset {conf_dataset['name']}: {n} training images cannot be split by train_portion {portion} "
            "into two non-empty parts"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    common = dict(train=True, device=device, norm=normalization(conf_dataset, train), shard=shard)
    weights = _make_loader(train, perm[:split], conf_dataset, conf_loader, seed=seed, **common)
    arch = _make_loader(train, perm[split:], conf_dataset, conf_loader, seed=seed + 1, **common)
    return weights, arch


def eval_loaders(conf_dataset: Mapping, conf_loader: Mapping, device: torch.device, seed: int):
    """(train loader over the whole training set, test loader)."""
    train, test = get_dataset(conf_dataset)
    norm = normalization(conf_dataset, train)  # the test images are normalized like the training images
    train_loader = _make_loader(train, None, conf_dataset, conf_loader, train=True, device=device, seed=seed, norm=norm)
    test_loader = _make_loader(
        test,
        None,
        conf_dataset,
        conf_loader,
        train=False,
        device=device,
        seed=seed,
        norm=norm,
        batch_size=conf_loader["test_batch_size"],
    )
    return train_loader, test_loader
