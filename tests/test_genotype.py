import json

import pytest

from dasvit.genotype import PRESETS, BlockGenotype, Edge, GenotypeError, genotype_from_dict, load_genotype


def vit_block():
    return {"nodes": 2, "edges": [{"from": 0, "to": 1, "op": "attn_h2"}, {"from": 1, "to": 2, "op": "mlp_r4"}]}


def valid():
    return {"version": 2, "embed_dim": 16, "patch_size": 2, "head": "avg",
            "input": {"image_size": 8, "in_chans": 1, "num_classes": 10}, "blocks": [vit_block()]}


@pytest.mark.parametrize("name", PRESETS)
def test_presets_round_trip(name, tmp_path):
    genotype = load_genotype(name)
    path = tmp_path / "g.json"
    genotype.save(path)
    assert load_genotype(path) == genotype
    assert json.loads(path.read_text())["version"] == 2 and genotype.head == "cls"


def test_version_1_files_read_as_cls_head():
    """Genotypes written before the head was a choice all had the CLS head."""
    data = valid()
    data["version"] = 1
    del data["head"]
    genotype = genotype_from_dict(data)
    assert genotype.head == "cls"
    assert genotype_from_dict(genotype.to_dict()) == genotype  # rewritten as version 2
    data["head"] = "avg"
    with pytest.raises(GenotypeError, match="unknown field.*'head'"):
        genotype_from_dict(data)


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
    ("wrong version", lambda d: d.update(version=3), "unsupported version 3"),
    ("unknown head", lambda d: d.update(head="max"), "unknown head 'max'"),
    ("missing head", lambda d: d.pop("head"), "missing field 'head'"),
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
