"""Discretisation: from the supernet's alpha to a genotype (DARTS' argmax rule, plus one guard for CLS heads).

Per edge, the strongest op other than ``none``; per node, the ``edges_per_node`` incoming edges whose chosen op
weighs most (ties: the earlier source). A network whose head reads only the CLS token needs one more thing: a live
attention op, since only attention moves patch information into CLS. When argmax yields a blind genotype, the
block output is re-routed to read an attention op (``meta["attention_routed"]`` says where). A mean-pooled head
(``head="avg"``) is never blind, so its genotypes are plain argmax.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from dasvit.genotype import BlockGenotype, Edge, Genotype, InputSpec
from dasvit.search_space import masked_softmax
from dasvit.vocabulary import OpFamily, SearchSpace, dag_edges, parse_op

_UNUSABLE = -1.0  # the weight given to pruned ops (and to ``none`` when choosing), below any softmax weight


def discretise(
    alphas: list[torch.Tensor],
    masks: list[torch.Tensor],
    space: SearchSpace,
    embed_dim: int,
    patch_size: int,
    input_spec: InputSpec,
    head: str = "cls",
    meta: dict[str, Any] | None = None,
) -> Genotype:
    """The genotype that ``alphas`` (one (edges, ops) tensor per block, ``masks`` the ops still searched) encode."""
    weights = [masked_softmax(alpha.detach().float(), mask).masked_fill(~mask, _UNUSABLE)
               for alpha, mask in zip(alphas, masks)]
    blocks = tuple(_argmax_block(w, space) for w in weights)
    genotype = Genotype(embed_dim, patch_size, input_spec, blocks, dict(meta or {}), head)
    return _route_attention(genotype, weights, space) if genotype.blind else genotype


def _argmax_block(weights: torch.Tensor, space: SearchSpace) -> BlockGenotype:
    candidates = weights.clone()
    candidates[:, [k for k, name in enumerate(space.ops) if not parse_op(name).properties.discrete]] = _UNUSABLE
    best_weight, best_op = candidates.max(dim=1)
    edges = []
    for j in range(1, space.nodes + 1):
        incoming = [(e, i) for e, (i, t) in enumerate(dag_edges(space.nodes)) if t == j and best_weight[e] >= 0]
        incoming.sort(key=lambda item: (-float(best_weight[item[0]]), item[1]))
        edges += [Edge(i, j, space.ops[int(best_op[e])]) for e, i in incoming[: space.edges_per_node]]
    return BlockGenotype(space.nodes, tuple(sorted(edges, key=lambda e: (e.target, e.source))))


class _Weights:
    """softmax(alpha) looked up by block, edge endpoints and op name."""

    def __init__(self, weights: list[torch.Tensor], space: SearchSpace):
        self.weights, self.space, self.edges = weights, space, dag_edges(space.nodes)

    def __call__(self, block: int, source: int, target: int, op: str) -> float:
        return float(self.weights[block][self.edges.index((source, target)), self.space.ops.index(op)])

    def usable(self, block: int, source: int, target: int, wanted: Callable[[OpFamily], bool]) -> list[str]:
        """The ops of the ``wanted`` families still searched on that edge, in the space's order."""
        return [op for op in self.space.ops
                if wanted(parse_op(op).properties) and self(block, source, target, op) >= 0]


def _route_attention(genotype: Genotype, weights: list[torch.Tensor], space: SearchSpace) -> Genotype:
    """``genotype`` with an attention op made live, changing as little of the argmax choice as it can."""
    weight = _Weights(weights, space)
    route = _revive_dead_attention(genotype, weight) or _strongest_output_attention(genotype, weight)
    return _feed_output(genotype, weight, *route) if route else genotype  # no attention left anywhere: stays blind


def _revive_dead_attention(genotype: Genotype, weight: _Weights) -> tuple[int, int, str] | None:
    """Argmax chose attention into a node the block output does not read: the output reads that node instead
    (through that edge's strongest op), because the search did pick that attention op."""
    output = genotype.blocks[0].nodes
    dead = sorted(((weight(b, e.source, e.target, e.op), b, e.target)
                   for b, block in enumerate(genotype.blocks) for e in block.edges
                   if parse_op(e.op).properties.reaches_cls and e.target != output), key=lambda d: (-d[0], d[1]))
    for _, b, node in dead:
        usable = weight.usable(b, node, output, lambda family: family.discrete)
        if usable:
            return b, node, max(usable, key=lambda op: weight(b, node, output, op))
    return None


def _strongest_output_attention(genotype: Genotype, weight: _Weights) -> tuple[int, int, str] | None:
    """Else the strongest attention op on any edge into a block output, because the output is what the next block
    (and the head) reads."""
    output = genotype.blocks[0].nodes
    options = [(weight(b, i, output, op), b, i, op) for b in range(len(genotype.blocks))
               for i, t in weight.edges if t == output for op in weight.usable(b, i, output, lambda f: f.reaches_cls)]
    if not options:
        return None
    _, b, source, op = max(options, key=lambda o: (o[0], -o[1], -o[2]))
    return b, source, op


def _feed_output(genotype: Genotype, weight: _Weights, b: int, source: int, op: str) -> Genotype:
    """Block ``b``'s output reads node ``source`` through ``op``, in place of its input from ``source`` if it had
    one, else of its weakest input (so a node keeps at most ``edges_per_node`` inputs)."""
    block = genotype.blocks[b]
    output = block.nodes
    into_output = [edge for edge in block.edges if edge.target == output]
    kept_inputs = [edge for edge in into_output if edge.source != source]
    if len(kept_inputs) == len(into_output):  # no input from ``source`` to replace: drop the weakest one
        kept_inputs = sorted(kept_inputs, key=lambda e: weight(b, e.source, output, e.op))[1:]
    edges = [edge for edge in block.edges if edge.target != output] + kept_inputs + [Edge(source, output, op)]
    routed = BlockGenotype(block.nodes, tuple(sorted(edges, key=lambda edge: (edge.target, edge.source))))
    blocks = genotype.blocks[:b] + (routed,) + genotype.blocks[b + 1:]
    return replace(genotype, blocks=blocks, meta={**genotype.meta, "attention_routed": {"block": b, "from": source}})
