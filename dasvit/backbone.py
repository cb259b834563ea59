"""The parts every DASViT network shares, searchable or not: patch embedding + CLS + position embedding, and the
final LayerNorm + linear head (the torchvision ``vit_b_16`` layout, parameter for parameter).

The head reads the CLS token (``pool="cls"``, as ViT-B/16) or the mean of the patch tokens (``pool="avg"``, timm's
``global_pool="avg"``). The mean-pooled head sees every patch whatever ops the blocks hold, so no architecture is a
constant classifier and every op of every block reaches the loss; the CLS token stays, for token selection."""

from __future__ import annotations

import torch
from torch import nn

from dasvit.ops import grid_size
from dasvit.vocabulary import HEADS


class ViTStem(nn.Module):
    def __init__(self, image_size: int, patch_size: int, in_chans: int, dim: int):
        super().__init__()
        if image_size % patch_size != 0:
            raise ValueError(f"image size {image_size} is not divisible by patch size {patch_size}")
        self.grid = grid_size(image_size, patch_size)
        self.patch_embed = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid[0] * self.grid[1], dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embed(images).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(patches.shape[0], -1, -1)
        return torch.cat([cls, patches], dim=1) + self.pos_embed


class ViTHead(nn.Module):
    def __init__(self, dim: int, num_classes: int, pool: str = "cls"):
        super().__init__()
        if pool not in HEADS:
            raise ValueError(f"head {pool!r} is not one of {', '.join(HEADS)}")
        self.pool = pool
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pooled = tokens[:, 0] if self.pool == "cls" else tokens[:, 1:].mean(dim=1)
        return self.fc(self.norm(pooled))
