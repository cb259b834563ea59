"""What a model measures: parameters, MACs and accuracy.

Convention: MACs are multiply-accumulates of the matmuls, convolutions and attention products counted by
``torch.utils.flop_counter`` for one image; FLOPs = 2 x MACs. Element-wise work (LayerNorm, GELU, softmax) is not
counted, as in torchvision's and timm's published figures (ViT-B/16 at 224 px: 17.56 GMACs).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.data import Dataset
from torch.utils.flop_counter import FlopCounterMode

from dasvit.data import make_loader


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, image_size: int, in_chans: int) -> int:
    """MACs of one forward pass on one image.

    Counted with grad enabled and the math attention kernel: under ``no_grad`` or a fused CPU kernel the counter
    misses the attention matmuls (torchvision's ViT-B/16 then reads 11.27 G instead of 17.56 G).
    """
    images = torch.zeros(1, in_chans, image_size, image_size, device=next(model.parameters()).device)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model(images)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


@torch.no_grad()
def evaluate_sums(
    model: nn.Module, dataset: Dataset, device: torch.device, shard: tuple[int, int] = (0, 1), batch_size: int = 256
) -> list[float]:
    """[summed cross-entropy, correct, count] of ``model`` over (this rank's ``shard`` of) ``dataset``."""
    was_training = model.training
    model.eval()
    sums = [0.0, 0.0, 0.0]
    for images, labels in make_loader(dataset, batch_size, shuffle=False, shard=shard):
        logits = model(images.to(device))
        labels = labels.to(device)
        sums[0] += float(F.cross_entropy(logits, labels, reduction="sum"))
        sums[1] += int((logits.argmax(1) == labels).sum())
        sums[2] += len(labels)
    model.train(was_training)
    return sums


def evaluate(model: nn.Module, dataset: Dataset, device: torch.device) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` over ``dataset`` (eval mode, no gradients)."""
    loss_sum, correct, count = evaluate_sums(model, dataset, device)
    return loss_sum / count, correct / count


def peak_memory_during(step: Callable[[], object], device: torch.device) -> int:
    """Bytes allocated while ``step`` runs above what was live before it (activations, gradients, temporaries).

    GPU: ``torch.cuda.max_memory_allocated``. CPU: the torch profiler's allocation events, each op's own net
    allocation in time order (a process's peak RSS is dominated by imports and data, not by the step).
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    changes = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events())
    live = peak = 0
    for _, change in changes:
        live += change
        peak = max(peak, live)
    return peak
