"""Synthetic images of a given shape, for timing and memory only (never for an accuracy claim): nothing can be
downloaded here, and cost does not depend on what the pixels show. Each image is drawn from its own seeded
generator on access, so a data set of any size costs no memory up front."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from dasvit.data import ImageData


class SyntheticImages(Dataset):
    def __init__(self, count: int, channels: int, size: int, num_classes: int, seed: int = 0):
        self.count, self.shape, self.num_classes, self.seed = count, (channels, size, size), num_classes, seed

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        return torch.rand(self.shape, generator=generator), index % self.num_classes


def synthetic_data(count: int, channels: int, size: int, num_classes: int) -> ImageData:
    """An ``ImageData`` of synthetic images: ``count`` for train + search-val, 1,000 for test."""
    return ImageData(name=f"synthetic-{channels}x{size}x{size}", trainval=SyntheticImages(count, channels, size,
                     num_classes), test=SyntheticImages(1000, channels, size, num_classes, seed=1),
                     num_classes=num_classes, in_chans=channels, native_size=size, mean=(0.5,) * channels,
                     std=(0.29,) * channels, flip=True)
