"""The discrete architecture: a versioned JSON genotype, its validation and the presets.

Schema (``version`` 2)::

    {
      "version": 2,
      "embed_dim": 64,                 # token width D
      "patch_size": 4,                 # square patches
      "head": "avg",                   # what the classifier reads: the CLS token ("cls") or the mean patch ("avg")
      "input": {"image_size": 28, "in_chans": 1, "num_classes": 10},   # what it was searched for
      "blocks": [                      # the encoder, in order
        {"nodes": 2,                   # intermediate nodes 1..nodes; node 0 is the block input
         "edges": [{"from": 0, "to": 1, "op": "attn_h4"},
                   {"from": 1, "to": 2, "op": "mlp_r4"}]}
      ],
      "meta": {...}                    # optional, free-form (how it was searched)
    }

Node ``j`` is the sum of its incoming edges' ops; the block output is node ``nodes``. Edges go from an earlier
node to a later one (so the graph is acyclic), every intermediate node has at least one incoming edge, and
``none`` is not an op of a discrete network. Version 1 files (before ``head`` existed) read as ``head: "cls"``,
which is what every version 1 network was.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from dasvit.io import atomic_write_text
from dasvit.vocabulary import HEADS, OpError, parse_op

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
PRESETS = ("vit_ti16", "vit_s16", "vit_b16")


class GenotypeError(ValueError):
    """A genotype that does not follow the schema."""


@dataclass(frozen=True)
class Edge:
    source: int
    target: int
    op: str


@dataclass(frozen=True)
class BlockGenotype:
    nodes: int
    edges: tuple[Edge, ...]

    def live_edges(self) -> tuple[Edge, ...]:
        """The edges on some path to the block output; the others would compute values nobody reads."""
        live_nodes = {self.nodes}
        for edge in sorted(self.edges, key=lambda e: -e.target):
            if edge.target in live_nodes:
                live_nodes.add(edge.source)
        return tuple(e for e in self.edges if e.target in live_nodes)


@dataclass(frozen=True)
class InputSpec:
    image_size: int
    in_chans: int
    num_classes: int


@dataclass(frozen=True)
class Genotype:
    embed_dim: int
    patch_size: int
    input: InputSpec
    blocks: tuple[BlockGenotype, ...]
    meta: dict[str, Any] = field(default_factory=dict, compare=False)
    head: str = "cls"

    @property
    def cls_sees_patches(self) -> bool:
        """Whether a live attention op lets the CLS token gather patch information."""
        return any(parse_op(e.op).properties.reaches_cls for block in self.blocks for e in block.live_edges())

    @property
    def blind(self) -> bool:
        """A constant classifier: the head reads only CLS and no live attention op moves patch information into it
        (a grid conv has no CLS position). A mean-pooled head always sees the patches."""
        return self.head == "cls" and not self.cls_sees_patches

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "version": SCHEMA_VERSION,
            "embed_dim": self.embed_dim,
            "patch_size": self.patch_size,
            "head": self.head,
            "input": vars(self.input).copy(),
            "blocks": [
                {"nodes": b.nodes, "edges": [{"from": e.source, "to": e.target, "op": e.op} for e in b.edges]}
                for b in self.blocks
            ],
        }
        if self.meta:
            data["meta"] = self.meta
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @property
    def id(self) -> str:
        """Ten hex digits naming the blocks' ops and wiring: the same id is the same network."""
        return blocks_id(self.to_dict()["blocks"])

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, self.to_json())


def blocks_id(blocks: list[dict[str, Any]]) -> str:
    """The id of a genotype from its JSON ``blocks`` list (``Genotype.id``)."""
    return hashlib.sha1(json.dumps(blocks, sort_keys=True).encode()).hexdigest()[:10]


