"""The platform end to end: a real Ray Tune + Optuna sweep of Ray Train search trials, tracked in a temporary
MLflow store, retraining its best genotype; plus alpha sync across Ray Train workers and config checks."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import ray
import torch
import yaml
from mlflow.exceptions import MlflowException
from PIL import Image
from sweep_runs import RECORDED_SWEEP

import dasvit
from dasvit.cli import main as cli_main
from dasvit.config import ConfigError, DataConfig, RetrainConfig
from dasvit.data import ImageData, load_data
from dasvit.genotype import genotype_from_dict
from dasvit.metrics import count_params
from dasvit.model import build_model
from dasvit.platform import model_store, sweep_run, tracking
from dasvit.platform.config import SweepConfig
from dasvit.platform.ray_session import RAY_ENV, release_leftover_placement_groups
from dasvit.platform.retrain_jobs import main as retrain_main
from dasvit.platform.retrain_jobs import top_search_runs
from dasvit.platform.sweep import main
from dasvit.retrain import retrain

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "experiments" / "configs" / "tiny.yaml")


@pytest.fixture(scope="module")
def ray_session():
    os.environ.update(RAY_ENV)
    # Workers must import this module for the train loop below; pytest put tests/ on the driver's path only.
    runtime_env = {"env_vars": {**RAY_ENV, "PYTHONPATH": str(Path(__file__).parent)}}
    ray.init(address="local", num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=False,
             runtime_env=runtime_env)
    yield
    ray.shutdown()


MARKED_CLASSES = 11  # digits has 10: the driver's copy of the data set says 11, so results show whose copy was used


def _load_marked(config: DataConfig) -> ImageData:
    return dataclasses.replace(load_data(config), num_classes=MARKED_CLASSES)


@pytest.fixture(scope="module")
def sweep(ray_session, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sweep")
    config = workdir / "tiny-multi.yaml"  # multi-objective: Optuna searches objective against MACs
    config.write_text(yaml.safe_dump({**yaml.safe_load(Path(TINY).read_text()), "cost": "macs"}))
    with pytest.MonkeyPatch.context() as patch:  # in this (the driver's) process only: workers never see it
        patch.setattr(sweep_run, "load_data", _load_marked)
        assert main(["--config", str(config), "--workdir", str(workdir), "--name", "tiny", "--experiment", "tiny"]) == 0
    client = tracking.client_for(tracking.default_tracking_uri(workdir))
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    return workdir, client, runs


def _kind(runs, kind):
    return [r for r in runs if r.data.tags.get(tracking.KIND_TAG) == kind]


@pytest.mark.slow
def test_sweep_logs_parent_and_one_child_per_trial(sweep):
    _, client, runs = sweep
    (parent,) = _kind(runs, "sweep")
    searches = _kind(runs, "search")
    assert len(searches) == 2
    assert all(r.data.tags[tracking.PARENT_TAG] == parent.info.run_id for r in searches)
    assert {r.info.status for r in runs} <= {"FINISHED", "KILLED"}  # nothing left RUNNING
    assert all(r.data.tags["status"] == "early_stopped" for r in searches if r.info.status == "KILLED")
    for run in searches:
        assert {"keep_ratio", "fairness_lambda", "data.dataset", "stages"} <= set(run.data.params)
        assert 0.0 <= float(run.data.params["keep_ratio"]) <= 1.0 and float(run.data.params["fairness_lambda"]) >= 0
        epochs = 2 if run.info.status == "FINISHED" else 1  # ASHA may stop a trial at its rung after epoch 1
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert len(history) == epochs  # one point per epoch
        # the trial's 2 Ray Train workers held bit-identical alpha after every epoch (checked by an all-gather)
        assert [m.value for m in client.get_metric_history(run.info.run_id, "alpha_in_sync")] == [1.0] * epochs
        if run.info.status == "KILLED":  # ends when it stopped working, not when the whole Tune phase did
            assert run.info.end_time == max(m.timestamp for m in history)
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)} | {
            a.path for a in client.list_artifacts(run.info.run_id, "plots")}
        assert {"genotype.json", "alpha_history.json", "plots/alpha_history.png", "plots/genotype.png"} <= artifacts
        assert tracking.load_genotype_artifact(client, run.info.run_id)["version"] == 2
        assert run.data.tags["dataset"] == "digits" and run.data.tags["stage"] == str(epochs - 1)


@pytest.mark.slow
def test_sweep_retrains_the_best_genotype_and_links_it(sweep):
    """Top 1: the search with the best objective (the proxy score of the genotype it hands back, finished or
    stopped early), retrained from the genotype that was scored."""
    _, client, runs = sweep
    searches = {r.info.run_id: r for r in _kind(runs, "search")}
    (retrained,) = _kind(runs, "retrain")
    source = searches[retrained.data.tags["search_run_id"]]
    assert source.data.metrics["objective"] == max(r.data.metrics["objective"] for r in searches.values())
    scored = tracking.load_genotype_artifact(client, source.info.run_id, tracking.SCORED_GENOTYPE)
    assert client.download_artifacts(retrained.info.run_id, "genotype.json")
    assert tracking.load_genotype_artifact(client, retrained.info.run_id)["blocks"] == scored["blocks"]
    assert {"test_acc", "params", "macs"} <= set(retrained.data.metrics)


@pytest.mark.slow
def test_the_sweeps_retraining_gives_the_number_an_in_process_retraining_gives(sweep):
    """One retraining, one number: the sweep's retraining task (a Ray task) and an in-process retraining of the same
    genotype, seed, recipe and data, as ``dasvit retrain`` and the experiment scripts run it in a process of more
    threads, reach the same accuracy (the recipe fixes torch's threads: 1 and 2 threads round differently)."""
    _, client, runs = sweep
    (retrained,) = _kind(runs, "retrain")
    params = retrained.data.params
    genotype = genotype_from_dict(tracking.load_genotype_artifact(client, retrained.info.run_id))
    config = RetrainConfig(data=DataConfig(params["retrain.data.dataset"]), epochs=int(params["retrain.epochs"]),
                           seed=int(params["retrain.seed"]))
    assert torch.get_num_threads() > 1 and int(params["retrain.threads"]) == config.threads == 1
    assert retrain(genotype, config, _load_marked(config.data)).test_acc == retrained.data.metrics["test_acc"]
    assert torch.get_num_threads() > 1  # restored after the retraining


@pytest.mark.slow
def test_sweep_registers_its_champion_for_load_predict_and_pyfunc(sweep, digits, tmp_path, capsys, monkeypatch):
    """The retrained best genotype is a registered model version, alias ``champion``, tagged with its sweep; the
    same real digit images get the same classes from ``dasvit.load``, ``dasvit predict`` and MLflow's pyfunc."""
    workdir, client, runs = sweep
    (sweep_parent,) = _kind(runs, "sweep")
    (retrained,) = _kind(runs, "retrain")
    champion = client.get_model_version_by_alias("tiny", model_store.CHAMPION)
    assert champion.run_id == retrained.info.run_id and champion.tags[model_store.SWEEP_TAG] == sweep_parent.info.run_id
    assert float(champion.tags["test_acc"]) == retrained.data.metrics["test_acc"]
    uri = tracking.default_tracking_uri(workdir)
    images = []
    for i in range(6):
        path = tmp_path / f"{i}.png"
        Image.fromarray((digits.test[i][0][0].numpy() * 255).round().astype(np.uint8)).save(path)
        images.append(path)
    model = dasvit.load("models:/tiny@champion", tracking_uri=uri)
    by_load = [top[0][0] for top in model.classify(images)]
    assert cli_main(["predict", "models:/tiny@champion", *map(str, images), "--json", "--tracking-uri", uri]) == 0
    by_cli = [p["top"][0]["class"] for p in json.loads(capsys.readouterr().out)["predictions"]]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # for pyfunc's models:/ lookup; not mlflow.set_tracking_uri,
    # which would also leave it set for the sweeps that later tests start in subprocesses
    pixels = np.stack([np.asarray(Image.open(p), dtype=np.float32)[None] / 255 for p in images])
    by_pyfunc = list(mlflow.pyfunc.load_model("models:/tiny@champion").predict(pixels)["label"])
    assert by_load == by_cli == by_pyfunc


@pytest.mark.slow
def test_registering_again_for_the_same_sweep_adds_no_version(sweep):
    """A resumed sweep registers nothing new: the version its first run registered is handed back."""
    _, client, runs = sweep
    (sweep_parent,) = _kind(runs, "sweep")
    (retrained,) = _kind(runs, "retrain")
    before = client.search_model_versions("name = 'tiny'")
    version = model_store.register_champion(client, "tiny", retrained.info.run_id,
                                            {model_store.SWEEP_TAG: sweep_parent.info.run_id})
    assert version == int(before[0].version) and len(client.search_model_versions("name = 'tiny'")) == len(before) == 1


def test_a_store_without_a_registry_is_reported_and_the_sweep_goes_on(capsys):
    class NoRegistry:
        def search_model_versions(self, *args):
            raise MlflowException("Model Registry is not supported by this store")

    table = pd.DataFrame([{"retrain_run_id": "r1", "genotype_id": "g", "trial_id": "t", "objective": 0.9,
                           "test_acc": 0.8, "macs": 1}])
    sweep_run.register_best(NoRegistry(), "exp", table, "parent")
    assert "the champion is not registered" in capsys.readouterr().out


@pytest.mark.slow
def test_trial_objective_is_the_proxy_score_of_the_scored_genotype(sweep):
    """Each trial's objective, logged beside the supernet's val accuracy, is what ``proxy_score`` gives its scored
    genotype when recomputed here: the proxy retraining on the search split, never the test split."""
    from dasvit.objective import proxy_score

    _, client, runs = sweep
    config = SweepConfig.load(TINY)
    data = _load_marked(config.data)
    torch.set_num_threads(1)  # as the 1-CPU workers
    for run in _kind(runs, "search"):
        metrics = run.data.metrics
        assert {"objective", "proxy_val_acc", "val_acc"} <= set(metrics)
        assert metrics["objective"] == metrics["proxy_val_acc"]  # no MACs budget in tiny.yaml
        genotype = genotype_from_dict(tracking.load_genotype_artifact(client, run.info.run_id,
                                                                      tracking.SCORED_GENOTYPE))
        again = proxy_score(genotype, data, config.data, split_seed=config.seed, epochs=config.proxy_epochs,
                            seed=config.seed)
        assert again.val_acc == pytest.approx(metrics["proxy_val_acc"], abs=2e-3)


@pytest.mark.slow
def test_trials_and_retraining_use_the_data_set_the_driver_loaded(sweep):
    """Loaded once by the sweep and handed over through the object store: every search worker and the retraining
    task used the driver's copy (marked with an 11th class), none loaded its own."""
    _, client, runs = sweep
    for run in _kind(runs, "search"):
        assert tracking.load_genotype_artifact(client, run.info.run_id)["input"]["num_classes"] == MARKED_CLASSES
    (retrained,) = _kind(runs, "retrain")
    genotype = genotype_from_dict(tracking.load_genotype_artifact(client, retrained.data.tags["search_run_id"]))
    model = build_model(genotype, genotype.input.image_size, genotype.input.in_chans, MARKED_CLASSES)
    assert retrained.data.metrics["params"] == count_params(model)


@pytest.mark.slow
def test_sweep_writes_the_results_table(sweep):
    workdir, client, runs = sweep
    table = pd.read_csv(workdir / "ray_results" / "tiny-results.csv")
    assert len(table) == 2
    assert {"fairness_lambda", "keep_ratio", "objective", "proxy_val_acc", "val_acc", "params", "macs", "genotype_id",
            "status", "test_acc"} <= set(table)
    assert table["objective"].is_monotonic_decreasing  # best first
    assert table.loc[table["pareto"], "objective"].max() == table["objective"].max()  # the best is on the front
    (parent,) = _kind(runs, "sweep")
    assert "plots/pareto.png" in {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert table["test_acc"].notna().sum() == 1
    assert set(table["search_run_id"]) == {r.info.run_id for r in _kind(runs, "search")}
    # the recorded table the comparison scripts' smoke tests start from has no column a sweep no longer writes
    # (beside the tuned knobs': that sweep also tunes embed_dim and depth)
    recorded = pd.read_csv(RECORDED_SWEEP)
    assert set(recorded) - {"embed_dim", "depth"} <= set(table)


@pytest.mark.slow
def test_retrain_entry_point_retrains_an_experiments_best_genotype(sweep, capsys):
    """``experiments/retrain.py``: the best genotype an experiment logged, retrained as a Ray task on the data set the
    entry point loaded before starting Ray; a run of its own, FINISHED, with a test accuracy."""
    workdir, client, runs = sweep
    uri = tracking.default_tracking_uri(workdir)
    assert retrain_main(["--experiment", "tiny", "--top", "1", "--epochs", "1", "--tracking-uri", uri]) == 0
    before = {r.info.run_id for r in runs}
    experiment_id = client.get_experiment_by_name("tiny").experiment_id
    (new,) = [r for r in _kind(client.search_runs([experiment_id]), "retrain") if r.info.run_id not in before]
    assert new.info.status == "FINISHED" and 0 <= new.data.metrics["test_acc"] <= 1
    assert "test_acc" in capsys.readouterr().out
    assert retrain_main(["--experiment", "nosuch", "--tracking-uri", uri]) == 2
    assert "no MLflow experiment 'nosuch'" in capsys.readouterr().err


@pytest.mark.slow
def test_resuming_a_finished_sweep_runs_and_retrains_nothing(sweep):
    """``--resume`` of a sweep that has finished (after any number of interruptions: ``test_interrupts.py``) starts
    no trial and no retraining: every run and every metric point stays as it was."""
    workdir, client, _ = sweep
    experiment_id = client.get_experiment_by_name("tiny").experiment_id

    def state() -> dict[str, int]:
        return {r.info.run_id: len(client.get_metric_history(r.info.run_id, "val_acc"))
                for r in client.search_runs([experiment_id])}

    before = state()
    args = ["--config", str(workdir / "tiny-multi.yaml"), "--workdir", str(workdir), "--experiment", "tiny"]
    assert main([*args, "--resume", "tiny"]) == 0
    assert state() == before


def test_bad_sweep_config_exits_2_before_starting(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"num_trails": 3}))
    assert main(["--config", str(config), "--workdir", str(tmp_path), "--address", "local"]) == 2
    assert "unknown sweep config key(s): 'num_trails'" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "ray_results").exists()


