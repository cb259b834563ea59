import torch
import torch.nn.functional as F
from conftest import random_batch, tiny_supernet
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from dasvit.architect import Architect


def _exact_unrolled_alpha_grad(model, train_batch, val_batch, xi):
    """d/d alpha of L_val(w - xi * grad_w L_train(w, alpha), alpha), differentiating through the unrolled step."""
    named = dict(model.named_parameters())
    weight_names = [n for n in named if not n.startswith("alphas.")]
    alpha_names = [n for n in named if n.startswith("alphas.")]
    weights, alphas = [named[n] for n in weight_names], [named[n] for n in alpha_names]

    def loss(ws, batch):
        params = {**dict(zip(weight_names, ws)), **dict(zip(alpha_names, alphas))}
        return F.cross_entropy(functional_call(model, params, (batch[0],)), batch[1])

    with sdpa_kernel(SDPBackend.MATH):  # a kernel with double backward
        grads = torch.autograd.grad(loss(weights, train_batch), weights, create_graph=True)
        unrolled = [w - xi * g for w, g in zip(weights, grads)]
        return torch.autograd.grad(loss(unrolled, val_batch), alphas)


def _relative_error(approx, exact):
    diff = torch.sqrt(sum(((a - e) ** 2).sum() for a, e in zip(approx, exact)))
    return float(diff / torch.sqrt(sum((e**2).sum() for e in exact)))


def test_second_order_matches_exact_autograd():
    model = tiny_supernet(dtype=torch.float64)
    train_batch, val_batch = random_batch(16, torch.float64, seed=1), random_batch(16, torch.float64, seed=2)
    xi = 0.5  # large enough that the second-order term matters
    finite_difference, _, _ = Architect(model, second_order=True).alpha_gradient(train_batch, val_batch, xi)
    exact = _exact_unrolled_alpha_grad(model, train_batch, val_batch, xi)
    first_order, _, _ = Architect(model, second_order=False).alpha_gradient(train_batch, val_batch, xi)
    assert _relative_error(finite_difference, exact) < 1e-2
    # the check has teeth: the first-order gradient is measurably different from the exact one
    assert _relative_error(first_order, exact) > 5 * _relative_error(finite_difference, exact)


def test_second_order_restores_the_weights():
    model = tiny_supernet(dtype=torch.float64)
    before = [p.detach().clone() for p in model.weight_parameters()]
    batches = random_batch(8, torch.float64), random_batch(8, torch.float64, 1)
    Architect(model, second_order=True).alpha_gradient(*batches, 0.1)
    assert all(torch.equal(a, b) for a, b in zip(before, model.weight_parameters()))


def test_alpha_has_its_own_optimiser_and_only_alpha_moves():
    model = tiny_supernet()
    architect = Architect(model)
    alpha_ids = {id(p) for p in model.arch_parameters()}
    assert {id(p) for group in architect.optimizer.param_groups for p in group["params"]} == alpha_ids
    assert not alpha_ids & {id(p) for p in model.weight_parameters()}
    weights = [p.detach().clone() for p in model.weight_parameters()]
    alphas = [p.detach().clone() for p in model.arch_parameters()]
    architect.step(random_batch(), random_batch(seed=1), xi=0.01)
    assert all(torch.equal(a, b) for a, b in zip(weights, model.weight_parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(alphas, model.arch_parameters()))
    group = architect.optimizer.param_groups[0]
    assert (group["lr"], group["betas"], group["weight_decay"]) == (3e-4, (0.5, 0.999), 1e-3)
