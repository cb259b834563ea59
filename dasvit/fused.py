"""The fused mixed op: the same math as ``sum_o w_o * o(x)`` over an edge's candidates, in a few large kernels.

The eager mixed op runs every candidate separately: a LayerNorm each, two projections each, a weighted sum. On the
small search networks that is ~1,000 tiny ops per step, and the host's dispatch cost, not arithmetic, sets the
step time. The fused path keeps the parameters (so checkpoints, the eager path and the genotype are unchanged)
and rewrites the computation with identities that hold exactly in real arithmetic:

* every op is ``x + f_o(LN_o x)`` (``skip`` is ``x``), so the residuals add up to ``(sum_o w_o) x``;
* ``LN_o x = n * g_o + b_o`` with ``n`` the normalisation without affine, which all ops share: one per edge;
* the affine folds into the first projection, ``W (n g + b) + c = (W diag g) n + (W b + c)``, so the qkv and fc1
  projections of all attention and MLP ops are one matmul over ``n``;
* the weighted output projections ``sum_o w_o (P_o z_o + p_o)`` are one matmul of the concatenated ``z_o`` with
  ``[w_o P_o]`` (scaling the weights, not the activations), plus ``sum_o w_o p_o``;
* a depthwise conv gets ``n * g + b`` from the shared ``n`` (the bias cannot fold through its zero padding).

Only rounding differs from the eager path (an equivalence test bounds it in fp32).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dasvit.ops import NORM_EPS, GridConv, Mlp, SelfAttention, TokenContext


def fused_mixed_forward(ops: nn.ModuleList, weights: torch.Tensor, x: torch.Tensor, ctx: TokenContext,
                        eager: Sequence[int] = ()) -> torch.Tensor:
    """``sum_o weights[o] * ops[o](x, ctx)`` for the built (non-``none``) ops of one edge; ``weights`` aligns
    with ``ops``. The ops at positions ``eager`` (of families without a fused form) run as they are."""
    out = _residuals(weights, x, eager)
    for k in eager:
        out = out + weights[k] * ops[k](x, ctx)
    projected = [(k, op) for k, op in enumerate(ops) if isinstance(op, (SelfAttention, Mlp)) and k not in eager]
    convs = [(k, op) for k, op in enumerate(ops) if isinstance(op, GridConv) and k not in eager]
    if not projected and not convs:
        return out
    normed = F.layer_norm(x, x.shape[-1:], eps=NORM_EPS)
    if projected:
        out = out + _projected_branches(projected, weights, normed)
    for k, op in convs:
        bypass = ctx.normalised_bypass
        canvas = torch.addcmul(op.norm.bias, bypass, op.norm.weight) if bypass is not None else None
        out = out + weights[k] * op.mix(torch.addcmul(op.norm.bias, normed, op.norm.weight), ctx, canvas)
    return out


def _residuals(weights: torch.Tensor, x: torch.Tensor, eager: Sequence[int]) -> torch.Tensor:
    """Every fused op's residual, and skip: ``(sum of their weights) x``."""
    if not eager:
        return weights.sum() * x
    fused = [k for k in range(len(weights)) if k not in eager]
    return weights[fused].sum() * x if fused else torch.zeros_like(x)


def _projected_branches(ops: list[tuple[int, nn.Module]], weights: torch.Tensor, normed: torch.Tensor) -> torch.Tensor:
    """``sum_o w_o * proj_o(core_o(in_o(LN_o x)))`` over the attention and MLP ops, with one input and one output
    matmul for all of them."""
    attns = [(k, op) for k, op in ops if isinstance(op, SelfAttention)]
    mlps = [(k, op) for k, op in ops if isinstance(op, Mlp)]
    ordered = attns + mlps  # MLP hidden units last and contiguous: one GELU for all of them
    in_weight = torch.cat([op.in_proj.weight * op.norm.weight for _, op in ordered])
    in_bias = torch.cat([torch.addmv(op.in_proj.bias, op.in_proj.weight, op.norm.bias) for _, op in ordered])
    mlp_width = [sum(op.in_proj.out_features for _, op in mlps)] if mlps else []
    widths = [op.in_proj.out_features for _, op in attns] + mlp_width
    pieces = F.linear(normed, in_weight, in_bias).split(widths, dim=-1)  # split, not slices: its backward is one cat
    parts = [op.core(piece) for (_, op), piece in zip(attns, pieces)]
    if mlps:
        parts.append(F.gelu(pieces[-1]))
    picked = weights[[k for k, _ in ordered]]
    out_weight = torch.cat([w * op.out_proj.weight for w, (_, op) in zip(picked, ordered)], dim=1)
    out_bias = picked @ torch.stack([op.out_proj.bias for _, op in ordered])
    return F.linear(torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0], out_weight, out_bias)

