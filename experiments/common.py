"""Shared plumbing of the experiment scripts: budgets, seeds, cached searches and retrainings, MLflow logging, and
the results files (CSV + Markdown table + PNG) that the README quotes.

Searches and retrainings are deterministic for a given config and seed on CPU, so each is cached under
``<out>/cache/<hash of its config>`` and shared between scripts: the token-ratio and the search-retrain-gap
experiments use the same searches, for instance. Delete the cache to recompute from scratch.
"""

from __future__ import annotations

import argparse
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
from torch import nn

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
from dasvit.vocabulary import StageSpec

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


def parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=SEEDS, default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--smoke", action="store_true", help="a seconds-long run on 8x8 digits (CI)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default experiments/results)")
    parser.add_argument("--tracking-uri", help="MLflow store (default sqlite:///<cwd>/mlflow.db)")
    return parser


def config_key(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


class Experiment:
    """One experiment script's run: an MLflow parent run, cached searches and retrainings as its child runs, and
    the results files. Use as a context manager: an exception ends the parent run FAILED, never RUNNING."""

    def __init__(self, name: str, args: argparse.Namespace):
        self.name, self.out = name, Path(args.out)
        self.cache = self.out / "cache"
        self.data_cache: dict[str, ImageData] = {}
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

    def data(self, dataset: str) -> ImageData:
        if dataset not in self.data_cache:
            self.data_cache[dataset] = load_data(DataConfig(dataset))
        return self.data_cache[dataset]

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
        run = SearchRun(config, self.data(config.data.dataset))
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
        what = genotype.to_dict()["blocks"] if genotype is not None else model_name
        extra = ({"embed_dim": genotype.embed_dim, "patch_size": genotype.patch_size, "head": genotype.head}
                 if genotype is not None else {})
        if holdout_seed is not None:
            extra["holdout_seed"] = holdout_seed
        path = self.cache / "retrain" / f"{config_key(what, extra, asdict(config))}.json"
        if path.is_file():
            result = json.loads(path.read_text())
        else:
            data = self.data(config.data.dataset)
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
            tracking.log_metrics(self.client, run_id, {k: float(v) for k, v in result.items()}, step=0)
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
