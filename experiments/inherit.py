"""Weight inheritance, for the objective study: the discrete network of a genotype, starting from the supernet's
trained weights.

Every op a genotype keeps was trained inside its edge's mixture, and the stem and head were trained under the whole
supernet; copying them gives the derived network a start that reflects the search's training rather than a random
init (the one-shot NAS "inherited weights" evaluation). The copy is exact: ``DagBlock`` and ``MixedOp`` build each
op with the same ``dasvit.ops.build_op``, so the parameter shapes match one to one.
"""

from __future__ import annotations

from dasvit.genotype import Genotype
from dasvit.model import DiscreteViT, build_model
from dasvit.supernet import Supernet
from dasvit.vocabulary import dag_edges


def inherit_weights(supernet: Supernet, genotype: Genotype) -> DiscreteViT:
    """``genotype``'s network (built for the supernet's input) with the stem, head and every kept op copied from
    ``supernet``. The genotype must be one the supernet can express: as many blocks, each edge's op still searched."""
    if len(genotype.blocks) != len(supernet.blocks):
        raise ValueError(f"a genotype of {len(genotype.blocks)} blocks cannot inherit from a supernet of "
                         f"{len(supernet.blocks)}")
    spec = supernet.input_spec
    model = build_model(genotype, spec.image_size, spec.in_chans, spec.num_classes)
    model.stem.load_state_dict(supernet.stem.state_dict())
    model.head.load_state_dict(supernet.head.state_dict())
    edges = dag_edges(supernet.space.nodes)
    for block, search_block, block_genotype in zip(model.blocks, supernet.blocks, genotype.blocks):
        for op, edge in zip(block.ops, block_genotype.live_edges()):
            mixed = search_block.mixed[edges.index((edge.source, edge.target))]
            column = supernet.space.ops.index(edge.op)
            if column not in mixed.columns:
                raise ValueError(f"op {edge.op!r} on edge {edge.source}->{edge.target} was pruned from the supernet")
            op.load_state_dict(mixed.ops[mixed.columns.index(column)].state_dict())
    return model
