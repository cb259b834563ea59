"""The one-shot supernet: every edge of every block holds a softmax(alpha)-weighted mixture of all candidate ops.

Alpha lives in one tensor per block, shape (edges, ops), registered apart from the network weights so the two can
have their own optimisers (bilevel optimisation). A boolean mask per block marks the ops the progressive search
has not pruned: pruned ops are neither built nor evaluated and get weight 0.
"""

from __future__ import annotations

import torch
from torch import nn

from dasvit.backbone import ViTHead, ViTStem
from dasvit.discretise import discretise
from dasvit.fused import fused_mixed_forward
from dasvit.genotype import Genotype, InputSpec
from dasvit.ops import TokenContext, build_op, init_vit_weights
from dasvit.search_space import masked_softmax
from dasvit.token_selection import merge_tokens, select_tokens
from dasvit.vocabulary import SearchSpace, dag_edges, parse_op, validate_keep_ratio


class MixedOp(nn.Module):
    """``sum_o w_o * o(x)`` over the edge's active ops; ``none`` only takes part through the softmax.

    Args:
        op_names: the search space's ops; ``weights`` passed to ``forward`` has one column per name.
        active: which of them the progressive search has not pruned (pruned ops are not built).
        dim: token width.
        fused: evaluate with ``dasvit.fused`` (few large kernels) rather than op by op; same parameters and math.
    """

    def __init__(self, op_names: tuple[str, ...], active: torch.Tensor, dim: int, fused: bool = False):
        super().__init__()
        self.columns = [k for k, name in enumerate(op_names) if active[k] and parse_op(name).properties.discrete]
        self.register_buffer("column_index", torch.tensor(self.columns, dtype=torch.long), persistent=False)
        self.ops = nn.ModuleList(build_op(op_names[k], dim) for k in self.columns)
        self.fused = fused
        # ops whose family has no fused form (``OpFamily.fused``) run as they are inside the fused path
        self.eager = [i for i, k in enumerate(self.columns) if not parse_op(op_names[k]).properties.fused]

    def forward(self, x: torch.Tensor, weights: torch.Tensor, ctx: TokenContext) -> torch.Tensor:
        if self.fused:
            return fused_mixed_forward(self.ops, weights[self.column_index], x, ctx, self.eager)
        return sum(weights[k] * op(x, ctx) for k, op in zip(self.columns, self.ops))


class SearchBlock(nn.Module):
    """One searchable block: a DAG whose every edge is a ``MixedOp``, run on the tokens that token selection keeps.

    Args:
        space: candidate ops and DAG shape.
        mask: (edges, ops) bool, the ops still searched on each edge.
        dim: token width.
        fused: passed to every ``MixedOp``.
    """

    def __init__(self, space: SearchSpace, mask: torch.Tensor, dim: int, fused: bool = False):
        super().__init__()
        self.nodes = space.nodes
        self.edges = dag_edges(space.nodes)
        self.register_buffer("mask", mask.clone())
        self.mixed = nn.ModuleList(MixedOp(space.ops, mask[e], dim, fused) for e in range(len(self.edges)))

    def forward(self, x: torch.Tensor, weights: torch.Tensor, grid: tuple[int, int], keep_ratio: float) -> torch.Tensor:
        if keep_ratio < 1.0:
            selected, patch_index = select_tokens(x, keep_ratio)
            ctx = TokenContext(grid, patch_index, x[:, 1:])
        else:
            selected, ctx = x, TokenContext(grid)
        states = [selected]
        for j in range(1, self.nodes + 1):
            states.append(
                sum(self.mixed[e](states[i], weights[e], ctx) for e, (i, t) in enumerate(self.edges) if t == j)
            )
        out = states[-1]
        return merge_tokens(x, out, ctx.patch_index) if ctx.patch_index is not None else out


class Supernet(nn.Module):
    """The one-shot DASViT network: ViT stem, ``depth`` search blocks, head; alpha apart from the weights.

    Args:
        space: candidate ops and DAG shape of every block.
        depth: number of blocks.
        embed_dim: token width D.
        patch_size: square patch side.
        input_spec: image size, channels and classes it is built for.
        keep_ratio: token keep ratio r in (0, 1]; 1 sends every token through the mixed ops (plain DARTS).
        masks: per block, the (edges, ops) ops still searched; default all.
        head: ``avg`` (mean patch token) or ``cls``; see ``dasvit.backbone``.
        fused: evaluate mixed ops with ``dasvit.fused``; ``False`` runs them op by op (the reference path).
    """

    def __init__(
        self,
        space: SearchSpace,
        depth: int,
        embed_dim: int,
        patch_size: int,
        input_spec: InputSpec,
        keep_ratio: float = 1.0,
        masks: list[torch.Tensor] | None = None,
        head: str = "avg",
        fused: bool = False,
    ):
        super().__init__()
        space.validate(embed_dim)
        self.space = space
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.input_spec = input_spec
        self.keep_ratio = validate_keep_ratio(keep_ratio)
        masks = masks if masks is not None else [space.full_mask() for _ in range(depth)]
        if len(masks) != depth:
            raise ValueError(f"got {len(masks)} op masks for a supernet of depth {depth}")
        self.stem = ViTStem(input_spec.image_size, patch_size, input_spec.in_chans, embed_dim)
        self.blocks = nn.ModuleList(SearchBlock(space, m, embed_dim, fused) for m in masks)
        self.head = ViTHead(embed_dim, input_spec.num_classes, head)
        self.apply(init_vit_weights)
        self.alphas = nn.ParameterList(
            nn.Parameter(torch.zeros(space.num_edges, len(space.ops))) for _ in range(depth)
        )

    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.alphas)

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if not name.startswith("alphas.")]

    @property
    def masks(self) -> list[torch.Tensor]:
        return [block.mask for block in self.blocks]

    def op_weights(self) -> list[torch.Tensor]:
        """Per block, the (edges, ops) mixing weights softmax(alpha) with pruned ops at 0."""
        return [masked_softmax(alpha, mask) for alpha, mask in zip(self.alphas, self.masks)]

    def forward(self, images: torch.Tensor, alpha_grad: bool = True) -> torch.Tensor:
        """Logits of ``images``; ``alpha_grad=False`` holds alpha fixed (the weight step of the bilevel
        optimisation), so that backward computes no alpha gradient that the step would only throw away."""
        tokens = self.stem(images)
        weights_per_block = self.op_weights() if alpha_grad else [w.detach() for w in self.op_weights()]
        for block, weights in zip(self.blocks, weights_per_block):
            tokens = block(tokens, weights, self.stem.grid, self.keep_ratio)
        return self.head(tokens)

    def genotype(self, meta: dict | None = None) -> Genotype:
        return discretise(list(self.alphas), self.masks, self.space, self.embed_dim, self.patch_size, self.input_spec,
                          self.head.pool, meta)


def alpha_stats(weights: list[torch.Tensor], skip_columns: list[int]) -> dict[str, float]:
    """How the edge mixtures stand: ``skip_share``, the mean weight of skip over all edges (the DARTS collapse
    shows here), and ``alpha_entropy``, their mean entropy in nats (falls as the search commits to ops)."""
    return {
        "skip_share": float(torch.cat([w[:, skip_columns].sum(1) for w in weights]).mean()),
        "alpha_entropy": float(torch.cat([-(w * w.clamp_min(1e-12).log()).sum(1) for w in weights]).mean()),
    }
