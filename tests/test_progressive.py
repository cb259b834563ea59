import pytest
import torch

from dasvit.progressive import prune_masks, stretch_masks
from dasvit.vocabulary import StageSpec, validate_stages


def test_prune_keeps_none_and_the_strongest_ops():
    alpha = torch.tensor([[9.0, 0.1, 3.0, 2.0, 1.0], [0.0, 5.0, 1.0, 4.0, 2.0]])
    mask = torch.ones_like(alpha, dtype=torch.bool)
    mask[1, 3] = False  # already pruned: cannot come back
    (pruned,) = prune_masks([alpha], [mask], none_columns=[0], keep=2)
    assert pruned.tolist() == [[True, False, True, True, False], [True, True, False, False, True]]


def test_prune_never_revives_ops_when_fewer_remain():
    alpha = torch.zeros(1, 4)
    mask = torch.tensor([[True, True, False, False]])
    (pruned,) = prune_masks([alpha], [mask], none_columns=[0], keep=3)
    assert pruned.tolist() == mask.tolist()


def test_stretch_maps_blocks_by_relative_position():
    masks = [torch.full((1, 2), i == 0) for i in range(2)]
    stretched = stretch_masks(masks, 4)
    assert [bool(m[0, 0]) for m in stretched] == [True, True, False, False]


@pytest.mark.parametrize(
    "stages,needle",
    [((), "empty"), ((StageSpec(0, 1),), "depth must be an integer >= 1"), ((StageSpec(1, 0),), "epochs must be"),
     ((StageSpec(1, 1, 2),), "first stage searches them all"), ((StageSpec(1, 1), StageSpec(2, 1, 0)), "stage 1: ops")],
)
def test_bad_schedules_are_rejected(stages, needle):
    with pytest.raises(ValueError, match=needle):
        validate_stages(stages, candidate_ops=4)
