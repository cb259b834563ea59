"""Candidate operations of the DASViT search space.

Every parametric op is a *pre-norm residual branch*, ``x + f(LayerNorm(x))``, so that one op on one DAG edge is a
whole ViT sub-layer: the standard block ``x1 = x0 + MHSA(LN x0); x2 = x1 + MLP(LN x1)`` is the two-edge DAG
``0 -attn-> 1 -mlp-> 2``, and a genotype can express ViT-B/16 exactly.

Op names (the genotype vocabulary):

=============  ==========================================================================
``none``       zero; lets the search switch an edge off (never part of a discrete genotype)
``skip``       identity
``attn_h{H}``  multi-head self-attention with H heads (qkv and output projections, biased)
``mlp_r{R}``   two-layer GELU MLP with hidden width R * dim
``conv_k{K}``  depthwise K x K convolution over the patch grid (token mixing); CLS passes through
=============  ==========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from dasvit.token_selection import put_rows, take_rows, token_rows
from dasvit.vocabulary import parse_op, resolve

NORM_EPS = 1e-6  # every op's pre-norm uses it, so one normalisation per edge input serves all of them
@dataclass(frozen=True)
class TokenContext:
    """Where the tokens an op sees sit on the patch grid.

    ``patch_index`` is ``None`` when the op sees every token in grid order. Under partial token selection it holds
    the grid positions (B, k) of the selected patch tokens, and ``bypass_patches`` (B, N, D) the values that the
    unselected tokens keep, so that spatial ops can still see their neighbours.
    """

    grid: tuple[int, int]
    patch_index: torch.Tensor | None = None
    bypass_patches: torch.Tensor | None = None
    _memo: dict[str, torch.Tensor] = field(default_factory=dict, compare=False, repr=False)

    @property
    def normalised_bypass(self) -> torch.Tensor | None:
        """The bypass values LayerNormed without affine: computed once per block and shared by its conv ops.
        (A plain dict memo, not ``functools.cached_property``, whose lock ``torch.compile`` cannot trace.)"""
        if self.bypass_patches is None:
            return None
        if "normalised_bypass" not in self._memo:
            self._memo["normalised_bypass"] = F.layer_norm(self.bypass_patches, self.bypass_patches.shape[-1:],
                                                           eps=NORM_EPS)
        return self._memo["normalised_bypass"]

    @property
    def patch_rows(self) -> torch.Tensor:
        """Rows of the selected patches in a (B * N, D) view of the patch grid (``token_selection.token_rows``),
        computed once per block and shared by its conv ops."""
        if "patch_rows" not in self._memo:
            self._memo["patch_rows"] = token_rows(self.patch_index, self.grid[0] * self.grid[1])
        return self._memo["patch_rows"]


class Zero(nn.Module):
    def __init__(self, dim: int = 0):  # every op is built from the token width; these two ignore it
        super().__init__()

    def forward(self, x: torch.Tensor, ctx: TokenContext) -> torch.Tensor:
        return torch.zeros_like(x)


class Identity(nn.Module):
    def __init__(self, dim: int = 0):
        super().__init__()

    def forward(self, x: torch.Tensor, ctx: TokenContext) -> torch.Tensor:
        return x


class PreNormResidual(nn.Module):
    """``x + branch(LayerNorm(x))``: the shape every parametric candidate op shares."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=NORM_EPS)

    def branch(self, h: torch.Tensor, ctx: TokenContext) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, ctx: TokenContext) -> torch.Tensor:
        return x + self.branch(self.norm(x), ctx)


class SelfAttention(PreNormResidual):
    def __init__(self, dim: int, heads: int):
        super().__init__(dim)
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    # The two halves around the projections, so that the fused mixed op can batch the projections of all ops.
    in_proj = property(lambda self: self.qkv)
    out_proj = property(lambda self: self.proj)

    def core(self, qkv: torch.Tensor) -> torch.Tensor:
        """Multi-head attention of the projected ``qkv`` (B, T, 3D), before the output projection."""
        batch, tokens, dim = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3
        q, k, v = qkv.reshape(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, tokens, dim)

    def branch(self, h: torch.Tensor, ctx: TokenContext) -> torch.Tensor:
        return self.proj(self.core(self.qkv(h)))


class Mlp(PreNormResidual):
    def __init__(self, dim: int, ratio: int):
        super().__init__(dim)
        self.fc1 = nn.Linear(dim, ratio * dim)
        self.fc2 = nn.Linear(ratio * dim, dim)

    in_proj = property(lambda self: self.fc1)
    out_proj = property(lambda self: self.fc2)

    def branch(self, h: torch.Tensor, ctx: TokenContext) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(h)))


class GridConv(PreNormResidual):
    """Depthwise convolution over the patch grid; the CLS token gets a zero branch (it has no grid position)."""

    def __init__(self, dim: int, kernel: int):
        super().__init__(dim)
        self.conv = nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim)

    def branch(self, h: torch.Tensor, ctx: TokenContext) -> torch.Tensor:
        # Unselected tokens keep their bypass value; normalise it the same way so the conv sees one field.
        canvas = self.norm(ctx.bypass_patches) if ctx.patch_index is not None else None
        return self.mix(h, ctx, canvas)

    def mix(self, h: torch.Tensor, ctx: TokenContext, canvas: torch.Tensor | None) -> torch.Tensor:
        """The branch for normalised tokens ``h``; ``canvas`` holds every patch's normalised value (B, N, D) when
        only some tokens are selected."""
        cls, patches = h[:, :1], h[:, 1:]
        batch, _, dim = patches.shape
        height, width = ctx.grid
        if ctx.patch_index is not None:
            patches = put_rows(canvas, ctx.patch_rows, patches)
        grid = patches.transpose(1, 2).reshape(batch, dim, height, width)
        mixed = self.conv(grid).flatten(2).transpose(1, 2)
        if ctx.patch_index is not None:
            mixed = take_rows(mixed, ctx.patch_rows)
        return torch.cat([torch.zeros_like(cls), mixed], dim=1)


def build_op(name: str, dim: int) -> nn.Module:
    """Instantiate the op called ``name`` for embedding width ``dim``."""
    spec = parse_op(name, dim)
    op = resolve(spec.properties.module)
    return op(dim, spec.arg) if spec.properties.argument else op(dim)


def init_vit_weights(module: nn.Module) -> None:
    """timm-style ViT init: truncated-normal linear weights (std 0.02), zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def grid_size(image_size: int, patch_size: int) -> tuple[int, int]:
    side = image_size // patch_size
    return side, side
