"""Shared plumbing of the experiment scripts: budgets, seeds, cached searches and retrainings, MLflow logging, and
the results files (CSV + Markdown table + PNG) that the README quotes.

Searches and retrainings are deterministic for a given config and seed on CPU, so each is cached under
``<out>/cache/<hash of its config>`` and shared between scripts: the token-ratio and the search-retrain-gap
experiments use the same searches, for instance. Delete the cache to recompute from scratch.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import matplotlib
import pandas as pd
import torch
from torch import nn

import dasvit
from dasvit.arglists import SEEDS
from dasvit.checkpoint import resume
from dasvit.config import DataConfig, RetrainConfig, SearchConfig
from dasvit.data import ImageData, load_data, search_holdout
from dasvit.genotype import Genotype
from dasvit.io import atomic_write_text
from dasvit.machine import describe_machine
from dasvit.platform import tracking
from dasvit.retrain import retrain, train_from_scratch
from dasvit.search import SearchRun
from dasvit.seeding import derived_seed, seed_everything
from dasvit.vocabulary import StageSpec, dataset_names

matplotlib.use("Agg")

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Budget:
    """The search and retraining settings of an experiment: the defaults, or a seconds-long smoke size for CI."""

    search: SearchConfig
    retrain: RetrainConfig


def budget(smoke: bool, dataset: str = "mnist5k") -> Budget:
    data = DataConfig("digits" if smoke else dataset)
    if smoke:
        search = SearchConfig(data=data, embed_dim=16, ops=("none", "skip", "attn_h2", "mlp_r2", "conv_k3"),
                              stages=(StageSpec(1, 1), StageSpec(2, 1, 2)), batch_size=64)
        return Budget(search, RetrainConfig(data=data, epochs=1))
    return Budget(SearchConfig(data=data), RetrainConfig(data=data))


def results_dir(dataset: str) -> Path:
    """Where a data set's results live: the embedded digits' at the top, every other set's in its own folder."""
    return RESULTS if dataset == "mnist5k" else RESULTS / dataset.removesuffix("-mnist")


def parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=SEEDS, default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--dataset", choices=dataset_names(), default="mnist5k",
                        help="data set of the searches and retrainings (default mnist5k, embedded)")
    parser.add_argument("--smoke", action="store_true", help="a seconds-long run on 8x8 digits (CI)")
    parser.add_argument("--out", type=Path, help="results folder (default experiments/results, or "
                                                 "experiments/results/<data set> for another data set than mnist5k)")
    parser.add_argument("--tracking-uri", help="MLflow store (default sqlite:///<cwd>/mlflow.db)")
    return parser


def config_key(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


# The modules whose code decides a retraining's numbers: the network, its ops (and the registry that names the class
# each op builds), the data and its splits, the recipe, the metrics, the seeding. A change to their code (not to a
# comment or docstring) is a new cache key.
NUMERICS_MODULES = ("backbone", "baselines", "data", "fashion_mnist", "genotype", "metrics", "model", "ops",
                    "precision", "retrain", "seeding", "token_selection", "vocabulary")


def code_of(path: Path) -> str:
    """A module's code without its comments and docstrings (``ast.dump`` keeps no comment, and the docstrings are
    stripped), so that rewording one does not invalidate the cache."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(
                getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def numerics_version() -> str:
    """torch's version, the CPU kernels it runs (AVX2 and AVX-512 kernels round differently) and a hash of the code
    of ``NUMERICS_MODULES``: what else makes a retraining's result besides its network, recipe and data."""
    package = Path(dasvit.__file__).parent
    code = hashlib.sha1("".join(code_of(package / f"{m}.py") for m in NUMERICS_MODULES).encode()).hexdigest()[:12]
    return f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), dasvit code {code}"


def retrain_key(config: RetrainConfig, genotype: Genotype | None, model_name: str,
                holdout_seed: int | None) -> str:
    """Everything that makes a retraining unique: the whole network (a genotype's blocks, width, patch, head and
    input; or the model's name), the whole recipe with its data set, seed and threads, the split it trains on, and
    the numerics (torch, its CPU kernels and dasvit's code)."""
    network = {k: v for k, v in genotype.to_dict().items() if k != "meta"} if genotype is not None else model_name
    return config_key(network, asdict(config), {"holdout_seed": holdout_seed}, numerics_version())


