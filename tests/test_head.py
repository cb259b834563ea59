"""The mean-pooled head (the search default): every op of every block reaches the loss, and no genotype of the
space is a constant classifier. The CLS head serves as the control that shows each check can fail."""

import pytest
import torch
import torch.nn.functional as F

from dasvit.baselines import random_genotype
from dasvit.genotype import BlockGenotype, Edge, Genotype, InputSpec
from dasvit.model import build_model
from dasvit.supernet import Supernet
from dasvit.vocabulary import DEFAULT_OPS, SearchSpace

SPEC = InputSpec(8, 1, 10)


def _alpha_grads(head: str) -> list[torch.Tensor]:
    """Alpha gradients of one search-val loss of a default-ops supernet (depth 2, token selection on)."""
    torch.manual_seed(0)
    model = Supernet(SearchSpace(DEFAULT_OPS), 2, 16, 2, SPEC, keep_ratio=0.5, head=head)
    images, labels = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    F.cross_entropy(model(images), labels).backward()
    return [alpha.grad for alpha in model.arch_parameters()]


def test_every_alpha_of_every_block_gets_a_gradient_with_the_mean_pooled_head():
    for block, grad in enumerate(_alpha_grads("avg")):
        assert (grad != 0).all(), f"block {block} has alphas without gradient: {grad}"


def test_the_mean_pooled_head_tells_patch_only_ops_apart_from_skip():
    """With the CLS head, a conv on an edge into the last block's output changes only patch tokens, which the head
    never reads: its gradient equals skip's (CLS passes a conv unchanged), so the search cannot rank the two there.
    The mean-pooled head sees the patches, so the two gradients differ."""
    skip, conv = DEFAULT_OPS.index("skip"), DEFAULT_OPS.index("conv_k3")
    output_edge = 2  # edge (1, 2) of dag_edges(2)
    cls_last = _alpha_grads("cls")[-1][output_edge]
    avg_last = _alpha_grads("avg")[-1][output_edge]
    assert torch.isclose(cls_last[conv], cls_last[skip], rtol=1e-4, atol=1e-9)
    assert not torch.isclose(avg_last[conv], avg_last[skip], rtol=1e-2)


def _responds_to_input(genotype: Genotype) -> bool:
    torch.manual_seed(0)
    model = build_model(genotype).eval()
    with torch.no_grad():
        a, b = model(torch.randn(2, 1, 8, 8)).unbind(0)
    return not torch.allclose(a, b, atol=1e-6)


def test_no_random_genotype_of_the_space_is_a_constant_classifier():
    generator = torch.Generator().manual_seed(0)
    space = SearchSpace(DEFAULT_OPS)
    for _ in range(60):
        genotype = random_genotype(space, 4, 16, 2, SPEC, generator, head="avg")
        assert _responds_to_input(genotype), genotype.to_json()


@pytest.mark.parametrize("head,constant", [("cls", True), ("avg", False)])
def test_a_network_without_attention_is_blind_only_with_the_cls_head(head, constant):
    conv_only = BlockGenotype(2, (Edge(0, 1, "conv_k3"), Edge(1, 2, "mlp_r2")))
    genotype = Genotype(16, 2, SPEC, (conv_only,) * 2, {}, head)
    assert genotype.blind is constant
    assert _responds_to_input(genotype) is not constant