@pytest.mark.parametrize(
    "change,needle",
    [({"tune": {"keep_ratio": {"low": 0.0, "high": 1.0}}}, "keep ratio 0.0 is outside"),
     ({"tune": {"nodes": {"low": 1, "high": 2}}}, "'nodes' is not tunable"),
     ({"tune": {"embed_dim": {"low": 32, "high": 90, "step": 16}}}, "high - low a multiple of step"),
     ({"tune": {"embed_dim": {"low": 32, "high": 36}}}, "tune: embed_dim = 33 of"),  # attn_h2 needs an even width
     ({"tune": {"depth": {"low": 0, "high": 3}}}, "'depth' low must be an integer >= 1, got 0"),
     ({"tune": {"keep_ratio": {"low": 0.3, "high": 0.5, "step": 0.1}}}, "'keep_ratio' needs {low, high}, got"),
     ({"cost": "latency"}, "cost 'latency'"),
     ({"objective": "params", "cost": "params"}, "more and fewer parameters at once"),
     ({"search": {"keep_ratio": 2}}, "keep ratio 2 is outside"),
     ({"asha": {"grace": 1}}, "unknown asha config key(s): 'grace'"),
     ({"asha": {"grace_period": 2, "reduction_factor": 2},
       "search": {"data": {"dataset": "digits"}, "stages": [{"depth": 1, "epochs": 3}, {"depth": 2, "epochs": 3}]}},
      "fall inside a search stage (stages end at epochs [3, 6])")],
)
def test_sweep_config_validation(change, needle):
    base = yaml.safe_load(Path(TINY).read_text())
    with pytest.raises(ConfigError, match=re.escape(needle)):
        SweepConfig.from_dict({**SweepConfig.load().to_dict(), **base, **change})


