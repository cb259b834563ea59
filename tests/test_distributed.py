"""Two gloo processes run one search data-parallel: alpha and weights stay bit-identical across ranks, and the
per-epoch check of the sweep's trials (``identical_across_ranks``) says so, and says when they are not."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dasvit.config import DataConfig, SearchConfig
from dasvit.data import load_data
from dasvit.distributed import identical_across_ranks
from dasvit.search import SearchRun
from dasvit.vocabulary import StageSpec


def _worker(rank: int, world: int, store_path: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=world)
    config = SearchConfig(data=DataConfig("digits"), embed_dim=16, ops=("none", "skip", "attn_h2", "conv_k3"),
                          stages=(StageSpec(1, 2),), batch_size=32, alpha_lr=1e-2, seed=5)
    run = SearchRun(config, load_data(DataConfig("digits")))
    run.run()
    first_batch = next(iter(run._loaders()[0]))[1]
    alphas = run.model.arch_parameters()
    in_sync = identical_across_ranks(alphas)
    nudged = [a.detach().clone() for a in alphas]
    if rank == 1:
        nudged[0].view(-1)[0] = torch.nextafter(nudged[0].view(-1)[0], torch.tensor(1.0))  # one ulp, one rank
    torch.save({"alphas": [a.detach() for a in alphas], "in_sync": in_sync,
                "nudged_in_sync": identical_across_ranks(nudged),
                "weights": [w.detach() for w in run.model.weight_parameters()],
                "val_acc": run.history[-1].val_acc, "first_labels": first_batch}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_alpha_stays_bit_identical_across_two_ranks(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert all(torch.equal(a, b) for a, b in zip(r0["alphas"], r1["alphas"]))
    assert r0["in_sync"] and r1["in_sync"] and not r0["nudged_in_sync"] and not r1["nudged_in_sync"]
    assert all(torch.equal(a, b) for a, b in zip(r0["weights"], r1["weights"]))
    assert any(not torch.equal(a, torch.zeros_like(a)) for a in r0["alphas"])  # alpha did move
    assert r0["val_acc"] == r1["val_acc"]  # metrics are reduced over ranks
    assert not torch.equal(r0["first_labels"], r1["first_labels"])  # each rank sees its own shard


def _global_batches(config: SearchConfig, digits, world: int, monkeypatch) -> tuple[list[set[int]], int, int]:
    """The sample indices of each global train batch (the union over ranks), steps per epoch, and the lr schedule
    length, as ``world`` ranks of one search would see them (ranks faked: building the loaders needs no group)."""
    import dasvit.search

    batches: list[set[int]] = []
    for r in range(world):
        monkeypatch.setattr(dasvit.search, "rank", lambda r=r: r)
        monkeypatch.setattr(dasvit.search, "world_size", lambda: world)
        run = SearchRun(config, digits)
        for k, batch in enumerate(run._loaders()[0].batch_sampler):
            if k == len(batches):
                batches.append(set())
            batches[k] |= set(batch)
    return batches, run.steps_per_epoch, run.w_scheduler.T_max


def test_batch_size_is_global_one_worker_x64_trains_like_two_x32(digits, monkeypatch):
    """``batch_size`` is the global batch: 2 workers each take half of it, so they see the same images per step,
    take the same number of steps and follow the same lr schedule as 1 worker."""
    config = SearchConfig(data=DataConfig("digits"), embed_dim=16, ops=("none", "skip", "attn_h2"),
                          stages=(StageSpec(1, 2),), batch_size=64, seed=5)
    one, steps_one, schedule_one = _global_batches(config, digits, 1, monkeypatch)
    two, steps_two, schedule_two = _global_batches(config, digits, 2, monkeypatch)
    assert steps_one == steps_two == len(one) == len(two) > 1 and schedule_one == schedule_two
    assert one == two and all(len(batch) == 64 for batch in two)
