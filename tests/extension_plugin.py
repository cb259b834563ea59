"""A plugin as a user would write one, outside the package: it registers a candidate op, a data set and a trial
objective when imported (``DASVIT_PLUGINS=extension_plugin``, with this folder on ``PYTHONPATH``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dasvit.config import DataConfig
from dasvit.data import ImageData, LabelledTensors
from dasvit.objective import ScoreInputs
from dasvit.ops import TokenContext
from dasvit.vocabulary import DatasetSpec, ObjectiveSpec, OpFamily, register_dataset, register_objective, register_op_family

SCALE = register_op_family(OpFamily(
    "scale", "extension_plugin:ChannelScale", about="x + g * LN(x): a learned per-channel gate, no token mixing"))
STRIPES = register_dataset(DatasetSpec(
    "stripes", 8, 2, "extension_plugin:load_stripes", "made by the plugin: a horizontal or a vertical bar",
    ("horizontal", "vertical")))
FEWEST_MACS = register_objective(ObjectiveSpec(
    "fewest_macs", "extension_plugin:fewest_macs", every_epoch=True, stage_comparable=True, accuracy=False,
    about="the cheapest genotype wins"))


def load_stripes(config: DataConfig) -> ImageData:
    """200 noisy 8x8 images of one bar, horizontal (label 0) or vertical (1), at a random row or column."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (200,), generator=generator)
    images = 0.2 * torch.rand(200, 1, 8, 8, generator=generator)
    for i, (label, at) in enumerate(zip(labels, torch.randint(0, 8, (200,), generator=generator))):
        if label == 0:
            images[i, 0, at, :] = 1.0
        else:
            images[i, 0, :, at] = 1.0
    return ImageData("stripes", LabelledTensors(images[:160], labels[:160]), LabelledTensors(images[160:], labels[160:]),
                     2, 1, 8, (0.3,), (0.3,), flip=False, classes=STRIPES.classes)


def fewest_macs(inputs: ScoreInputs) -> float:
    return -float(inputs.macs)


class ChannelScale(nn.Module):
    """``x + g * LN(x)`` with a learned per-channel ``g``: a residual op with no fused form (it runs eagerly under
    ``--fused``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.gate = nn.Parameter(torch.full((dim,), 0.5))

    def forward(self, x: torch.Tensor, ctx: TokenContext) -> torch.Tensor:
        return x + self.gate * F.layer_norm(x, x.shape[-1:])
