"""Weight inheritance (``experiments/inherit.py``, which only the objective study uses): the derived network starts
from exactly the weights its ops had in the supernet."""

import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from dasvit.genotype import InputSpec
from dasvit.supernet import Supernet
from dasvit.vocabulary import SearchSpace, dag_edges

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from inherit import inherit_weights  # noqa: E402

SPACE = SearchSpace(("none", "skip", "attn_h2", "mlp_r2", "conv_k3"))
CHOSEN = [{(0, 1): "mlp_r2", (1, 2): "attn_h2"}, {(0, 1): "conv_k3", (1, 2): "skip"}]  # per block, edge -> op


def committed_supernet() -> Supernet:
    """A supernet whose alpha has all but committed to ``CHOSEN`` (every other edge to ``none``)."""
    torch.manual_seed(0)
    supernet = Supernet(SPACE, depth=2, embed_dim=16, patch_size=2, input_spec=InputSpec(8, 1, 10), head="avg")
    with torch.no_grad():
        for alpha, chosen in zip(supernet.alphas, CHOSEN):
            alpha.zero_()
            for e, edge in enumerate(dag_edges(SPACE.nodes)):
                alpha[e, SPACE.ops.index(chosen.get(edge, "none"))] = 40.0
    return supernet.eval()


def test_the_inherited_network_computes_what_the_committed_supernet_computes():
    supernet = committed_supernet()
    genotype = supernet.genotype()
    assert [{(e.source, e.target): e.op for e in block.edges} for block in genotype.blocks] == CHOSEN
    model = inherit_weights(supernet, genotype).eval()
    images = torch.randn(4, 1, 8, 8)
    with torch.no_grad():  # the other ops weigh e^-40 in the supernet: the two networks agree to rounding
        torch.testing.assert_close(model(images), supernet(images), rtol=1e-5, atol=1e-5)
    fresh = inherit_weights(committed_supernet(), genotype)  # a copy, not a share: training one leaves the other
    next(model.parameters()).data.add_(1.0)
    assert not torch.equal(next(model.parameters()), next(fresh.parameters()))


def test_a_genotype_the_supernet_cannot_express_is_refused():
    supernet = committed_supernet()
    genotype = supernet.genotype()
    with pytest.raises(ValueError, match="1 blocks cannot inherit from a supernet of 2"):
        inherit_weights(supernet, replace(genotype, blocks=genotype.blocks[:1]))
    mixed = supernet.blocks[0].mixed
    mixed[0] = type(mixed[0])(SPACE.ops, torch.tensor([1, 1, 1, 0, 1]), 16)  # mlp_r2 pruned from edge 0->1
    with pytest.raises(ValueError, match="op 'mlp_r2' on edge 0->1 was pruned"):
        inherit_weights(supernet, genotype)
