"""Progressive search (after P-DARTS): a schedule of stages that deepen the supernet while pruning ops.

Stage s trains a supernet of ``depth`` blocks in which every edge keeps at most ``ops`` candidate ops besides
``none`` (``None``: all that are left; the first stage always searches the whole space). Between stages the
weakest ops of each edge (lowest softmax weight) are pruned to the next stage's budget, and the op masks are
stretched to the new depth: new block b inherits the mask of old block ``floor(b * old_depth / new_depth)``.
Weights and alpha are re-initialised at each stage (as in P-DARTS), so alpha of a stage only reflects choices
among the ops that survived; per-stage alpha and masks are recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dasvit.search_space import masked_softmax


@dataclass(frozen=True)
class StageSpec:
    depth: int
    epochs: int
    ops: int | None = None  # candidate ops per edge besides 'none'; None keeps all that are left

    def validate(self, index: int) -> None:
        for name in ("depth", "epochs", "ops"):
            value = getattr(self, name)
            if name == "ops" and value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"stage {index}: {name} must be an integer >= 1, got {value!r}")


DEFAULT_STAGES = (
    StageSpec(depth=2, epochs=3),
    StageSpec(depth=3, epochs=3, ops=4),
    StageSpec(depth=4, epochs=3, ops=2),
)


def validate_stages(stages: tuple[StageSpec, ...], candidate_ops: int) -> None:
    """``candidate_ops``: ops of the search space besides 'none'; the first stage must search them all."""
    if not stages:
        raise ValueError("the stage schedule is empty")
    for index, stage in enumerate(stages):
        stage.validate(index)
    first = stages[0].ops
    if first is not None and first < candidate_ops:
        raise ValueError(
            f"stage 0: ops={first} but the space has {candidate_ops} candidate ops besides 'none'; "
            "the first stage searches them all (leave its ops unset)"
        )


def prune_masks(
    alphas: list[torch.Tensor], masks: list[torch.Tensor], none_columns: list[int], keep: int
) -> list[torch.Tensor]:
    """Keep, per edge, ``none`` and the ``keep`` strongest other active ops."""
    pruned = []
    for alpha, mask in zip(alphas, masks):
        strength = masked_softmax(alpha.detach().float(), mask).masked_fill(~mask, -1.0)
        strength[:, none_columns] = -1.0
        new_mask = torch.zeros_like(mask)
        top = strength.topk(min(keep, mask.shape[1]), dim=1)
        new_mask.scatter_(1, top.indices, top.values >= 0)
        new_mask[:, none_columns] = mask[:, none_columns]
        pruned.append(new_mask)
    return pruned


def stretch_masks(masks: list[torch.Tensor], depth: int) -> list[torch.Tensor]:
    """Map per-block masks onto ``depth`` blocks by relative position."""
    return [masks[b * len(masks) // depth].clone() for b in range(depth)]
