"""The trial objective: a short proxy retraining of the derived genotype on the search split, a MACs budget, and
when a trial is scored."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from dasvit.config import DataConfig, SearchConfig
from dasvit.data import load_data
from dasvit.objective import proxy_score, within_budget
from dasvit.platform.trial_score import TrialScore
from dasvit.search import SearchRun
from dasvit.vocabulary import StageSpec

TINY_SEARCH = SearchConfig(data=DataConfig("digits"), embed_dim=16, ops=("none", "skip", "attn_h2", "mlp_r2"),
                           stages=(StageSpec(1, 2), StageSpec(2, 1, 2)), batch_size=64)


class _Untouchable(Dataset):
    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int):
        raise AssertionError("the proxy read the test split")


@pytest.fixture(scope="module")
def digits():
    return load_data(DataConfig("digits"))


@pytest.fixture(scope="module")
def searched(digits):
    run = SearchRun(TINY_SEARCH, digits)
    run.run()
    return run


def test_within_budget_ranks_every_network_in_budget_above_any_over_it():
    assert within_budget(0.9, 100, None) == 0.9 and within_budget(0.9, 100, 100) == 0.9
    over_a_little, over_a_lot = within_budget(0.99, 110, 100), within_budget(0.99, 300, 100)
    assert over_a_lot < over_a_little < 0.0 <= within_budget(0.0, 100, 100)
    assert over_a_little == pytest.approx(-0.1)


def test_proxy_trains_on_the_search_split_and_never_reads_the_test_split(searched, digits):
    poisoned = replace(digits, test=_Untouchable())
    score = proxy_score(searched.genotype(), poisoned, TINY_SEARCH.data, split_seed=0, epochs=2, seed=0)
    assert len(score.curve) == 2 and score.curve[-1] == score.val_acc
    assert 0.1 < score.val_acc <= 1.0 and score.seconds > 0  # learnt something on 10 classes


def test_proxy_is_deterministic_and_leaves_the_callers_random_streams_alone(searched, digits):
    torch.manual_seed(7), random.seed(7), np.random.seed(7)
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(7), random.seed(7), np.random.seed(7)
    first = proxy_score(searched.genotype(), digits, TINY_SEARCH.data, split_seed=0, epochs=1, seed=3)
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1] and np.random.rand() == expected[2]
    again = proxy_score(searched.genotype(), digits, TINY_SEARCH.data, split_seed=0, epochs=1, seed=3)
    assert again.val_acc == first.val_acc


def test_a_trial_is_scored_by_the_proxy_at_stage_ends_only(digits):
    run = SearchRun(TINY_SEARCH, digits)
    score = TrialScore()
    scored = []
    while not run.finished:
        record = run.advance()
        scored.append(score.update(run, record, params=10, macs=1000, objective="proxy", proxy_epochs=1, max_macs=None,
                                   data=digits))
        if record.global_epoch == 0:
            assert math.isnan(score.objective)  # stage 0 has 2 epochs: no score after the first
    assert scored == [False, True, True]
    assert score.scored_stage == 1 and score.objective == score.proxy_val_acc
    budgeted = TrialScore()
    budgeted.update(run, run.history[-1], params=10, macs=2000, objective="proxy", proxy_epochs=1, max_macs=1000,
                    data=digits)
    assert budgeted.objective == pytest.approx(-1.0) and budgeted.proxy_val_acc == score.proxy_val_acc


def test_the_supernet_objective_is_the_epochs_search_val_accuracy(digits):
    run = SearchRun(TINY_SEARCH, digits)
    record = run.advance()
    score = TrialScore()
    assert not score.update(run, record, params=10, macs=1000, objective="supernet", proxy_epochs=1, max_macs=None,
                            data=digits)
    assert score.objective == record.val_acc and math.isnan(score.proxy_val_acc)


def test_the_params_objective_is_the_genotypes_size_every_epoch_within_the_budget(digits):
    run = SearchRun(TINY_SEARCH, digits)
    record = run.advance()
    score = TrialScore()
    assert not score.update(run, record, params=954, macs=1000, objective="params", proxy_epochs=1, max_macs=None,
                            data=digits)
    assert score.objective == 954 and math.isnan(score.proxy_val_acc)
    score.update(run, record, params=954, macs=1500, objective="params", proxy_epochs=1, max_macs=1000, data=digits)
    assert score.objective == pytest.approx(-0.5)


def test_pareto_front_keeps_the_trials_no_other_beats_on_both_objective_and_macs():
    import pandas as pd

    from dasvit.platform.pareto import pareto_mask

    table = pd.DataFrame({"objective": [0.90, 0.95, 0.85, 0.95, None, -0.5],
                          "macs": [100, 300, 200, 400, 50, 10]})
    assert pareto_mask(table).tolist() == [True, True, False, False, False, True]