def _require(data: dict[str, Any], key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if key not in data:
        raise GenotypeError(f"{where}: missing field {key!r}")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise GenotypeError(f"{where}: field {key!r} has the wrong type ({value!r})")
    return value


def _positive_int(data: dict[str, Any], key: str, where: str) -> int:
    value = _require(data, key, where, int)
    if value < 1:
        raise GenotypeError(f"{where}: field {key!r} must be >= 1, got {value}")
    return value


def _reject_unknown(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise GenotypeError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}")


def _parse_block(data: Any, index: int, embed_dim: int) -> BlockGenotype:
    where = f"block {index}"
    if not isinstance(data, dict):
        raise GenotypeError(f"{where}: expected an object, got {data!r}")
    _reject_unknown(data, {"nodes", "edges"}, where)
    nodes = _positive_int(data, "nodes", where)
    raw_edges = _require(data, "edges", where, list)
    edges = []
    for k, raw in enumerate(raw_edges):
        ewhere = f"{where} edge {k}"
        if not isinstance(raw, dict):
            raise GenotypeError(f"{ewhere}: expected an object, got {raw!r}")
        _reject_unknown(raw, {"from", "to", "op"}, ewhere)
        source = _require(raw, "from", ewhere, int)
        target = _require(raw, "to", ewhere, int)
        op = _require(raw, "op", ewhere, str)
        if not 0 <= source <= nodes or not 0 <= target <= nodes:
            raise GenotypeError(f"{ewhere}: node {source}->{target} is outside 0..{nodes}")
        if source >= target:
            raise GenotypeError(
                f"{ewhere}: edge {source}->{target} makes a cycle; edges must go from an earlier node to a later one"
            )
        try:
            spec = parse_op(op, embed_dim)
        except OpError as err:
            raise GenotypeError(f"{ewhere}: {err}") from None
        if not spec.properties.discrete:
            raise GenotypeError(f"{ewhere}: {op!r} is not an op of a discrete genotype; leave the edge out")
        edges.append(Edge(source, target, op))
    fed = {e.target for e in edges}
    starved = [j for j in range(1, nodes + 1) if j not in fed]
    if starved:
        raise GenotypeError(f"{where}: node(s) {starved} have no incoming edge (each node needs at least one)")
    return BlockGenotype(nodes, tuple(edges))


def genotype_from_dict(data: Any) -> Genotype:
    """Validate ``data`` against the schema and build the genotype; raise ``GenotypeError`` naming the fault."""
    if not isinstance(data, dict):
        raise GenotypeError(f"genotype: expected a JSON object, got {type(data).__name__}")
    version = _require(data, "version", "genotype", int)
    if version not in READABLE_VERSIONS:
        raise GenotypeError(
            f"genotype: unsupported version {version} (this dasvit reads versions {', '.join(map(str, READABLE_VERSIONS))})"
        )
    allowed = {"version", "embed_dim", "patch_size", "input", "blocks", "meta"} | ({"head"} if version >= 2 else set())
    _reject_unknown(data, allowed, "genotype")
    head = _require(data, "head", "genotype", str) if version >= 2 else "cls"
    if head not in HEADS:
        raise GenotypeError(f"genotype: unknown head {head!r}; choose from {', '.join(HEADS)}")
    embed_dim = _positive_int(data, "embed_dim", "genotype")
    patch_size = _positive_int(data, "patch_size", "genotype")
    raw_input = _require(data, "input", "genotype", dict)
    _reject_unknown(raw_input, {"image_size", "in_chans", "num_classes"}, "genotype input")
    spec = InputSpec(*(_positive_int(raw_input, k, "genotype input") for k in ("image_size", "in_chans", "num_classes")))
    if spec.image_size % patch_size != 0:
        raise GenotypeError(f"genotype: image size {spec.image_size} is not divisible by patch size {patch_size}")
    raw_blocks = _require(data, "blocks", "genotype", list)
    if not raw_blocks:
        raise GenotypeError("genotype: 'blocks' is empty")
    blocks = tuple(_parse_block(b, i, embed_dim) for i, b in enumerate(raw_blocks))
    meta = data.get("meta", {})
    if not isinstance(meta, dict):
        raise GenotypeError(f"genotype: field 'meta' must be an object, got {meta!r}")
    return Genotype(embed_dim, patch_size, spec, blocks, meta, head)


def load_genotype(source: str | Path) -> Genotype:
    """Load a genotype from a JSON file path or a preset name (``vit_ti16``, ``vit_s16``, ``vit_b16``)."""
    if str(source) in PRESETS:
        text = resources.files("dasvit.presets").joinpath(f"{source}.json").read_text()
        return genotype_from_dict(json.loads(text))
    path = Path(source)
    if not path.is_file():
        raise GenotypeError(f"genotype {str(source)!r}: no such file and not a preset ({', '.join(PRESETS)})")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise GenotypeError(f"genotype {str(path)!r}: not valid JSON ({err})") from None
    try:
        return genotype_from_dict(data)
    except GenotypeError as err:
        raise GenotypeError(f"genotype {str(path)!r}: {err}") from None
