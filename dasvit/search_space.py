"""The search space: which ops each edge may hold and how a block's DAG is shaped (``SearchSpace`` and the op
names live in ``dasvit.vocabulary``, checkable without torch), and the mixture weights over an edge's ops."""

from __future__ import annotations

import torch

from dasvit.vocabulary import DEFAULT_OPS, SearchSpace, dag_edges  # noqa: F401 - re-exported


def masked_softmax(alpha: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the ops still in the search (``mask``); pruned ops get weight 0."""
    return torch.softmax(alpha.masked_fill(~mask, float("-inf")), dim=-1)