def test_width_and_depth_ranges_reach_optuna_as_integer_grids():
    """Optuna proposes only valid widths (multiples of the step) and depth sets the final stage's blocks."""
    from ray.tune.search.optuna import OptunaSearch

    tune = {"embed_dim": {"low": 32, "high": 96, "step": 16}, "depth": {"low": 3, "high": 6}}
    config = SweepConfig.from_dict({**SweepConfig.load().to_dict(), "tune": tune})
    space = OptunaSearch.convert_search_space(sweep_run.param_space(config))
    assert {name: (d.low, d.high, d.step) for name, d in dict(space).items()} == {"embed_dim": (32, 96, 16),
                                                                                     "depth": (3, 6, 1)}
    trial = config.trial_search_config({"embed_dim": 48, "depth": 6})
    assert trial.embed_dim == 48 and [s.depth for s in trial.stages] == [2, 3, 6]


def test_startup_trials_are_random_draws_and_tpe_models_the_rest():
    """The sweep's sampler proposes its first ``startup_trials`` points as seeded random search does, and its own
    (TPE's) after them: with the default 10, a 4-trial sweep is a random search over the space."""
    import optuna

    def proposals(sampler: optuna.samplers.BaseSampler, n: int) -> list[float]:
        study = optuna.create_study(sampler=sampler)
        study.optimize(lambda trial: -(trial.suggest_float("keep_ratio", 0.25, 0.6) - 0.3) ** 2, n_trials=n)
        return [t.params["keep_ratio"] for t in study.trials]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = SweepConfig.load().to_dict()
    random = proposals(optuna.samplers.RandomSampler(seed=base["seed"]), 4)
    assert proposals(sweep_run.make_sampler(SweepConfig.from_dict(base)), 4) == random
    modelled = proposals(sweep_run.make_sampler(SweepConfig.from_dict({**base, "startup_trials": 2})), 4)
    assert modelled[:2] == random[:2] and modelled[2:] != random[2:]


