import json

import pandas as pd
import pytest
import torch
from conftest import random_batch, tiny_supernet

from dasvit.checkpoint import CHECKPOINT, GENOTYPE, resume
from dasvit.data import make_loader
from dasvit.genotype import load_genotype
from dasvit.search import SearchRun


def test_search_writes_genotype_metrics_and_alpha_history(tiny_config, digits, tmp_path):
    run = SearchRun(tiny_config, digits)
    genotype = run.run(tmp_path)
    assert load_genotype(tmp_path / GENOTYPE) == genotype
    assert len(genotype.blocks) == tiny_config.stages[-1].depth
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert list(metrics["stage"]) == [0, 0, 1] and list(metrics["depth"]) == [1, 1, 2]
    assert metrics["val_acc"].between(0, 1).all() and (metrics["seconds"] > 0).all()
    alpha = json.loads((tmp_path / "alpha_history.json").read_text())
    assert alpha["ops"] == list(tiny_config.ops) and len(alpha["epochs"]) == 3
    assert [s["stage"] for s in alpha["stages"]] == [0, 1]
    # stage 1 searched at most 2 ops besides 'none' per edge, as scheduled
    stage1_masks = torch.tensor(alpha["stages"][1]["masks"])
    assert int(stage1_masks[..., 1:].sum(-1).max()) <= 2
    # every block's weights are a distribution over the ops still searched
    last = torch.tensor(alpha["epochs"][-1]["weights"])
    assert torch.allclose(last.sum(-1), torch.ones(last.shape[:-1]))


def test_same_seed_same_genotype(tiny_config, digits):
    first = SearchRun(tiny_config, digits)
    second = SearchRun(tiny_config, digits)
    assert first.run() == second.run()
    for a, b in zip(first.model.arch_parameters(), second.model.arch_parameters()):
        assert torch.equal(a, b)


class Killed(Exception):
    pass


def test_resume_after_a_kill_ends_with_the_same_genotype(tiny_config, digits, tmp_path):
    reference = SearchRun(tiny_config, digits)
    expected = reference.run()

    def kill_after_first_epoch(run, record):
        if record.global_epoch == 0:
            raise Killed

    with pytest.raises(Killed):
        SearchRun(tiny_config, digits).run(tmp_path, on_epoch_end=kill_after_first_epoch)
    assert (tmp_path / CHECKPOINT).exists() and not (tmp_path / GENOTYPE).exists()

    resumed = SearchRun(tiny_config, digits)
    assert resume(resumed, tmp_path)
    assert (resumed.stage, resumed.epochs_done) == (0, 1)
    assert resumed.run(tmp_path) == expected
    for a, b in zip(resumed.model.arch_parameters(), reference.model.arch_parameters()):
        assert torch.equal(a, b)
    assert len(pd.read_csv(tmp_path / "metrics.csv")) == 3


def test_resume_refuses_a_checkpoint_of_another_config(tiny_config, digits, tmp_path):
    SearchRun(tiny_config, digits).run(tmp_path)
    other = SearchRun(tiny_config.with_overrides(keep_ratio=1.0), digits)
    with pytest.raises(ValueError, match="differs in: keep_ratio"):
        resume(other, tmp_path)


def test_second_order_search_runs(tiny_config, digits):
    genotype = SearchRun(tiny_config.with_overrides(second_order=True), digits).run()
    assert genotype.meta["second_order"] is True


def test_alpha_held_fixed_gives_the_same_weight_gradients_and_none_for_alpha(digits):
    """The weight step's forward with ``alpha_grad=False``: bit-identical weight gradients, no alpha gradient."""
    images, labels = random_batch(16)
    grads = []
    for alpha_grad in (True, False):
        model = tiny_supernet(keep_ratio=0.5)
        torch.nn.functional.cross_entropy(model(images, alpha_grad=alpha_grad), labels).backward()
        grads.append([p.grad for p in model.weight_parameters()])
        alpha_grads = [a.grad for a in model.arch_parameters()]
    assert all(g is None for g in alpha_grads)
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_the_weight_step_leaves_alpha_gradients_as_the_architect_set_them(tiny_config, digits):
    """Alpha is updated by the architect alone; the weight step's backward must not add train-loss gradients to it
    (they were computed every step and then thrown away)."""
    run = SearchRun(tiny_config, digits)
    batches = [next(iter(make_loader(s, 32, shuffle=False))) for s in (run.train_set, run.val_set)]
    architect_step, applied = run.architect.step, []

    def recording_step(*args, **kwargs):
        result = architect_step(*args, **kwargs)
        applied.append([a.grad.clone() for a in run.model.arch_parameters()])
        return result

    run.architect.step = recording_step
    run.step(*batches)
    assert all(torch.equal(a.grad, g) for a, g in zip(run.model.arch_parameters(), applied[0]))
