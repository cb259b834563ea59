"""Attention-based partial token selection (after EViT).

Only the ``ceil(r * N)`` patch tokens that the CLS token attends to most (plus CLS itself) go through a block's
mixed operations; the others bypass the block unchanged. The score is a parameter-free single-head CLS attention
on the LayerNormed block input, ``softmax_i(<x̂_cls, x̂_i> / sqrt(D))``: it costs O(N·D), adds no weights that the
retrained network would lack, and, softmax being monotonic, its top-k equals the top-k of the logits.
``r = 1`` selects every token, i.e. plain DARTS.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def num_kept(num_patches: int, keep_ratio: float) -> int:
    return max(1, math.ceil(keep_ratio * num_patches))


def cls_attention_scores(tokens: torch.Tensor) -> torch.Tensor:
    """CLS-to-patch attention logits (B, N) of the tokens (B, 1 + N, D)."""
    normed = F.layer_norm(tokens, tokens.shape[-1:])
    return (normed[:, 1:] @ normed[:, 0].unsqueeze(-1)).squeeze(-1) / math.sqrt(tokens.shape[-1])


def select_tokens(tokens: torch.Tensor, keep_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(selected, patch_index)``: CLS + the top-k patch tokens (B, 1 + k, D), and their grid positions.

    Positions are sorted so the selected tokens keep their spatial order.
    """
    patches = tokens[:, 1:]
    k = num_kept(patches.shape[1], keep_ratio)
    with torch.no_grad():
        patch_index = cls_attention_scores(tokens).topk(k, dim=1).indices.sort(dim=1).values
    picked = patches.gather(1, patch_index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
    return torch.cat([tokens[:, :1], picked], dim=1), patch_index


def merge_tokens(tokens: torch.Tensor, processed: torch.Tensor, patch_index: torch.Tensor) -> torch.Tensor:
    """Write the processed CLS + selected tokens back into ``tokens``; every other token keeps its value."""
    index = patch_index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1])
    patches = tokens[:, 1:].scatter(1, index, processed[:, 1:])
    return torch.cat([processed[:, :1], patches], dim=1)
