"""Extension points: a candidate op, a data set and a trial objective registered by a module outside the package
(``tests/extension_plugin.py``) are ones every command, config, search and sweep accepts by name, without editing
``dasvit/``."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest
import torch
from sweep_runs import TINY, run_sweep

from dasvit.cli import main
from dasvit.config import ConfigError, DataConfig
from dasvit.data import load_data
from dasvit.genotype import InputSpec
from dasvit.ops import TokenContext, build_op
from dasvit.platform.config import SweepConfig
from dasvit.supernet import Supernet
from dasvit.vocabulary import (
    DATASET_REGISTRY,
    OBJECTIVE_REGISTRY,
    OP_FAMILIES,
    PLUGINS_ENV,
    DatasetSpec,
    OpError,
    SearchSpace,
    dataset_names,
    parse_op,
    register_dataset,
)

TESTS = Path(__file__).parent


@pytest.fixture
def plugin():
    import extension_plugin

    yield extension_plugin
    DATASET_REGISTRY.pop("stripes")  # as if the plugin had not been imported, for the tests after this one
    OBJECTIVE_REGISTRY.pop("fewest_macs")
    OP_FAMILIES.pop("scale")
    del __import__("sys").modules["extension_plugin"]


def test_a_registered_data_set_loads_validates_and_searches(plugin, tmp_path):
    assert "stripes" in dataset_names()
    data = load_data(DataConfig("stripes"))
    assert (len(data.trainval), data.class_names) == (160, ("horizontal", "vertical"))
    assert DataConfig("stripes").resolved_image_size == 8
    out = tmp_path / "search"
    assert main(["search", "--dataset", "stripes", "--stages", "1:1", "--embed-dim", "8", "--ops",
                 "none,skip,conv_k3", "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "genotype.json").read_text())["input"]["num_classes"] == 2
    with pytest.raises(ValueError, match="already registered with other properties"):
        register_dataset(DatasetSpec("stripes", 16, 4, "extension_plugin:load_stripes", "another"))


def test_a_registered_op_builds_searches_and_falls_back_to_eager_under_fused(plugin, tmp_path):
    """The plugin's op has no fused form: under ``--fused`` it runs as it is beside the fused ops, and the mixed
    op's value matches the eager path's."""
    assert parse_op("scale").properties.about.startswith("x + g") and not parse_op("scale").properties.fused
    tokens = torch.randn(2, 5, 8)
    assert build_op("scale", 8)(tokens, TokenContext((2, 2))).shape == tokens.shape
    space = SearchSpace(("none", "skip", "scale", "mlp_r2", "conv_k3"))
    models = []
    for fused in (False, True):
        torch.manual_seed(0)
        models.append(Supernet(space, 2, 8, 2, InputSpec(8, 1, 2), keep_ratio=0.5, fused=fused))
    images = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(models[1](images), models[0](images), rtol=1e-5, atol=1e-5)
    out = tmp_path / "search"
    assert main(["search", "--dataset", "stripes", "--stages", "1:1", "--embed-dim", "8", "--fused", "--ops",
                 "none,skip,scale,conv_k3", "--out", str(out), "--quiet"]) == 0


def test_a_registered_objective_is_one_a_sweep_config_accepts(plugin):
    config = SweepConfig.load(TESTS.parent / "experiments" / "configs" / "tiny.yaml")
    assert SweepConfig.from_dict({**config.to_dict(), "objective": "fewest_macs"}).objective == "fewest_macs"


def test_unregistered_names_are_refused_naming_the_registered_ones():
    with pytest.raises(OpError, match="unknown op 'scale': expected none, skip, attn_h<int>, mlp_r<int>, conv_k<int>"):
        parse_op("scale")
    with pytest.raises(ConfigError, match="unknown data set 'stripes': choose from digits, mnist5k, fashion-mnist"):
        DataConfig("stripes").validate(2)
    config = SweepConfig.load(TESTS.parent / "experiments" / "configs" / "tiny.yaml").to_dict()
    with pytest.raises(ConfigError, match="objective 'fewest_macs' is not one of params, proxy, supernet"):
        SweepConfig.from_dict({**config, "objective": "fewest_macs"})


@pytest.mark.slow
def test_a_sweep_runs_end_to_end_on_a_plugins_data_set_and_objective(tmp_path):
    """The plugin reaches the sweep's driver, its Ray Train workers and its retraining task through
    ``$DASVIT_PLUGINS``: one trial searches the plugin's op on its data set, is scored by its objective, and its
    genotype is retrained."""
    config = {**TINY, "num_trials": 1, "objective": "fewest_macs", "retrain": {"top_k": 1, "epochs": 1},
              "search": {**TINY["search"], "data": {"dataset": "stripes"}, "ops": ["none", "skip", "scale", "conv_k3"]}}
    env = {PLUGINS_ENV: "extension_plugin",
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    run_sweep(tmp_path, "plugin", config, env)
    (table,) = [pd.read_csv(path) for path in (tmp_path / "ray_results").glob("*-results.csv")]
    (trial,) = table.itertuples()
    assert trial.objective == -trial.macs and trial.status == "finished" and not math.isnan(trial.test_acc)
