"""The fused mixed op computes what the eager one does: same outputs, gradients and alpha updates in fp32."""

import pytest
import torch
import torch.nn.functional as F

from dasvit.architect import Architect
from dasvit.genotype import InputSpec
from dasvit.supernet import Supernet
from dasvit.vocabulary import DEFAULT_OPS, SearchSpace

TOLERANCE = 1e-5  # relative, in norm


def _pair(keep_ratio: float, masks: list[torch.Tensor] | None = None) -> tuple[Supernet, Supernet]:
    torch.manual_seed(0)
    eager = Supernet(SearchSpace(DEFAULT_OPS), 2, 16, 2, InputSpec(8, 1, 10), keep_ratio=keep_ratio, fused=False,
                     masks=masks)
    with torch.no_grad():  # away from the init's unit norms and zero biases, which would hide a wrong fold
        for p in eager.parameters():
            p.add_(0.1 * torch.randn_like(p))
    fused = Supernet(SearchSpace(DEFAULT_OPS), 2, 16, 2, InputSpec(8, 1, 10), keep_ratio=keep_ratio, fused=True,
                     masks=None if masks is None else [m.clone() for m in masks])
    fused.load_state_dict(eager.state_dict())
    return eager, fused


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm().clamp_min(1e-30))


def _batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(16, 1, 8, 8, generator=generator), torch.randint(0, 10, (16,), generator=generator)


@pytest.mark.parametrize("keep_ratio", [1.0, 0.5])
def test_fused_outputs_and_gradients_match_eager(keep_ratio):
    eager, fused = _pair(keep_ratio)
    images, labels = _batch(0)
    logits = [model(images) for model in (eager, fused)]
    assert _relative(logits[1], logits[0]) < TOLERANCE
    for out in logits:
        F.cross_entropy(out, labels).backward()
    for (name, p_eager), p_fused in zip(eager.named_parameters(), fused.parameters()):
        assert p_eager.grad is not None and p_fused.grad is not None, name
        assert _relative(p_fused.grad, p_eager.grad) < TOLERANCE, name


@pytest.mark.parametrize("keep_ratio", [1.0, 0.5])
def test_fused_alpha_update_matches_eager(keep_ratio):
    alphas = []
    for model in _pair(keep_ratio):
        architect = Architect(model, lr=6e-3, weight_decay=1e-3, fairness_lambda=0.5)
        architect.step(_batch(1), _batch(2), xi=1e-3)
        alphas.append(torch.cat([a.detach().flatten() for a in model.arch_parameters()]))
    assert _relative(alphas[1], alphas[0]) < TOLERANCE
    assert alphas[0].abs().max() > 0  # alpha did move


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("keep_ratio", [1.0, 0.5])
def test_fused_matches_eager_on_pruned_edges(seed, keep_ratio):
    """Later stages keep 'none' and a few ops per edge (the default's last stage: 2): every such mix, including
    edges left with no attention or MLP op, computes what the eager path does."""
    generator = torch.Generator().manual_seed(seed)
    masks = []
    for _ in range(2):
        mask = torch.zeros(SearchSpace(DEFAULT_OPS).num_edges, len(DEFAULT_OPS), dtype=torch.bool)
        mask[:, 0] = True  # 'none' is never pruned
        for edge in mask:
            edge[torch.randperm(len(DEFAULT_OPS) - 1, generator=generator)[:2] + 1] = True
        masks.append(mask)
    eager, fused = _pair(keep_ratio, masks)
    images, labels = _batch(seed)
    logits = [model(images) for model in (eager, fused)]
    assert _relative(logits[1], logits[0]) < TOLERANCE
    for out in logits:
        F.cross_entropy(out, labels).backward()
    for (name, p_eager), p_fused in zip(eager.named_parameters(), fused.parameters()):
        if p_eager.grad is not None or p_fused.grad is not None:  # pruned ops get no gradient on either path
            assert _relative(p_fused.grad, p_eager.grad) < TOLERANCE, name
