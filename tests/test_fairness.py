import pytest
import torch
from conftest import TINY_OPS, random_batch, tiny_supernet

from dasvit.architect import Architect
from dasvit.fairness import skip_excess_penalty
from dasvit.vocabulary import validate_lambda

FAMILIES = ["none", "skip", "attn", "mlp", "conv"]


def test_zero_while_skip_holds_its_fair_share():
    alpha = torch.zeros(3, 5)
    mask = torch.ones(3, 5, dtype=torch.bool)
    assert float(skip_excess_penalty([alpha], [mask], FAMILIES)) == 0.0


def test_formula_on_a_dominant_skip():
    alpha = torch.tensor([[0.0, 4.0, 0.0, 0.0, 0.0]])
    mask = torch.ones(1, 5, dtype=torch.bool)
    p_skip = torch.softmax(alpha, -1)[0, 1]
    expected = (p_skip - 1 / 5) ** 2
    assert torch.allclose(skip_excess_penalty([alpha], [mask], FAMILIES), expected)
    # pruning ops shrinks the number of families, raising skip's fair share
    mask[0, 3:] = False
    p_skip = torch.softmax(alpha[0, :3], -1)[1]
    assert torch.allclose(skip_excess_penalty([alpha], [mask], FAMILIES), (p_skip - 1 / 3) ** 2)


def test_same_family_ops_count_once():
    families = ["none", "skip", "attn", "attn"]
    alpha = torch.tensor([[0.0, 3.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, False]])
    p_skip = torch.softmax(alpha[0, :3], -1)[1]
    assert torch.allclose(skip_excess_penalty([alpha], [mask], families), (p_skip - 1 / 3) ** 2)


@pytest.mark.parametrize("value", [-0.1, float("nan"), "1"])
def test_lambda_must_be_non_negative(value):
    with pytest.raises(ValueError, match="must be >= 0"):
        validate_lambda(value)


def _alpha_after_steps(fairness_lambda: float, penalty_off: bool = False) -> torch.Tensor:
    """Alpha of a depth-1 supernet that starts skip-dominated, after 10 alpha steps; ``penalty_off`` replaces
    R(alpha) by a constant 0, i.e. a search without the regulariser."""
    model = tiny_supernet(depth=1)
    with torch.no_grad():
        model.alphas[0][:, TINY_OPS.index("skip")] = 2.0  # start from a skip-dominated mixture
    architect = Architect(model, lr=0.05, fairness_lambda=fairness_lambda)
    if penalty_off:
        architect.fairness_penalty = lambda: model.alphas[0].sum() * 0.0
    for step in range(10):
        architect.step(random_batch(seed=step), random_batch(seed=100 + step), xi=0.0)
    return model.alphas[0].detach().clone()


def _skip_share(alpha: torch.Tensor) -> float:
    return float(torch.softmax(alpha, -1)[:, TINY_OPS.index("skip")].mean())


def test_regulariser_pushes_skip_back():
    without, with_penalty = _alpha_after_steps(0.0), _alpha_after_steps(5.0)
    assert _skip_share(with_penalty) < _skip_share(without) - 0.05


def test_lambda_zero_switches_the_regulariser_off():
    """lambda = 0 takes exactly the alpha steps of a search that has no regulariser at all, although the
    skip-dominated start makes R(alpha) and its gradient non-zero."""
    assert torch.equal(_alpha_after_steps(0.0), _alpha_after_steps(5.0, penalty_off=True))
    assert not torch.equal(_alpha_after_steps(0.0), _alpha_after_steps(5.0))


def test_a_space_without_skip_searches_with_lambda_set():
    """No skip op, so R(alpha) is a constant 0: lambda > 0 must not break the alpha step (it once raised)."""
    from dasvit.genotype import InputSpec
    from dasvit.supernet import Supernet
    from dasvit.vocabulary import SearchSpace

    model = Supernet(SearchSpace(("none", "attn_h2", "mlp_r2")), 1, 16, 2, InputSpec(8, 1, 10))
    before = model.alphas[0].detach().clone()
    Architect(model, lr=0.05, fairness_lambda=0.5).step(random_batch(seed=1), random_batch(seed=2), xi=0.0)
    assert not torch.equal(model.alphas[0], before)


def test_the_architect_refuses_a_negative_lambda_like_the_supernet_refuses_a_bad_keep_ratio():
    with pytest.raises(ValueError, match="fairness lambda -0.5 must be >= 0"):
        Architect(tiny_supernet(depth=1), fairness_lambda=-0.5)
    with pytest.raises(ValueError, match="keep ratio 1.5 is outside"):
        tiny_supernet(keep_ratio=1.5)
