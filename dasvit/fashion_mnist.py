"""Fashion-MNIST (Zalando, MIT licence): 60,000 + 10,000 real 28x28 grayscale images of 10 clothing classes, read
from the four official IDX ``.gz`` files.

Where the files come from, in this order: ``--data-root`` (the four files, or torchvision's ``FashionMNIST/raw``
layout under it); Debian's package ``dataset-fashion-mnist`` installed (``/usr/share/datasets/fashion-mnist``) or
unpacked into the checkout's git-ignored ``.data/`` (``apt-get download dataset-fashion-mnist && dpkg-deb -x
dataset-fashion-mnist_*_all.deb .data``, what the README's test command does); with ``--download`` and a data
root, torchvision's ``FashionMNIST`` fetches them there.

The protocol (``FASHION_PROTOCOL``), the same for every Fashion-MNIST script and independent of ``--seed``:
the official train split is permuted once (seed 0); its first 10,000 images are the *selection* split, never
trained on: a retraining's per-epoch validation accuracy, the objective's ground truth and the champion's choice
read it. Of the other 50,000, the first ``train_images`` (10,000 by default: the study size) are what searches and
retrainings use: a search fits weights on one half and alpha on the other (split by ``--seed``), a retraining
trains on all of them. ``train_images: 50000`` is the full protocol. The official 10,000 test images are read
only for the reported figure.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dasvit.vocabulary import DataError

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
_SIZES = {"train": 60_000, "test": 10_000}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CHECKOUT_DIR = Path(__file__).resolve().parents[1] / ".data" / DEBIAN_DIR.relative_to("/")
HOW_TO_GET = (
    "get them with `apt-get download dataset-fashion-mnist && dpkg-deb -x dataset-fashion-mnist_*_all.deb .data` "
    "in the checkout (or `apt-get install dataset-fashion-mnist`), or pass --data-root DIR --download to fetch them "
    "with torchvision"
)


@dataclass(frozen=True)
class Protocol:
    """Which images of the official train split each step of a study may read (see the module docstring)."""

    selection_images: int = 10_000
    default_train_images: int = 10_000
    split_seed: int = 0

    @property
    def max_train_images(self) -> int:
        return _SIZES["train"] - self.selection_images


FASHION_PROTOCOL = Protocol()


def _read_idx(path: Path, expected: int, image: bool) -> np.ndarray:
    """The array in one IDX ``.gz`` file, checked against its header and the official count."""
    magic, header = (2051, 16) if image else (2049, 8)
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise DataError(f"Fashion-MNIST file {str(path)!r} is unreadable or damaged ({err}); {HOW_TO_GET}") from None
    fields = np.frombuffer(raw[: header], dtype=">i4") if len(raw) >= header else np.array([])
    shape = (expected, 28, 28) if image else (expected,)
    if len(fields) < 2 or fields[0] != magic or tuple(fields[1:]) != shape or len(raw) != header + int(np.prod(shape)):
        raise DataError(f"Fashion-MNIST file {str(path)!r} is damaged: its header or size is not that of "
                        f"{expected:,} {'images' if image else 'labels'}; {HOW_TO_GET}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def locate(root: str | Path | None, download: bool) -> Path:
    """The folder holding the four official files: the data root, else Debian's path, else the checkout's copy."""
    if root is not None:
        root = Path(root)
        if download:
            _download(root)
        for folder in (root, root / "FashionMNIST" / "raw"):
            if _holds_the_files(folder):
                return folder
        raise DataError(f"the Fashion-MNIST files ({', '.join(FILES.values())}) are not in data root {str(root)!r}; "
                        + HOW_TO_GET)
    for folder in (DEBIAN_DIR, CHECKOUT_DIR):
        if _holds_the_files(folder):
            return folder
    raise DataError(f"the Fashion-MNIST files are neither in {DEBIAN_DIR} nor in {CHECKOUT_DIR}; {HOW_TO_GET}")


def _holds_the_files(folder: Path) -> bool:
    return all((folder / name).is_file() for name in FILES.values())


def _download(root: Path) -> None:
    from torchvision import datasets

    try:
        root.mkdir(parents=True, exist_ok=True)
        datasets.FashionMNIST(str(root), train=True, download=True)
        datasets.FashionMNIST(str(root), train=False, download=True)
    except (RuntimeError, OSError) as err:
        raise DataError(f"downloading Fashion-MNIST into {str(root)!r} failed ({err}); {HOW_TO_GET}") from None


def read_official(folder: Path) -> dict[str, torch.Tensor]:
    """The four official arrays as tensors: images float in [0, 1] (N, 1, 28, 28), labels int64."""
    arrays = {}
    for key, name in FILES.items():
        split, kind = key.split("_")
        array = _read_idx(folder / name, _SIZES[split], image=kind == "images")
        arrays[key] = (torch.from_numpy(array.copy()).float().unsqueeze(1) / 255.0 if kind == "images"
                       else torch.from_numpy(array.astype(np.int64)))
    return arrays


def protocol_indices(train_images: int, protocol: Protocol = FASHION_PROTOCOL) -> tuple[np.ndarray, np.ndarray]:
    """(selection, training) indices into the official train split: fixed, whatever the search seed."""
    order = np.random.default_rng(protocol.split_seed).permutation(_SIZES["train"])
    selection = order[: protocol.selection_images]
    return selection, order[protocol.selection_images: protocol.selection_images + train_images]
