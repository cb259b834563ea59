"""The mixture weights over an edge's candidate ops. The search space itself (``SearchSpace``, the block DAG)
and the op names live in ``dasvit.vocabulary``, where a config can be checked without torch."""

from __future__ import annotations

import torch


def masked_softmax(alpha: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the ops still in the search (``mask``); pruned ops get weight 0."""
    return torch.softmax(alpha.masked_fill(~mask, float("-inf")), dim=-1)
