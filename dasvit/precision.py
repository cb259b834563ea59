"""Mixed precision: bf16 autocast for a model's forward pass, the setting GPU sweeps use.

bf16 keeps fp32's exponent range, so no loss scaling is needed; weights, optimiser state and alpha stay fp32,
and the logits come back as fp32 so that losses and accuracies are computed at full precision.
"""

from __future__ import annotations

import torch
from torch import nn

from dasvit.vocabulary import validate_precision


def autocast_forward(model: nn.Module, device: torch.device, precision: str) -> nn.Module:
    """``model`` itself, its forward run under bf16 autocast when ``precision == "bf16"`` (fp32: unchanged)."""
    if validate_precision(precision) == "fp32":
        return model
    forward = model.forward

    def forward_in_bf16(*args: object, **kwargs: object) -> torch.Tensor:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            return forward(*args, **kwargs).float()

    model.forward = forward_in_bf16
    return model
