"""The search step's supernet calls through ``torch.compile``: one graph per call kind, no graph breaks.

The eager step is ~1,000-5,000 small ops whose dispatch, not arithmetic, bounds it on a GPU (see the README's
benchmarks). Token selection keeps every shape static (k = ceil(r N)), so the supernet's forward and backward
capture as whole graphs: inductor fuses their elementwise work into few kernels, and CUDA graphs replay a
captured step with one launch. ``fullgraph=True`` makes a graph break an error rather than a silent slow path.
The step calls the supernet in two ways (alpha step: alpha needs gradients; weight step: alpha held fixed), so
each stage compiles two graphs; evaluation, discretisation and checkpoints use the eager module, which shares the
compiled one's parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

_COMPILE_OPTIONS: dict[str, dict[str, Any]] = {
    "trace": {"backend": "aot_eager"},
    "cudagraphs": {"backend": "cudagraphs"},  # no Triton, no C compiler: only launch overhead goes
    "inductor": {},
    "inductor-cudagraphs": {"mode": "reduce-overhead"},
}


def compile_step_model(model: nn.Module, mode: str) -> Callable[..., torch.Tensor]:
    """``model`` itself for ``mode == "off"``, else its compiled form (same parameters, same math)."""
    if mode == "off":
        return model
    return torch.compile(model, dynamic=False, fullgraph=True, **_COMPILE_OPTIONS[mode])
