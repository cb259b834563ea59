import json
from pathlib import Path

import pytest
import torch

from dasvit.config import ConfigError, DataConfig, RetrainConfig
from dasvit.genotype import genotype_from_dict
from dasvit.retrain import retrain, warmup_cosine
from dasvit.saved_model import load_model

GENOTYPE = {
    "version": 1, "embed_dim": 16, "patch_size": 2, "input": {"image_size": 8, "in_chans": 1, "num_classes": 10},
    "blocks": [{"nodes": 2, "edges": [{"from": 0, "to": 1, "op": "conv_k3"}, {"from": 1, "to": 2, "op": "attn_h2"}]}],
}


def test_retrain_learns_digits_and_writes_results(digits, tmp_path):
    config = RetrainConfig(data=DataConfig("digits"), epochs=6, batch_size=64, lr=3e-3)
    result = retrain(genotype_from_dict(GENOTYPE), config, digits, out_dir=tmp_path)
    assert result.test_acc > 0.3  # chance is 0.1
    assert json.loads((tmp_path / "result.json").read_text())["params"] == result.params > 0
    assert result.macs > 0
    model = load_model(tmp_path)  # the plain network of the genotype: no search machinery
    assert not any("alpha" in key for key in model.state_dict())
    assert model.card.test_acc == result.test_acc and model.card.genotype_id == genotype_from_dict(GENOTYPE).id


def test_warmup_then_cosine():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    schedule = warmup_cosine(optimizer, warmup_steps=4, total_steps=12)
    lrs = []
    for _ in range(12):
        lrs.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    assert lrs[0] == pytest.approx(0.01) and lrs[4] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(lrs[:4], lrs[1:5])) and all(a > b for a, b in zip(lrs[4:], lrs[5:]))


def test_retrain_rejects_indivisible_image_size():
    with pytest.raises(ConfigError, match="image size 9 is not divisible by patch size 2"):
        RetrainConfig(data=DataConfig("digits", image_size=9)).validate(2)


def _retrain_digits(threads: int) -> tuple[float, list[float]]:
    """Test accuracy and per-epoch test losses of a short retraining with ``threads`` torch threads."""
    from dasvit.data import load_data

    torch.set_num_threads(threads)
    config = RetrainConfig(data=DataConfig("digits"), epochs=2, batch_size=64, lr=3e-3, seed=7)
    losses: list[float] = []
    result = retrain(genotype_from_dict(GENOTYPE), config, load_data(DataConfig("digits")),
                     on_epoch_end=lambda row: losses.append(row["test_loss"]))
    return result.test_acc, losses


@pytest.mark.slow
def test_retraining_is_reproducible_alone_twice_and_in_a_ray_task():
    """Same genotype, seed and thread count: the same result in a second run and inside a Ray task (as the
    sweep's parallel retrainings run), to the last bit of the loss."""
    import ray

    threads = torch.get_num_threads()
    try:
        first, second = _retrain_digits(1), _retrain_digits(1)
        tests = str(Path(__file__).parent)  # the worker imports this module for _retrain_digits
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": tests}})
        try:
            in_ray = ray.get(ray.remote(num_cpus=1)(_retrain_digits).remote(1))
        finally:
            ray.shutdown()
    finally:
        torch.set_num_threads(threads)
    assert first == second == in_ray


@pytest.mark.parametrize("recipe_threads", [1, 2])
def test_the_recipe_fixes_torchs_threads_whatever_the_process_runs(digits, recipe_threads):
    """1 and 2 threads round a float sum differently, so a retraining runs with its recipe's thread count (a sweep's
    retraining task, ``dasvit retrain`` and the scripts then agree) and leaves the process's own as it found it."""
    before = torch.get_num_threads()
    seen: list[int] = []
    try:
        for process_threads in (1, 2):
            torch.set_num_threads(process_threads)
            config = RetrainConfig(data=DataConfig("digits"), epochs=1, batch_size=64, threads=recipe_threads)
            retrain(genotype_from_dict(GENOTYPE), config, digits,
                    on_epoch_end=lambda _: seen.append(torch.get_num_threads()))
            assert torch.get_num_threads() == process_threads
    finally:
        torch.set_num_threads(before)
    assert seen == [recipe_threads, recipe_threads]
    with pytest.raises(ConfigError, match="threads must be a positive int, got 0"):
        RetrainConfig(threads=0).validate(2)