@pytest.mark.parametrize("uri", ["sqlite:////nonexistent-dir/for/mlflow.db", "http://127.0.0.1:9"])
def test_unreachable_tracking_store_fails_fast(uri, tmp_path, capsys):
    assert main(["--config", TINY, "--workdir", str(tmp_path), "--tracking-uri", uri, "--address", "local"]) == 2
    assert f"MLflow tracking store {uri!r} is unreachable" in capsys.readouterr().err
    assert not Path("/nonexistent-dir").exists() and not (tmp_path / "ray_results").exists()


def test_cluster_configs_pass_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    for name in ("config.yaml", "local.yaml"):
        config = yaml.safe_load((REPO / "cluster" / name).read_text())
        assert any("pip install" in cmd and "dasvit" in cmd for cmd in config["setup_commands"])
        validate_config(prepare_config(config))
    broken = yaml.safe_load((REPO / "cluster" / "config.yaml").read_text())
    broken["available_node_types"]["gpu_worker"]["min_worker"] = 0  # a typo
    with pytest.raises(Exception, match="min_worker"):
        validate_config(prepare_config(broken))


BAD_SWEEP_INPUT = [
    ({"search": {"keep_ratio": 0}}, [], "keep ratio 0 is outside (0, 1]"),
    ({"tune": {"keep_ratio": {"low": 0.5, "high": 1.5}}}, [], "keep ratio 1.5 is outside (0, 1]"),
    ({"search": {"fairness_lambda": -0.1}}, [], "fairness lambda -0.1 must be >= 0"),
    ({"tune": {"fairness_lambda": {"low": -1, "high": 1}}}, [], "fairness lambda -1 must be >= 0"),
    ({"search": {"ops": ["none", "skip", "attn_q2"]}}, [], "unknown op 'attn_q2'"),
    ({"search": {"ops": []}}, [], "the op set is empty"),
    ({"search": {"ops": ["none"]}}, [], "no op other than 'none'"),
    ({}, ["--epochs", "0"], "epochs must be an integer >= 1, got 0"),
    ({"search": {"stages": [{"depth": 0, "epochs": 1}]}}, [], "depth must be an integer >= 1, got 0"),
    ({"search": {"data": {"dataset": "digits", "image_size": 9}}}, [], "image size 9 is not divisible by patch size"),
    ({"search": {"data": {"dataset": "cifar10", "data_root": "/nonexistent/cifar"}}}, [],
     "data root '/nonexistent/cifar' does not exist"),
    ({"search": {"data": {"dataset": "cifar10", "data_root": "{tmp}"}}}, [], "cifar10 not found or corrupt under"),
    ({"search": {"data": {"dataset": "fashion-mnist", "data_root": "{tmp}"}}}, [],
     "the Fashion-MNIST files (train-images-idx3-ubyte.gz"),
    ({"search": {"data": {"dataset": "fashion-mnist", "train_images": 70000}}}, [], "train_images 70000 is more than"),
    ({"num_trails": 3}, [], "unknown sweep config key(s): 'num_trails'"),
    ({"search": {"keep_raito": 0.3}}, [], "unknown search config key(s): 'keep_raito'"),
    ({}, ["--num-trials", "0"], "num_trials must be an integer >= 1, got 0"),
    ({"startup_trials": 0}, [], "startup_trials must be an integer >= 1, got 0"),
    ({}, ["--objective", "val_loss"], "objective 'val_loss' is not one of params, proxy, supernet"),
    ({"proxy_epochs": 0}, [], "proxy_epochs must be an integer >= 1, got 0"),
    ({}, ["--max-macs", "0"], "max_macs 0 must be a positive integer"),
    ({"max_macs": -3}, [], "max_macs -3 must be a positive integer"),
]


