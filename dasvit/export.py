"""Export a trained network for deployment (ONNX, or a ``torch.export`` program) with a parity check.

The file appears only once the exported network agrees with PyTorch: the largest absolute difference of the logits
on a seeded batch must be at most ``tolerance``, at two batch sizes, since the batch dimension is left dynamic.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

FORMATS = ("onnx", "exported-program")
SUFFIXES = {"onnx": ".onnx", "exported-program": ".pt2"}
CHECK_BATCHES = (1, 8)


class ExportError(RuntimeError):
    """The exported network disagrees with PyTorch."""


def _export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime  # the export extra (dasvit.cli checks that it is installed)
    torch.onnx.export(model, (example,), str(path), dynamo=True, verbose=False, external_data=False, input_names=["images"],
                      output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("batch")},))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda images: session.run(None, {"images": images})[0]


def _export_program(model: nn.Module, example: torch.Tensor, path: Path) -> Callable[[np.ndarray], np.ndarray]:
    program = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(path))
    loaded = torch.export.load(str(path)).module()
    return lambda images: loaded(torch.from_numpy(images)).detach().numpy()


def export_model(model: nn.Module, input_shape: tuple[int, int, int], path: str | Path, fmt: str,
                 tolerance: float = 1e-4) -> float:
    """Write ``model`` (eval mode, CPU) to ``path`` in format ``fmt``; return the parity check's max abs difference.

    ``ExportError`` when it exceeds ``tolerance``; ``path`` is then left as it was."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: choose from {', '.join(FORMATS)}")
    model = model.eval().cpu()
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randn(n, *input_shape, generator=generator) for n in CHECK_BATCHES]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
        staged = Path(tmp) / path.name
        run = (_export_onnx if fmt == "onnx" else _export_program)(model, batches[-1], staged)
        with torch.no_grad():
            diff = max(float(np.abs(run(b.numpy()) - model(b).numpy()).max()) for b in batches)
        if not diff <= tolerance:
            raise ExportError(f"the {fmt} export disagrees with PyTorch: max abs logit difference {diff:.3g} > "
                              f"{tolerance:g}; nothing written to {str(path)!r}")
        os.replace(staged, path)
    return diff
