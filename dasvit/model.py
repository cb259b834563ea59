"""The discrete network a genotype describes: a plain ViT with no alpha, no mixing and no token selection."""

from __future__ import annotations

import torch
from torch import nn

from dasvit.backbone import ViTHead, ViTStem
from dasvit.genotype import BlockGenotype, Genotype
from dasvit.ops import TokenContext, build_op, init_vit_weights


class DagBlock(nn.Module):
    """One encoder block: node j is the sum of its incoming edges' ops; edges that cannot reach the output are dropped."""

    def __init__(self, block: BlockGenotype, dim: int):
        super().__init__()
        self.nodes = block.nodes
        self.edges = [(e.source, e.target) for e in block.live_edges()]
        self.ops = nn.ModuleList(build_op(e.op, dim) for e in block.live_edges())

    def forward(self, x: torch.Tensor, ctx: TokenContext) -> torch.Tensor:
        states: dict[int, torch.Tensor] = {0: x}
        for j in range(1, self.nodes + 1):
            inputs = [op(states[i], ctx) for (i, t), op in zip(self.edges, self.ops) if t == j]
            if inputs:
                states[j] = torch.stack(inputs).sum(0) if len(inputs) > 1 else inputs[0]
        return states[self.nodes]


class DiscreteViT(nn.Module):
    """The plain network of a genotype: ViT stem, one ``DagBlock`` per genotype block, the genotype's head.

    Args:
        genotype: the architecture (blocks, width, patch size, head).
        image_size: input side in pixels (divisible by the genotype's patch size).
        in_chans: input channels.
        num_classes: classifier outputs.
    """

    def __init__(self, genotype: Genotype, image_size: int, in_chans: int, num_classes: int):
        super().__init__()
        self.stem = ViTStem(image_size, genotype.patch_size, in_chans, genotype.embed_dim)
        self.blocks = nn.ModuleList(DagBlock(b, genotype.embed_dim) for b in genotype.blocks)
        self.head = ViTHead(genotype.embed_dim, num_classes, genotype.head)
        self.apply(init_vit_weights)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.stem(images)
        ctx = TokenContext(self.stem.grid)
        for block in self.blocks:
            tokens = block(tokens, ctx)
        return self.head(tokens)


def build_model(
    genotype: Genotype, image_size: int | None = None, in_chans: int | None = None, num_classes: int | None = None
) -> DiscreteViT:
    """Build the genotype's network for an input; unspecified dimensions default to the genotype's own."""
    spec = genotype.input
    return DiscreteViT(
        genotype,
        image_size or spec.image_size,
        in_chans or spec.in_chans,
        num_classes or spec.num_classes,
    )