@pytest.mark.parametrize("change,flags,needle", BAD_SWEEP_INPUT, ids=[c[2][:40] for c in BAD_SWEEP_INPUT])
def test_bad_sweep_input_exits_2_and_writes_nothing(change, flags, needle, tmp_path, capsys):
    base = yaml.safe_load(Path(TINY).read_text())
    merged = {**base, **change, "search": {**base["search"], **change.get("search", {})}}
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(merged).replace("'{tmp}'", str(tmp_path)))
    workdir = tmp_path / "work"
    assert main(["--config", str(config), "--workdir", str(workdir), "--address", "local", *flags]) == 2
    assert needle in capsys.readouterr().err
    assert not workdir.exists()  # no mlflow.db, no ray_results, no results table


def test_supernet_ranking_prefers_finished_searches_over_early_stopped_ones(tmp_path):
    """Ranked by the supernet's val accuracy, an early-stopped trial is not comparable with a finished one (its
    supernet sits at a shallower stage): it is retrained only when fewer than k searches finished."""
    uri = tracking.default_tracking_uri(tmp_path)
    client = tracking.client_for(uri)
    experiment_id = tracking.ensure_experiment(client, "ranking", tmp_path / "artifacts")
    parent = tracking.start_run(client, experiment_id, "sweep", "sweep")
    runs = {}
    for name, val_acc, status in (("finished-a", 0.30, "FINISHED"), ("stopped", 0.50, "KILLED"),
                                  ("finished-b", 0.20, "FINISHED"), ("failed", 0.90, "FAILED")):
        runs[name] = tracking.start_run(client, experiment_id, name, "search", tags={"trial_id": name},
                                        parent_run_id=parent)
        tracking.log_metrics(client, runs[name], {"val_acc": val_acc}, step=0)
        tracking.end_run(client, runs[name], status)
    assert list(top_search_runs(uri, experiment_id, 2, parent)["trial_id"]) == ["finished-a", "finished-b"]
    assert list(top_search_runs(uri, experiment_id, 5, parent)["trial_id"]) == ["finished-a", "finished-b", "stopped"]


