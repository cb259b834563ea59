import json

import pytest
import torch

from dasvit.genotype import (
    PRESETS, BlockGenotype, Edge, GenotypeError, InputSpec, derive_genotype, genotype_from_dict, load_genotype,
)


def vit_block():
    return {"nodes": 2, "edges": [{"from": 0, "to": 1, "op": "attn_h2"}, {"from": 1, "to": 2, "op": "mlp_r4"}]}


def valid():
    return {"version": 1, "embed_dim": 16, "patch_size": 2, "input": {"image_size": 8, "in_chans": 1, "num_classes": 10},
            "blocks": [vit_block()]}


@pytest.mark.parametrize("name", PRESETS)
def test_presets_round_trip(name, tmp_path):
    genotype = load_genotype(name)
    path = tmp_path / "g.json"
    genotype.save(path)
    assert load_genotype(path) == genotype
    assert json.loads(path.read_text())["version"] == 1


def _mutate(change):
    data = valid()
    change(data)
    return data


BAD = [
    ("unknown op", lambda d: d["blocks"][0]["edges"][0].update(op="attn_x2"), "unknown op 'attn_x2'"),
    ("cycle", lambda d: d["blocks"][0]["edges"].append({"from": 2, "to": 1, "op": "skip"}), "makes a cycle"),
    ("self loop", lambda d: d["blocks"][0]["edges"].append({"from": 1, "to": 1, "op": "skip"}), "makes a cycle"),
    ("missing field", lambda d: d.pop("embed_dim"), "missing field 'embed_dim'"),
    ("missing edge field", lambda d: d["blocks"][0]["edges"][0].pop("op"), "missing field 'op'"),
    ("wrong version", lambda d: d.update(version=2), "unsupported version 2"),
    ("starved node", lambda d: d["blocks"][0]["edges"].pop(0), r"node\(s\) \[1\] have no incoming edge"),
    ("node out of range", lambda d: d["blocks"][0]["edges"].append({"from": 0, "to": 3, "op": "skip"}), "outside 0..2"),
    ("none op", lambda d: d["blocks"][0]["edges"][0].update(op="none"), "'none' is not an op"),
    ("unknown key", lambda d: d.update(colour="red"), "unknown field"),
    ("empty blocks", lambda d: d.update(blocks=[]), "'blocks' is empty"),
    ("heads vs dim", lambda d: d["blocks"][0]["edges"][0].update(op="attn_h3"), "do not divide"),
    ("bad type", lambda d: d.update(embed_dim="16"), "wrong type"),
    ("indivisible image", lambda d: d["input"].update(image_size=9), "not divisible by patch size 2"),
]


@pytest.mark.parametrize("label,change,needle", BAD, ids=[b[0] for b in BAD])
def test_validation_names_the_fault(label, change, needle):
    with pytest.raises(GenotypeError, match=needle):
        genotype_from_dict(_mutate(change))


def test_truncated_and_missing_files(tmp_path):
    path = tmp_path / "g.json"
    path.write_text(json.dumps(valid())[:-20])
    with pytest.raises(GenotypeError, match="not valid JSON"):
        load_genotype(path)
    with pytest.raises(GenotypeError, match="no such file"):
        load_genotype(tmp_path / "absent.json")


def test_live_edges_drop_dead_nodes():
    block = BlockGenotype(2, (Edge(0, 1, "attn_h2"), Edge(0, 2, "mlp_r2")))
    assert block.live_edges() == (Edge(0, 2, "mlp_r2"),)
    chain = BlockGenotype(2, (Edge(0, 1, "attn_h2"), Edge(1, 2, "mlp_r2")))
    assert chain.live_edges() == chain.edges


