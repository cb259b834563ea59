"""Every benchmark and experiment script runs end to end at smoke size (CI does not time anything): each writes
its results files and logs a finished MLflow parent run with one child run per search or retraining."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import yaml
from sweep_runs import RECORDED_SWEEP, TINY

from dasvit.config import DataConfig, RetrainConfig
from dasvit.genotype import BlockGenotype, Edge, Genotype, InputSpec
from dasvit.metrics import count_macs
from dasvit.model import build_model
from dasvit.platform import tracking

REPO = Path(__file__).resolve().parents[1]


def run_script(path: str, *args: str, cwd: Path) -> str:
    """Run a script from pytest's temporary folder ``cwd``, so that nothing can land in the repository tree."""
    done = subprocess.run([sys.executable, str(REPO / path), *args], capture_output=True, text=True, timeout=600,
                          cwd=cwd)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


def load_script(path: str, module_name: str):
    """A script of the repository as a module, without running its ``__main__`` part."""
    spec = importlib.util.spec_from_file_location(module_name, REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXPERIMENTS = {  # script -> (extra args, rows its table must have with one seed)
    "searched_vs_hand": ([], 4),
    "robustness": (["--ratios", "0.5", "--lambdas", "0,0.5"], 2),
    "transfer": ([], 2),
    "search_cost": ([], 2),
    "random_search": ([], 2),
    "fairness": (["--lambdas", "0,2"], 2),
    "token_ratio": (["--ratios", "0.5,1"], 2),
    "search_retrain_gap": (["--ratios", "0.5,1"], 2),
    "objective": (["--ratios", "0.5,1", "--lambdas", "0.5"], 2),
    "sweep_vs_baselines": ([], 4),  # both start from the recorded sweep below, found in their cache
    "cnn_gap": ([], 1),
    "fashion_sweep": ([], 3),  # the recorded sweep too, with the CNN and the hand ViT beside it
}
# The recorded smoke sweep's wall seconds: with its table, placed where the comparison scripts cache their sweeps,
# so that the suite runs no third whole sweep for them.
RECORDED_SWEEP_SECONDS = 56.9

# Runs scripts one after another in one interpreter (argv[1], JSON: key -> [script path, *argv]), each as
# ``python <script>`` would (run as __main__, its own folder first on the path), and writes each one's outcome to
# argv[2]: "ok", or its traceback. One interpreter start and one round of imports for all of them.
SMOKE_RUNNER = """
import json, os, runpy, sys, traceback
scripts, out, outcomes = json.loads(sys.argv[1]), sys.argv[2], {}
for key, argv in scripts.items():
    sys.argv = argv
    sys.path.insert(0, os.path.dirname(argv[0]))
    try:
        runpy.run_path(argv[0], run_name="__main__")
        outcomes[key] = "ok"
    except SystemExit as stop:  # as the process would have ended: only status 0 is a success
        outcomes[key] = "ok" if stop.code in (0, None) else f"exit status {stop.code}"
    except BaseException:
        outcomes[key] = traceback.format_exc()
with open(out, "w") as f:
    json.dump(outcomes, f)
"""


def run_in_one_interpreter(scripts: dict[str, list[str]], folder: Path) -> dict[str, str]:
    """Run ``scripts`` (key -> [path relative to the repository, *argv]) with ``SMOKE_RUNNER`` from ``folder``;
    return each one's outcome."""
    outcomes = folder / "outcomes.json"
    argv = {key: [str(REPO / path), *args] for key, (path, *args) in scripts.items()}
    done = subprocess.run([sys.executable, "-c", SMOKE_RUNNER, json.dumps(argv), str(outcomes)],
                          capture_output=True, text=True, timeout=1200, cwd=folder)
    assert done.returncode == 0 and outcomes.is_file(), done.stdout[-2000:] + done.stderr[-4000:]
    return json.loads(outcomes.read_text())


@pytest.fixture(scope="module")
def experiment_smokes(request, tmp_path_factory):
    """The selected experiment scripts at smoke size, run once in one process from pytest's temporary folder: one
    results folder (and so one search/retrain cache) and one MLflow store for all of them."""
    selected = list(dict.fromkeys(item.callspec.params["name"] for item in request.session.items
                                  if "experiment_smokes" in getattr(item, "fixturenames", ())))
    folder = tmp_path_factory.mktemp("experiments")
    cached = folder / "cache" / "sweeps" / "seed0-smoke"  # as sweep_vs_baselines.run_sweep caches a smoke sweep
    (cached / "ray_results").mkdir(parents=True)
    shutil.copy(RECORDED_SWEEP, cached / "ray_results" / "sweep-results.csv")
    (cached / "wall_seconds.txt").write_text(f"{RECORDED_SWEEP_SECONDS}\n")
    uri = tracking.default_tracking_uri(folder)
    scripts = {name: [f"experiments/{name}.py", "--smoke", "--seeds", "0", "--out", str(folder), "--tracking-uri", uri,
                      *EXPERIMENTS[name][0]] for name in selected}
    return folder, uri, run_in_one_interpreter(scripts, folder)


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_script_smoke(name, experiment_smokes):
    folder, uri, outcomes = experiment_smokes
    assert outcomes[name] == "ok", outcomes[name]
    for suffix in (".csv", ".md", ".json", ".png"):
        assert (folder / f"{name}{suffix}").stat().st_size > 0
    table = pd.read_csv(folder / f"{name}.csv")
    assert len(table) == EXPERIMENTS[name][1]
    client = tracking.client_for(uri)
    runs = client.search_runs([client.get_experiment_by_name(f"dasvit-{name}").experiment_id])
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert sum(r.data.tags.get(tracking.KIND_TAG) == "experiment" for r in runs) == 1 and len(runs) > 1


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sweep_vs_baselines", "cnn_gap"])
def test_the_comparisons_credit_the_sweeps_own_pick_and_random_draws_within_its_budget(name, experiment_smokes):
    """Both comparisons start from the same smoke sweep (tuned width and depth within the smoke CNN's MACs): random
    search drew within the budget, and the sweep is credited with one of its own retrained trials."""
    folder, _, outcomes = experiment_smokes
    assert outcomes[name] == "ok", outcomes[name]
    budget = yaml.safe_load((REPO / "experiments" / "configs" / "tiny_budget.yaml").read_text())["max_macs"]
    trials = pd.read_csv(folder / f"{name}_trials.csv")
    assert {"embed_dim", "depth", "objective", "test_acc"} <= set(trials.columns)
    table = pd.read_csv(folder / f"{name}.csv")
    if name == "cnn_gap":
        assert json.loads((folder / "cnn_gap.json").read_text())["max_macs"] == budget
        assert (table["random_macs"] <= budget).all()
        assert set(table["sweep_test_acc"]) <= set(trials["test_acc"].dropna())
    else:
        assert list(table["method"]) == ["sweep", "search", "random", "cnn"]
        assert table.loc[table["method"] == "random", "macs"].le(budget).all()
        assert set(table.loc[table["method"] == "sweep", "test_acc"]) <= set(trials["test_acc"].dropna())


# Smokes of scripts that start no Ray, run in one interpreter (key -> script and arguments); the two that set torch
# to 1 thread run last.
LIGHT_SMOKES = {
    "vit_b_memory": ["benchmarks/vit_b_memory.py", "--smoke"],
    "search_cost_cifar": ["benchmarks/search_cost_cifar.py", "--smoke"],
    "fused_divergence": ["experiments/fused_divergence.py", "--dataset", "digits", "--epochs", "1", "--embed-dim", "16",
                         "--seed", "0"],
    "token_selection": ["benchmarks/token_selection.py", "--dataset", "digits", "--embed-dim", "16", "--steps", "1",
                        "--warmup", "0", "--ratios", "0.25,1.0", "--paths", "eager,fused+trace",
                        "--ops", "none,skip,attn_h2,mlp_r2,conv_k3", "--threads", "1"],
}


@pytest.fixture(scope="module")
def light_smokes(request, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The selected ``LIGHT_SMOKES`` (those whose test, ``test_<key>_...``, is collected), run once, all writing to
    one folder; their outcomes by key."""
    tests = [item.originalname for item in request.session.items if "light_smokes" in getattr(item, "fixturenames", ())]
    selected = [key for key in LIGHT_SMOKES if any(name.startswith(f"test_{key}_") for name in tests)]
    folder = tmp_path_factory.mktemp("light")
    return folder, run_in_one_interpreter({key: [*LIGHT_SMOKES[key], "--out", str(folder)] for key in selected}, folder)


@pytest.mark.slow
def test_token_selection_benchmark_smoke(light_smokes):
    folder, outcomes = light_smokes
    assert outcomes["token_selection"] == "ok", outcomes["token_selection"]
    results = json.loads((folder / "token_selection_cpu.json").read_text())
    rows = results["rows"]
    assert results["meta"]["threads"] == 1 and "1 threads" in results["meta"]["device"]
    assert [(r["path"], r["keep_ratio"]) for r in rows] == [("eager", 0.25), ("fused+trace", 0.25), ("eager", 1.0),
                                                             ("fused+trace", 1.0)]
    assert rows[0]["step_gflop"] < rows[2]["step_gflop"] and rows[0]["peak_mem_mb"] < rows[2]["peak_mem_mb"]
    assert all(r["speedup_vs_eager"] > 0 and r["first_step_s"] > 0 for r in rows)
    # a compiled path's FLOPs are its uncompiled twin's: the fused op folds weights, a few FLOPs more than eager
    assert rows[1]["step_gflop"] > rows[0]["step_gflop"] and rows[3]["step_gflop"] > rows[2]["step_gflop"]
    assert (folder / "token_selection_cpu.png").stat().st_size > 0


@pytest.mark.parametrize("script,args,needle", [
    ("token_selection", ["--threads", "0"], "--threads 0: must be >= 1"),
    ("token_selection", ["--paths", "eager,fusd"], "path 'fusd'"),
    ("token_selection", ["--paths", "eager+cudagraphs"], "path 'eager+cudagraphs'"),
    ("ray_overhead", ["--workers", "0"], "--workers 0: must be between 1 and"),
    ("scaling", ["--workers", "2"], "--workers 2: must include 1 and stay within the"),
    ("scaling", ["--workers", "1,99"], "--workers 1,99: must include 1 and stay within the"),
    ("scaling", ["--workers", "1,two"], "argument --workers: '1,two': 'two' is not an integer"),
    ("exit_after_sigterm", ["--delay", "-1"], "--delay -1.0 / --watch 90.0: need"),
    ("exit_after_sigterm", ["--dumps", "2,soon"], "argument --dumps: '2,soon': 'soon' is not a number"),
])
def test_benchmark_usage_errors_exit_2(script, args, needle, tmp_path, capsys):
    benchmark = load_script(f"benchmarks/{script}.py", f"{script}_benchmark")
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main([*args, "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and needle in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing measured, nothing written


@pytest.mark.parametrize("args,needle", [
    (["--truth-seeds", "0,1"], "--truth-seeds 0,1: distinct seeds, none of them a proxy's init seed 1, 4, 5"),
    (["--truth-seeds", "0,5"], "--truth-seeds 0,5: distinct seeds, none of them a proxy's init seed 1, 4, 5"),
    (["--truth-seeds", "0,0"], "--truth-seeds 0,0: distinct seeds"),
    (["--truth-seeds", "0,two"], "argument --truth-seeds: '0,two': 'two' is not an integer"),
    (["--proxy-epochs", "0,4"], "--proxy-epochs (0,4) and --truth-epochs (50) must be >= 1"),
    (["--proxy-epochs", "4,four/32"], "--proxy-epochs '4,four/32': comma-separated k or k/b (integers)"),
    (["--inherit-epochs", "0,-1"], "argument --inherit-epochs: '0,-1': -1 is not an integer >= 0"),
    (["--inherit-epochs", "0,one"], "argument --inherit-epochs: '0,one': 'one' is not an integer"),
])
def test_objective_study_usage_errors_exit_2(args, needle, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(REPO / "experiments"))  # as the script runs: its sibling modules importable
    study = load_script("experiments/objective.py", "objective_study")
    with pytest.raises(SystemExit) as exit_info:
        study.parse_args(args)
    assert exit_info.value.code == 2 and needle in capsys.readouterr().err


def test_zero_cost_scores_are_fixed_by_the_network_and_batch_alone(monkeypatch, digits):
    """The zero-cost candidates of the objective study seed each draw's init: the caller's random state and an
    earlier call change nothing, another batch changes the score, and the score is the mean of its draws."""
    monkeypatch.syspath_prepend(str(REPO / "experiments"))
    study = load_script("experiments/objective.py", "objective_zero_cost")
    block = BlockGenotype(2, (Edge(0, 1, "attn_h2"), Edge(1, 2, "mlp_r2")))
    genotype = Genotype(embed_dim=16, patch_size=4, input=InputSpec(8, 1, 10), blocks=(block, block))
    images, labels = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(16) % 10
    draws = len(study.ZERO_COST_SEEDS)
    first = study.zero_cost(genotype, [(images, labels)] * draws, digits)
    torch.manual_seed(123)
    again = study.zero_cost(genotype, [(images, labels)] * draws, digits)
    other = study.zero_cost(genotype, [(images.flip(-1), labels)] * draws, digits)
    scores = [k for k in first if not k.endswith("_s")]
    assert {k: first[k] for k in scores} == {k: again[k] for k in scores}
    assert first["snip"] > 0 and first["grad_norm"] > 0 and other["snip"] != first["snip"]
    # the draws differ by their init, and the score is their mean
    assert len({first[f"snip_draw{d}"] for d in range(draws)}) == draws
    assert first["snip"] == pytest.approx(sum(first[f"snip_draw{d}"] for d in range(draws)) / draws)


def test_random_search_draws_sized_networks_within_the_budget(monkeypatch, tmp_path):
    """Random search over a sweep's sized space: each trained draw has one of the widths and depths, and none is
    over the MACs budget (those are discarded untrained)."""
    monkeypatch.syspath_prepend(str(REPO / "experiments"))
    module = load_script("experiments/random_search.py", "random_search_sized")
    common = sys.modules["common"]
    trained = []
    monkeypatch.setattr(module, "retrain", lambda genotype, *_: trained.append(genotype) or SimpleNamespace(test_acc=0.5))
    args = SimpleNamespace(out=tmp_path, tracking_uri=tracking.default_tracking_uri(tmp_path), seeds=[0], smoke=True)
    budget = 60_000
    with common.Experiment("random_sized", args) as exp:
        module.random_search(exp, common.budget(True), 0, 0.5, 1, widths=[8, 16], depths=[1, 2, 3], max_macs=budget)
    assert trained and {g.embed_dim for g in trained} <= {8, 16} and {len(g.blocks) for g in trained} <= {1, 2, 3}
    assert all(count_macs(build_model(g), 8, 1) <= budget for g in trained)


def test_the_sweeps_pick_in_the_comparison_is_by_objective_never_by_test_accuracy(monkeypatch):
    """``sweep_vs_baselines`` credits the sweep with what it hands back: among the retrained trials, the one the
    objective ranks first, even when another retrained trial tests better; trials that were not retrained never
    count."""
    monkeypatch.syspath_prepend(str(REPO / "experiments"))
    module = load_script("experiments/sweep_vs_baselines.py", "sweep_vs_baselines_pick")
    table = pd.DataFrame({"trial_id": ["a", "b", "c"], "objective": [90_000, 40_000, 120_000],
                          "test_acc": [0.97, 0.98, float("nan")], "retrain_run_id": ["ra", "rb", float("nan")]})
    assert module.sweep_pick(table)["trial_id"] == "a"
    with_selection = table.assign(selection_acc=[0.90, 0.91, float("nan")], test_acc=[0.99, 0.80, float("nan")])
    assert module.sweep_pick(with_selection)["trial_id"] == "b"  # the selection split decides, not the objective


def test_the_retrain_cache_key_names_everything_that_makes_a_retraining(monkeypatch, tmp_path):
    """Two retrainings share a cached result only if network, recipe, data, split and numerics all agree: a key
    that missed one reported a stale accuracy for a genotype and seed that another script retrained anew."""
    monkeypatch.syspath_prepend(str(REPO / "experiments"))
    common = importlib.import_module("common")
    block = BlockGenotype(2, (Edge(0, 1, "attn_h2"), Edge(1, 2, "mlp_r2")))
    genotype = Genotype(16, 2, InputSpec(8, 1, 10), (block,), {"searched": "seed 0"}, "avg")
    config = RetrainConfig(data=DataConfig("digits"), epochs=2)
    key = common.retrain_key(config, genotype, "", None)
    assert common.retrain_key(config, dataclasses.replace(genotype, meta={}), "", None) == key  # provenance only
    variants = [
        common.retrain_key(dataclasses.replace(config, seed=1), genotype, "", None),
        common.retrain_key(dataclasses.replace(config, data=DataConfig("digits", train_images=900)), genotype, "", None),
        common.retrain_key(config, dataclasses.replace(genotype, input=InputSpec(8, 3, 10)), "", None),
        common.retrain_key(config, dataclasses.replace(genotype, head="cls"), "", None),
        common.retrain_key(config, genotype, "", 0),
        common.retrain_key(config, None, "small_cnn_w16", None),
    ]
    assert len({key, *variants}) == 1 + len(variants)
    monkeypatch.setattr(common, "numerics_version", lambda: "torch 0, dasvit code 0")
    assert common.retrain_key(config, genotype, "", None) != key
    first, reworded, changed = (tmp_path / f"{name}.py" for name in ("a", "b", "c"))
    first.write_text('"""Doc."""\n\ndef f(x):\n    """Why."""\n    return x + 1  # one\n')
    reworded.write_text('"""Other doc."""\n\ndef f(x):\n    """Other why."""\n    return x + 1  # another\n')
    changed.write_text('"""Doc."""\n\ndef f(x):\n    """Why."""\n    return x + 2  # one\n')
    assert common.code_of(first) == common.code_of(reworded) != common.code_of(changed)


@pytest.mark.slow
def test_scaling_benchmark_smoke(tmp_path):
    # one Ray Train fit (the 2-worker one differs only in its worker count; whole sweeps run 2-worker trials)
    run_script("benchmarks/scaling.py", "--dataset", "digits", "--steps", "2", "--warmup", "1", "--workers", "1",
               "--out", str(tmp_path), cwd=tmp_path)
    table = pd.read_csv(tmp_path / "scaling.csv")
    assert list(table["workers"]) == [1, 1, 1] and (table["images_per_s"] > 0).all()
    assert table["speedup_vs_1_worker"].iloc[-1] == 1.0


@pytest.mark.slow
def test_fused_divergence_smoke(light_smokes):
    folder, outcomes = light_smokes
    assert outcomes["fused_divergence"] == "ok", outcomes["fused_divergence"]
    report = json.loads((folder / "fused_divergence_seed0.json").read_text())
    pairs = report["summary"]
    assert set(pairs) == {f"r={r}: {pair}" for r in ("0.5", "1") for pair in ("eager vs fused",
                                                                             "eager vs eager nudged 1 ulp")}
    assert all(p["first_step_alpha_rel_diff"] < 1e-5 for p in pairs.values())  # rounding level after one step
    for search in report["whole_search"].values():
        assert len(search["epochs"]) == 3 and len(search["genotype_ids"]) == 2


@pytest.mark.parametrize("args,needle", [(["--embed-dim", "18"], "18"), (["--epochs", "0"], "epochs")])
def test_fused_divergence_usage_errors_exit_2(args, needle, tmp_path, capsys):
    script = load_script("experiments/fused_divergence.py", "fused_divergence_script")
    with pytest.raises(SystemExit) as exit_info:
        script.main([*args, "--dataset", "digits", "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and needle in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_ray_overhead_benchmark_smoke(tmp_path):
    # as the default sweep runs a trial: 2 data-parallel workers sharing the CPUs
    run_script("benchmarks/ray_overhead.py", "--dataset", "digits", "--epochs", "1", "--trials", "1",
               "--workers", "2", "--tag", "overhead_2w", "--out", str(tmp_path), cwd=tmp_path)
    summary = json.loads((tmp_path / "overhead_2w.json").read_text())["summary"]
    assert summary["trials"] == 1 and summary["sweep_s"] > 0 and summary["inprocess_s"] > 0
    assert summary["workers_per_trial"] == 2 and summary["cpus_per_worker"] == (os.cpu_count() or 1) // 2
    parts = summary["parts_per_trial_s"]  # logged by the trial itself, so a new part cannot go unnoticed
    assert {"worker_group_start", "data_loading", "model_build", "mlflow_logging", "checkpointing", "report",
            "teardown", "search_epochs"} <= set(parts) and parts["search_epochs"] > 0
    assert summary["empty_train_trial_s"] > 0 and summary["trial_driver_import_s"] > 0
    assert summary["trial_worker_import_s"] > 0
    processes = summary["empty_trial_processes"]  # the empty trial's processes, read from /proc
    assert [p["role"] for p in processes].count("RayTrainWorker") == 2  # its worker group, as large as the sweep's
    assert all(0 <= p["appeared_s"] <= p["working_s"] for p in processes)


@pytest.mark.slow
def test_exit_after_sigterm_probe(tmp_path):
    """SIGTERM while a retraining task runs: the sweep says so, prints its resume command, and exits 143 with the
    retraining's process already gone; the probe records each of those moments. (Ray's own helpers may outlive the
    driver for a while: its dashboard agents once took 1-2 minutes after a normal exit, so that is not asserted.)"""
    config = tmp_path / "one-trial.yaml"  # the shortest way to a retraining task: one trial, no proxy retrainings
    config.write_text(yaml.safe_dump({**TINY, "num_trials": 1, "objective": "params"}))
    run_script("benchmarks/exit_after_sigterm.py", "--config", str(config), "--delay", "1", "--dumps", "",
               "--tag", "probe", "--out", str(tmp_path), cwd=tmp_path)
    report = json.loads((tmp_path / "probe.json").read_text())
    assert report["returncode"] == 143 and report["retrain_tasks_at_signal"] == 1
    assert 0 < report["to_interrupt_line_s"] <= report["to_resume_line_s"] < report["to_exit_s"]
    assert any(line.startswith("resume it with:") for line in report["output"])
    assert "retrain_task" in report["samples"][0]["alive"] and "retrain_task" not in report["left_at_exit"]


@pytest.mark.slow
def test_vit_b_memory_benchmark_smoke(light_smokes):
    folder, outcomes = light_smokes
    assert outcomes["vit_b_memory"] == "ok", outcomes["vit_b_memory"]
    rows = json.loads((folder / "vit_b_memory_smoke.json").read_text())["rows"]
    assert [r["keep_ratio"] for r in rows] == [1.0, 0.5, 0.25, 0.125]
    assert rows[2]["peak_mem_mb"] < rows[0]["peak_mem_mb"] and rows[0]["largest_batch"] >= 4


@pytest.mark.slow
def test_search_cost_cifar_benchmark_smoke(light_smokes):
    folder, outcomes = light_smokes
    assert outcomes["search_cost_cifar"] == "ok", outcomes["search_cost_cifar"]
    summary = json.loads((folder / "search_cost_cifar_smoke.json").read_text())["summary"]
    assert summary["default_search_hours"] > 0 and "synthetic" in summary["data"]