@pytest.mark.slow
def test_leftover_placement_groups_of_this_job_are_released(ray_session):
    """A placement group that outlived its trial (an ASHA-stopped trial's worker group, seen holding the CPUs that
    the retraining tasks then waited for) is removed once no trial runs; the count says how many."""
    from ray.util.placement_group import placement_group

    group = placement_group([{"CPU": 1}])
    ray.get(group.ready(), timeout=60)
    assert release_leftover_placement_groups() >= 1
    states = {pg_id: info["state"] for pg_id, info in ray.util.placement_group_table().items()}
    assert states[group.id.hex()] == "REMOVED"
    assert release_leftover_placement_groups() == 0


def test_a_stopped_trial_that_logged_its_last_epoch_ends_finished(tmp_path):
    """ASHA's stop reaches a trial asynchronously: one that still logged its last epoch is a complete search
    (FINISHED); one stopped midway is KILLED with status=early_stopped, ending at its last report."""
    client = tracking.client_for(tracking.default_tracking_uri(tmp_path))
    experiment_id = tracking.ensure_experiment(client, "race", tmp_path / "artifacts")
    parent = tracking.start_run(client, experiment_id, "sweep", "sweep")
    runs = {}
    for name, epochs in (("raced", 2), ("stopped", 1)):
        runs[name] = tracking.start_run(client, experiment_id, name, "search", tags={"trial_id": name},
                                        parent_run_id=parent)
        for epoch in range(epochs):
            tracking.log_metrics(client, runs[name], {"val_acc": 0.5}, step=epoch)
    tracking.close_dangling_runs(client, experiment_id, parent, {}, total_epochs=2)
    raced, stopped = (client.get_run(runs[name]) for name in ("raced", "stopped"))
    assert raced.info.status == "FINISHED" and raced.data.tags["status"] == "finished"
    assert stopped.info.status == "KILLED" and stopped.data.tags["status"] == "early_stopped"
    assert stopped.info.end_time == tracking.last_report_ms(client, runs["stopped"])


def test_proxy_ranking_compares_stopped_and_finished_trials_alike(tmp_path):
    """Proxy-scored runs rank by their objective alone: each is a short retraining of the genotype the run hands
    back, finished or stopped early. Runs over a MACs budget (negative objective) come last."""
    uri = tracking.default_tracking_uri(tmp_path)
    client = tracking.client_for(uri)
    experiment_id = tracking.ensure_experiment(client, "proxy-ranking", tmp_path / "artifacts")
    parent = tracking.start_run(client, experiment_id, "sweep", "sweep")
    for name, proxy, objective, status in (("finished", 0.80, 0.80, "FINISHED"), ("stopped", 0.85, 0.85, "KILLED"),
                                           ("over-budget", 0.95, -0.2, "FINISHED")):
        run_id = tracking.start_run(client, experiment_id, name, "search",
                                    tags={"trial_id": name, tracking.OBJECTIVE_TAG: "proxy"}, parent_run_id=parent)
        tracking.log_metrics(client, run_id, {"val_acc": 0.9, "proxy_val_acc": proxy, "objective": objective}, step=0)
        tracking.end_run(client, run_id, status)
    assert list(top_search_runs(uri, experiment_id, 3, parent)["trial_id"]) == ["stopped", "finished", "over-budget"]
