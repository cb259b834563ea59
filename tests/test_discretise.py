"""Discretisation: DARTS' argmax, and the attention routing that keeps a CLS-head genotype from being blind."""

import torch

from dasvit.discretise import discretise
from dasvit.genotype import Edge, InputSpec, genotype_from_dict
from dasvit.vocabulary import SearchSpace


def test_derive_takes_argmax_without_none_and_top_edges():
    ops = ["none", "skip", "attn_h2", "mlp_r2"]
    # edges (0,1), (0,2), (1,2): 'none' is the largest everywhere but must never be chosen.
    alpha = torch.tensor([[5.0, 0.0, 2.0, 1.0], [5.0, 1.5, 0.0, 0.0], [5.0, 0.0, 0.0, 3.0]])
    mask = torch.ones_like(alpha, dtype=torch.bool)
    genotype = discretise([alpha], [mask], SearchSpace(tuple(ops)), 16, 2, InputSpec(8, 1, 10), head="cls")
    assert genotype.blocks[0].edges == (Edge(0, 1, "attn_h2"), Edge(1, 2, "mlp_r2"))
    masked = mask.clone()
    masked[0, 2] = False  # attn pruned on edge (0,1): the next best non-none op is taken ...
    genotype = discretise([alpha], [masked], SearchSpace(tuple(ops), 2, 2), 16, 2, InputSpec(8, 1, 10), "cls")
    # ... which leaves no attention: the output's input from node 0 becomes its attention op (weight e^0 / (e^5 +
    # e^1.5 + 2) beats edge (1,2)'s e^0 / (e^5 + e^3 + 2)), so the CLS token still sees the patches
    assert genotype.blocks[0].edges == (Edge(0, 1, "mlp_r2"), Edge(0, 2, "attn_h2"), Edge(1, 2, "mlp_r2"))
    assert not genotype.blind and genotype.meta["attention_routed"] == {"block": 0, "from": 0}
    genotype_from_dict(genotype.to_dict())  # what discretisation writes passes validation


def test_argmax_without_live_attention_routes_the_strongest_output_edge():
    """No attention chosen anywhere (a constant classifier): the strongest attention edge into any block output
    becomes an input of that output, in place of its weakest one."""
    ops = ["none", "skip", "attn_h2", "mlp_r2", "conv_k3"]
    conv_wins = torch.tensor([[0.0, 0.0, 0.8, 0.0, 2.0], [0.0, 0.0, 0.5, 0.0, 2.0], [0.0, 0.0, 0.2, 1.0, 2.0]])
    stronger = conv_wins.clone()
    stronger[2, 2] = 1.5  # block 1's edge (1,2) has the largest attention weight of all output edges
    masks = [torch.ones(3, 5, dtype=torch.bool)] * 2
    genotype = discretise([conv_wins, stronger], masks, SearchSpace(tuple(ops)), 16, 2, InputSpec(8, 1, 10), "cls")
    assert genotype.blocks[0].edges == (Edge(0, 1, "conv_k3"), Edge(0, 2, "conv_k3"))  # untouched
    assert genotype.blocks[1].edges == (Edge(0, 1, "conv_k3"), Edge(1, 2, "attn_h2"))
    assert not genotype.blind and genotype.meta["attention_routed"] == {"block": 1, "from": 1}

    no_attention = [torch.tensor([[True, True, False, True, True]] * 3)] * 2  # pruned away: nothing to route
    blind = discretise([conv_wins, stronger], no_attention, SearchSpace(tuple(ops)), 16, 2, InputSpec(8, 1, 10), "cls")
    assert blind.blind and "attention_routed" not in blind.meta


def test_argmax_with_dead_attention_makes_its_node_feed_the_output():
    """Seen in a real sweep: attention chosen on 0->1 while the output reads node 0 through a conv. The output
    then reads node 1 instead, through edge (1,2)'s strongest op; the argmax ops stay as they were."""
    ops = ["none", "skip", "attn_h2", "mlp_r2", "conv_k3"]
    alpha = torch.tensor([[0.0, 0.0, 3.0, 0.0, 1.0], [0.0, 0.0, 0.5, 0.0, 2.0], [0.0, 0.0, 0.2, 1.0, 1.5]])
    masks = [torch.ones(3, 5, dtype=torch.bool)]
    genotype = discretise([alpha], masks, SearchSpace(tuple(ops)), 16, 2, InputSpec(8, 1, 10), "cls")
    assert genotype.blocks[0].edges == (Edge(0, 1, "attn_h2"), Edge(1, 2, "conv_k3"))
    assert not genotype.blind and genotype.meta["attention_routed"] == {"block": 0, "from": 1}


def test_a_mean_pooled_head_is_never_routed():
    """With ``head="avg"`` the head sees every patch: a genotype without attention is fine and argmax stands."""
    ops = ("none", "skip", "attn_h2", "mlp_r2", "conv_k3")
    conv_wins = torch.tensor([[0.0, 0.0, 0.8, 0.0, 2.0], [0.0, 0.0, 0.5, 0.0, 2.0], [0.0, 0.0, 0.2, 1.0, 2.0]])
    genotype = discretise([conv_wins], [torch.ones(3, 5, dtype=torch.bool)], SearchSpace(ops), 16, 2,
                          InputSpec(8, 1, 10), head="avg")
    assert genotype.blocks[0].edges == (Edge(0, 1, "conv_k3"), Edge(0, 2, "conv_k3"))
    assert not genotype.blind and "attention_routed" not in genotype.meta
