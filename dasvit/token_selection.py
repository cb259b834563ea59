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


def token_rows(index: torch.Tensor, length: int) -> torch.Tensor:
    """Row numbers of the positions ``index`` (B, k) in the (B * length, D) view of a (B, length, D) tensor.

    Selecting and writing back whole rows (``index_select`` / ``index_copy``) moves the same values as an
    element-wise ``gather`` / ``scatter`` over an expanded (B, k, D) index, at a fraction of the cost on CPU."""
    offsets = length * torch.arange(index.shape[0], device=index.device).unsqueeze(1)
    return (index + offsets).reshape(-1)


def take_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The ``rows`` (from ``token_rows``) of ``x`` (B, L, D), as (B, k, D)."""
    return x.reshape(-1, x.shape[-1]).index_select(0, rows).reshape(x.shape[0], -1, x.shape[-1])


def put_rows(x: torch.Tensor, rows: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``x`` (B, L, D) with its ``rows`` (from ``token_rows``) replaced by ``values`` (B, k, D); out of place."""
    return x.reshape(-1, x.shape[-1]).index_copy(0, rows, values.reshape(-1, x.shape[-1])).reshape(x.shape)


def _with_cls(patch_index: torch.Tensor) -> torch.Tensor:
    """Token positions (B, 1 + k) of CLS and the patches at grid positions ``patch_index``."""
    return torch.cat([torch.zeros_like(patch_index[:, :1]), patch_index + 1], dim=1)


def select_tokens(tokens: torch.Tensor, keep_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(selected, patch_index)``: CLS + the top-k patch tokens (B, 1 + k, D), and their grid positions.

    Positions are sorted so the selected tokens keep their spatial order.
    """
    k = num_kept(tokens.shape[1] - 1, keep_ratio)
    with torch.no_grad():
        patch_index = cls_attention_scores(tokens).topk(k, dim=1).indices.sort(dim=1).values
    return take_rows(tokens, token_rows(_with_cls(patch_index), tokens.shape[1])), patch_index


def merge_tokens(tokens: torch.Tensor, processed: torch.Tensor, patch_index: torch.Tensor) -> torch.Tensor:
    """Write the processed CLS + selected tokens back into ``tokens``; every other token keeps its value."""
    return put_rows(tokens, token_rows(_with_cls(patch_index), tokens.shape[1]), processed)
