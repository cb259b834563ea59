"""Progressive search (after P-DARTS): a schedule of stages that deepen the supernet while pruning ops.

Stage s trains a supernet of ``depth`` blocks in which every edge keeps at most ``ops`` candidate ops besides
``none`` (``None``: all that are left; the first stage always searches the whole space). Between stages the
weakest ops of each edge (lowest softmax weight) are pruned to the next stage's budget, and the op masks are
stretched to the new depth: new block b inherits the mask of old block ``floor(b * old_depth / new_depth)``.
Weights and alpha are re-initialised at each stage (as in P-DARTS), so alpha of a stage only reflects choices
among the ops that survived; per-stage alpha and masks are recorded.
"""

from __future__ import annotations

import torch

from dasvit.search_space import masked_softmax


def pruning_strength(alpha: torch.Tensor, mask: torch.Tensor, none_columns: list[int]) -> torch.Tensor:
    """What pruning ranks the ops of each edge by: their softmax weight, -1 for ``none`` and for pruned ops."""
    strength = masked_softmax(alpha.detach().float(), mask).masked_fill(~mask, -1.0)
    strength[:, none_columns] = -1.0
    return strength


def prune_masks(
    alphas: list[torch.Tensor], masks: list[torch.Tensor], none_columns: list[int], keep: int
) -> list[torch.Tensor]:
    """Keep, per edge, ``none`` and the ``keep`` strongest other active ops."""
    pruned = []
    for alpha, mask in zip(alphas, masks):
        strength = pruning_strength(alpha, mask, none_columns)
        new_mask = torch.zeros_like(mask)
        top = strength.topk(min(keep, mask.shape[1]), dim=1)
        new_mask.scatter_(1, top.indices, top.values >= 0)
        new_mask[:, none_columns] = mask[:, none_columns]
        pruned.append(new_mask)
    return pruned


def stretch_masks(masks: list[torch.Tensor], depth: int) -> list[torch.Tensor]:
    """Map per-block masks onto ``depth`` blocks by relative position."""
    return [masks[b * len(masks) // depth].clone() for b in range(depth)]
