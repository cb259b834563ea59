"""What a searched genotype is compared with: a hand-designed ViT, random genotypes of the same space, a small CNN.

The hand ViT and the random genotypes are genotypes, so they train through exactly the retraining code a searched
one does; the CNN goes through the same recipe (``dasvit.retrain.train_from_scratch``).
"""

from __future__ import annotations

import torch
from torch import nn

from dasvit.discretise import discretise
from dasvit.genotype import BlockGenotype, Edge, Genotype, InputSpec
from dasvit.vocabulary import SearchSpace


def hand_vit(depth: int, embed_dim: int, patch_size: int, input_spec: InputSpec, heads: int = 4,
             mlp_ratio: int = 4, head: str = "cls") -> Genotype:
    """The standard ViT encoder (``x + MHSA(LN x)``, then ``x + MLP(LN x)``) of the given depth and width."""
    block = BlockGenotype(2, (Edge(0, 1, f"attn_h{heads}"), Edge(1, 2, f"mlp_r{mlp_ratio}")))
    return Genotype(embed_dim, patch_size, input_spec, (block,) * depth, {"baseline": "hand_vit"}, head)


def random_genotype(space: SearchSpace, depth: int, embed_dim: int, patch_size: int, input_spec: InputSpec,
                    generator: torch.Generator, head: str = "avg") -> Genotype:
    """A uniformly random architecture of ``space``: random alpha, discretised by the search's own argmax rule."""
    alphas = [torch.rand(space.num_edges, len(space.ops), generator=generator) for _ in range(depth)]
    masks = [space.full_mask() for _ in range(depth)]
    return discretise(alphas, masks, space, embed_dim, patch_size, input_spec, head, {"baseline": "random"})


class SmallCNN(nn.Module):
    """A plain CNN for the ViT-CNN gap: stages of two 3x3 conv-BN-GELU layers, each stage halving the resolution
    and doubling the width, then global average pooling and a linear head."""

    def __init__(self, in_chans: int, num_classes: int, width: int = 16, stages: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_chans
        for stage in range(stages):
            out = width * 2**stage
            for k in range(2):
                layers += [nn.Conv2d(channels, out, 3, stride=2 if (k == 0 and stage > 0) else 1, padding=1,
                                     bias=False), nn.BatchNorm2d(out), nn.GELU()]
                channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images).mean(dim=(2, 3)))