def test_derive_takes_argmax_without_none_and_top_edges():
    ops = ["none", "skip", "attn_h2", "mlp_r2"]
    # edges (0,1), (0,2), (1,2): 'none' is the largest everywhere but must never be chosen.
    alpha = torch.tensor([[5.0, 0.0, 2.0, 1.0], [5.0, 1.5, 0.0, 0.0], [5.0, 0.0, 0.0, 3.0]])
    mask = torch.ones_like(alpha, dtype=torch.bool)
    genotype = derive_genotype([alpha], [mask], ops, nodes=2, edges_per_node=1, embed_dim=16, patch_size=2,
                               input_spec=InputSpec(8, 1, 10))
    assert genotype.blocks[0].edges == (Edge(0, 1, "attn_h2"), Edge(1, 2, "mlp_r2"))
    masked = mask.clone()
    masked[0, 2] = False  # attn pruned on edge (0,1): the next best non-none op is taken ...
    genotype = derive_genotype([alpha], [masked], ops, 2, 2, 16, 2, InputSpec(8, 1, 10))
    # ... which leaves no attention: the output's input from node 0 becomes its attention op (weight e^0 / (e^5 +
    # e^1.5 + 2) beats edge (1,2)'s e^0 / (e^5 + e^3 + 2)), so the CLS token still sees the patches
    assert genotype.blocks[0].edges == (Edge(0, 1, "mlp_r2"), Edge(0, 2, "attn_h2"), Edge(1, 2, "mlp_r2"))
    assert genotype.cls_sees_patches and genotype.meta["attention_routed"] == {"block": 0, "from": 0}
    genotype_from_dict(genotype.to_dict())  # what discretisation writes passes validation


def test_argmax_without_live_attention_routes_the_strongest_output_edge():
    """No attention chosen anywhere (a constant classifier): the strongest attention edge into any block output
    becomes an input of that output, in place of its weakest one."""
    ops = ["none", "skip", "attn_h2", "mlp_r2", "conv_k3"]
    conv_wins = torch.tensor([[0.0, 0.0, 0.8, 0.0, 2.0], [0.0, 0.0, 0.5, 0.0, 2.0], [0.0, 0.0, 0.2, 1.0, 2.0]])
    stronger = conv_wins.clone()
    stronger[2, 2] = 1.5  # block 1's edge (1,2) has the largest attention weight of all output edges
    masks = [torch.ones(3, 5, dtype=torch.bool)] * 2
    genotype = derive_genotype([conv_wins, stronger], masks, ops, 2, 1, 16, 2, InputSpec(8, 1, 10))
    assert genotype.blocks[0].edges == (Edge(0, 1, "conv_k3"), Edge(0, 2, "conv_k3"))  # untouched
    assert genotype.blocks[1].edges == (Edge(0, 1, "conv_k3"), Edge(1, 2, "attn_h2"))
    assert genotype.cls_sees_patches and genotype.meta["attention_routed"] == {"block": 1, "from": 1}

    no_attention = [torch.tensor([[True, True, False, True, True]] * 3)] * 2  # pruned away: nothing to route
    blind = derive_genotype([conv_wins, stronger], no_attention, ops, 2, 1, 16, 2, InputSpec(8, 1, 10))
    assert not blind.cls_sees_patches and "attention_routed" not in blind.meta


def test_argmax_with_dead_attention_makes_its_node_feed_the_output():
    """Seen in a real sweep: attention chosen on 0->1 while the output reads node 0 through a conv. The output
    then reads node 1 instead, through edge (1,2)'s strongest op; the argmax ops stay as they were."""
    ops = ["none", "skip", "attn_h2", "mlp_r2", "conv_k3"]
    alpha = torch.tensor([[0.0, 0.0, 3.0, 0.0, 1.0], [0.0, 0.0, 0.5, 0.0, 2.0], [0.0, 0.0, 0.2, 1.0, 1.5]])
    genotype = derive_genotype([alpha], [torch.ones(3, 5, dtype=torch.bool)], ops, 2, 1, 16, 2, InputSpec(8, 1, 10))
    assert genotype.blocks[0].edges == (Edge(0, 1, "attn_h2"), Edge(1, 2, "conv_k3"))
    assert genotype.cls_sees_patches and genotype.meta["attention_routed"] == {"block": 0, "from": 1}
