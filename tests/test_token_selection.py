import math

import pytest
import torch
from conftest import random_batch, tiny_supernet

from dasvit.token_selection import (
    cls_attention_scores,
    merge_tokens,
    num_kept,
    put_rows,
    select_tokens,
    take_rows,
    token_rows,
)
from dasvit.vocabulary import validate_keep_ratio


@pytest.mark.parametrize("ratio", [0.1, 0.25, 0.5, 0.9, 1.0])
def test_selects_ceil_r_n_tokens_in_grid_order(ratio):
    tokens = torch.randn(3, 1 + 49, 8)
    selected, index = select_tokens(tokens, ratio)
    k = math.ceil(ratio * 49)
    assert selected.shape == (3, 1 + k, 8) and index.shape == (3, k)
    assert torch.equal(selected[:, 0], tokens[:, 0])
    assert bool((index[:, 1:] > index[:, :-1]).all())
    top = cls_attention_scores(tokens).topk(k, dim=1).indices.sort(dim=1).values
    assert torch.equal(index, top)


@pytest.mark.parametrize("ratio", [0.0, -0.5, 1.01, float("nan")])
def test_rejects_ratios_outside_unit_interval(ratio):
    with pytest.raises(ValueError, match="outside \\(0, 1\\]"):
        validate_keep_ratio(ratio)


def test_merge_writes_back_only_selected():
    tokens = torch.randn(2, 10, 4)
    selected, index = select_tokens(tokens, 0.3)
    merged = merge_tokens(tokens, selected + 1.0, index)
    changed = (merged != tokens).any(-1)
    assert changed[:, 0].all()
    for b in range(2):
        expected = torch.zeros(9, dtype=torch.bool)
        expected[index[b]] = True
        assert torch.equal(changed[b, 1:], expected)


def test_unselected_tokens_bypass_each_block_unchanged():
    model = tiny_supernet(keep_ratio=0.25)
    images, _ = random_batch()
    tokens = model.stem(images)
    block, weights = model.blocks[0], model.op_weights()[0]
    out = block(tokens, weights, model.stem.grid, 0.25)
    _, index = select_tokens(tokens, 0.25)
    bypass = torch.ones(tokens.shape[:2], dtype=torch.bool)
    bypass[:, 0] = False
    bypass[:, 1:].scatter_(1, index, False)
    assert num_kept(16, 0.25) == 4 and int((~bypass[:, 1:]).sum(1)[0]) == 4
    assert torch.equal(out[bypass], tokens[bypass])
    assert not torch.allclose(out[~bypass], tokens[~bypass])


def test_gradients_reach_alpha_under_selection():
    model = tiny_supernet(keep_ratio=0.25)
    images, labels = random_batch()
    torch.nn.functional.cross_entropy(model(images), labels).backward()
    for alpha in model.arch_parameters():
        assert alpha.grad is not None
        # every op that is evaluated (all but 'none', column 0) gets a non-zero gradient
        assert bool((alpha.grad[:, 1:] != 0).all())


def test_selection_of_every_token_equals_plain_darts():
    model = tiny_supernet(keep_ratio=1.0)
    images, _ = random_batch()
    plain = model(images)
    model.keep_ratio = 0.99  # ceil(0.99 * 16) = 16: all tokens go through the selection/merge path
    assert torch.allclose(model(images), plain, atol=1e-5)


def test_row_moves_equal_elementwise_gather_and_scatter_bit_for_bit():
    """take_rows / put_rows move whole rows; values and gradients must be exactly those of gather / scatter."""
    torch.manual_seed(0)
    x = torch.randn(3, 9, 5, requires_grad=True)
    values = torch.randn(3, 4, 5, requires_grad=True)
    index = torch.rand(3, 9).topk(4, dim=1).indices.sort(dim=1).values
    expanded = index.unsqueeze(-1).expand(-1, -1, 5)
    rows = token_rows(index, 9)
    assert torch.equal(rows[4:8], index[1] + 9)

    def grads(out: torch.Tensor) -> list[torch.Tensor]:
        return list(torch.autograd.grad((out * torch.arange(out.numel()).reshape(out.shape)).sum(), (x, values)))

    taken, gathered = take_rows(x, rows), x.gather(1, expanded)
    assert torch.equal(taken, gathered)
    assert torch.equal(torch.autograd.grad(taken.pow(3).sum(), x)[0], torch.autograd.grad(gathered.pow(3).sum(), x)[0])
    put, scattered = put_rows(x, rows, values), x.scatter(1, expanded, values)
    assert torch.equal(put, scattered)
    for ours, reference in zip(grads(put), grads(scattered)):
        assert torch.equal(ours, reference)
