import pytest
import torch
from torchvision.models import vit_b_16

from dasvit.genotype import load_genotype
from dasvit.metrics import count_macs, count_params
from dasvit.model import build_model


def test_vit_b16_preset_matches_torchvision_exactly():
    ours = build_model(load_genotype("vit_b16"))
    reference = vit_b_16(weights=None)
    assert count_params(ours) == count_params(reference) == 86_567_656
    assert count_macs(ours, 224, 3) == 17_563_828_224  # torchvision lists 17.56 GMACs


@pytest.mark.parametrize("name,params,macs",
                         [("vit_s16", 22_050_664, 4_598_882_304), ("vit_ti16", 5_717_416, 1_253_683_200)])
def test_small_presets_match_the_analytic_counts(name, params, macs):
    model = build_model(load_genotype(name))
    assert count_params(model) == params
    assert count_macs(model, 224, 3) == macs


def test_discrete_model_adapts_to_other_inputs():
    model = build_model(load_genotype("vit_ti16"), image_size=32, in_chans=1, num_classes=7)
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 7)
    assert not any(name.startswith("alpha") for name, _ in model.named_parameters())
