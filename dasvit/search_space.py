"""The search space: which ops each edge may hold and how a block's DAG is shaped."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dasvit.ops import OpError, parse_op

DEFAULT_OPS = ("none", "skip", "attn_h2", "attn_h4", "mlp_r2", "mlp_r4", "conv_k3")


def dag_edges(nodes: int) -> list[tuple[int, int]]:
    """The edges of a block with ``nodes`` intermediate nodes, in the order alpha rows use: by target, then source."""
    return [(i, j) for j in range(1, nodes + 1) for i in range(j)]


def masked_softmax(alpha: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the ops still in the search (``mask``); pruned ops get weight 0."""
    return torch.softmax(alpha.masked_fill(~mask, float("-inf")), dim=-1)


@dataclass(frozen=True)
class SearchSpace:
    """Candidate ops (by name), intermediate nodes per block, and how many inputs a discrete node keeps."""

    ops: tuple[str, ...] = DEFAULT_OPS
    nodes: int = 2
    edges_per_node: int = 1

    def validate(self, embed_dim: int) -> None:
        if not self.ops:
            raise OpError("the op set is empty")
        if len(set(self.ops)) != len(self.ops):
            raise OpError(f"the op set {list(self.ops)} names an op twice")
        specs = [parse_op(name, embed_dim) for name in self.ops]
        if all(spec.family == "none" for spec in specs):
            raise OpError(f"the op set {list(self.ops)} has no op other than 'none': it cannot express a network")
        if self.nodes < 1:
            raise OpError(f"nodes per block must be >= 1, got {self.nodes}")
        if self.edges_per_node < 1:
            raise OpError(f"edges per node must be >= 1, got {self.edges_per_node}")

    @property
    def num_edges(self) -> int:
        return len(dag_edges(self.nodes))

    @property
    def families(self) -> list[str]:
        return [parse_op(name).family for name in self.ops]

    def full_mask(self) -> torch.Tensor:
        return torch.ones(self.num_edges, len(self.ops), dtype=torch.bool)