class Experiment:
    """One experiment script's run: an MLflow parent run, cached searches and retrainings as its child runs, and
    the results files. Use as a context manager: an exception ends the parent run FAILED, never RUNNING."""

    def __init__(self, name: str, args: argparse.Namespace):
        self.name = name
        self.out = Path(args.out) if args.out is not None else results_dir(getattr(args, "dataset", "mnist5k"))
        self.cache = self.out / "cache"
        self.data_cache: dict[DataConfig, ImageData] = {}
        uri = self.tracking_uri = tracking.resolve_uri(args.tracking_uri, Path.cwd())
        tracking.check_reachable(uri)
        self.client = tracking.client_for(uri)
        # artifacts beside a SQLite store, never in ./mlruns of whatever folder the script runs from
        store = Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts" if uri.startswith("sqlite:///") else None
        self.experiment_id = tracking.ensure_experiment(self.client, f"dasvit-{name}", store)
        self.run_id = tracking.start_run(self.client, self.experiment_id, name, "experiment")
        tracking.log_params(self.client, self.run_id, {"seeds": ",".join(map(str, args.seeds)), "smoke": str(args.smoke)})

    def __enter__(self) -> Experiment:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 _tb: TracebackType | None) -> None:
        tracking.end_run(self.client, self.run_id, "FINISHED" if error is None else "FAILED",
                         error=None if error is None else repr(error))

    def data(self, config: DataConfig) -> ImageData:
        if config not in self.data_cache:
            self.data_cache[config] = load_data(config)
        return self.data_cache[config]

    @contextmanager
    def child(self, label: str, kind: str, params: dict[str, Any]) -> Iterator[str]:
        run_id = tracking.start_run(self.client, self.experiment_id, label, kind, parent_run_id=self.run_id)
        tracking.log_params(self.client, run_id, tracking.flatten("", params))
        try:
            yield run_id
        except BaseException as err:
            tracking.end_run(self.client, run_id, "FAILED", error=repr(err))
            raise
        tracking.end_run(self.client, run_id, "FINISHED")

    def search(self, config: SearchConfig, label: str,
               on_epoch_end: Callable[[SearchRun, Any], None] | None = None) -> SearchRun:
        """The finished search for ``config``: from the cache, else run (and cached)."""
        folder = self.cache / "search" / config_key(config.to_dict())
        run = SearchRun(config, self.data(config.data))
        if not (resume(run, folder) and run.finished):
            run.run(out_dir=folder, on_epoch_end=on_epoch_end)
        with self.child(label, "search", config.to_dict()) as run_id:
            for record in run.history:
                tracking.log_metrics(self.client, run_id, {k: v for k, v in asdict(record).items()
                                                           if k != "global_epoch"}, step=record.global_epoch)
            alpha = {"ops": list(config.ops), "epochs": run.alpha_history, "stages": run.stage_summaries}
            tracking.log_search_artifacts(self.client, run_id, run.genotype(), alpha)
        return run

    def retrain(self, label: str, config: RetrainConfig, genotype: Genotype | None = None,
                model: Callable[[ImageData], nn.Module] | None = None, model_name: str = "",
                holdout_seed: int | None = None) -> dict[str, Any]:
        """Test accuracy, params, MACs and seconds of training ``genotype`` (or ``model``) from scratch: cached.

        With ``holdout_seed`` the network trains on the train half of that seed's search split and ``test_acc`` is
        its accuracy on the search-val half (``dasvit.data.search_holdout``): a selection figure, never the test."""
        path = self.cache / "retrain" / f"{retrain_key(config, genotype, model_name, holdout_seed)}.json"
        if path.is_file():
            result = json.loads(path.read_text())
        else:
            data = self.data(config.data)
            if holdout_seed is not None:
                data = search_holdout(data, holdout_seed)
            if genotype is not None:  # the model folder (weights, card, genotype) beside the cached result
                outcome = retrain(genotype, config, data, out_dir=path.with_suffix(""))
            else:
                seed_everything(derived_seed(config.seed, 0))
                outcome = train_from_scratch(model(data), config, data)
            result = asdict(outcome)
            atomic_write_text(path, json.dumps(result, indent=2) + "\n")
        with self.child(label, "retrain", {"model": model_name or "genotype", **asdict(config)}) as run_id:
            tracking.log_metrics(self.client, run_id, {k: float(v) for k, v in result.items() if v is not None}, step=0)
            if genotype is not None:
                self.client.log_text(run_id, genotype.to_json(), "genotype.json")
        return result

    def write(self, table: pd.DataFrame, summary: pd.DataFrame | None = None, figure: Any = None,
              notes: dict[str, Any] | None = None) -> None:
        """``<out>/<name>.csv`` (every row), ``.md`` (the summary table the README quotes), ``.png``, ``.json``."""
        self.out.mkdir(parents=True, exist_ok=True)
        stem = self.out / self.name
        self._save(stem.with_suffix(".csv"), table.to_csv(index=False))
        shown = summary if summary is not None else table
        self._save(stem.with_suffix(".md"), shown.to_markdown(index=False, floatfmt=".4g") + "\n")
        meta = {"machine": describe_machine(), "date": time.strftime("%Y-%m-%d"), **(notes or {})}
        self._save(stem.with_suffix(".json"), json.dumps(meta, indent=2, default=str) + "\n")
        if figure is not None:
            figure.savefig(stem.with_suffix(".png"), dpi=110, bbox_inches="tight")
            self.client.log_artifact(self.run_id, str(stem.with_suffix(".png")))
        print(shown.to_string(index=False))

    def write_extra(self, suffix: str, text: str) -> None:
        """One more results file, ``<out>/<name>_<suffix>``, logged to the experiment's run like the others."""
        self._save(self.out / f"{self.name}_{suffix}", text)

    def _save(self, path: Path, text: str) -> None:
        """A results file, written whole (never half) and logged to the experiment's run."""
        atomic_write_text(path, text)
        self.client.log_artifact(self.run_id, str(path))

def mean_std(table: pd.DataFrame, by: str | list[str], columns: list[str]) -> pd.DataFrame:
    """Per group: mean and standard deviation over seeds of each column, plus the number of seeds."""
    grouped = table.groupby(by, sort=False)
    summary = grouped[columns].agg(["mean", "std"])
    summary.columns = [f"{c}_{s}" for c, s in summary.columns]
    summary.insert(0, "seeds", grouped.size())
    return summary.reset_index()
