"""The compiled search step (``dasvit.compiled``): the supernet's two kinds of call in a step each capture as one
graph (``fullgraph=True`` turns a graph break into an error), and the step's results equal the eager step's.

Traced with ``backend="aot_eager"`` (TorchDynamo + AOT autograd without code generation): what CUDA graphs need
is exactly this capture, and it needs no C++ compiler or GPU here. Inductor and CUDA graphs themselves are
measured by ``benchmarks/token_selection.py`` on a device."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from dasvit.data import make_loader
from dasvit.search import SearchRun


@pytest.mark.parametrize("fused", [False, True], ids=["eager-ops", "fused-ops"])
def test_traced_step_captures_two_graphs_and_matches_the_eager_step(tiny_config, digits, fused):
    runs = {mode: SearchRun(tiny_config, digits, fused=fused, compile_mode=mode) for mode in ("off", "trace")}
    batches = [next(iter(make_loader(s, 32, shuffle=False))) for s in (runs["off"].train_set, runs["off"].val_set)]
    torch._dynamo.reset()
    counters.clear()
    losses = {mode: [float(run.step(*batches)[0]) for _ in range(3)] for mode, run in runs.items()}
    assert counters["stats"]["unique_graphs"] == 2  # the alpha step's call and the weight step's, no recompiles
    assert losses["trace"] == pytest.approx(losses["off"], rel=1e-5)
    eager, traced = (dict(run.model.named_parameters()) for run in runs.values())
    for name, value in eager.items():
        torch.testing.assert_close(traced[name], value, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.slow
def test_each_stage_compiles_its_own_supernet(tiny_config, digits):
    """A new stage builds a deeper supernet with pruned ops: it must be compiled anew, not run by the old graph."""
    one_epoch_each = replace(tiny_config, stages=tuple(replace(s, epochs=1) for s in tiny_config.stages))
    run = SearchRun(one_epoch_each, digits, compile_mode="trace")
    first = run.step_model
    run.run()
    assert run.stage == len(one_epoch_each.stages) - 1 and run.step_model is not first
    assert run.step_model._orig_mod is run.model
