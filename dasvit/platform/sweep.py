"""The sweep's command line (``experiments/sweep.py``): Ray Tune + Optuna over the fairness lambda and the keep
ratio r, ASHA early stopping, each trial a Ray Train search run, everything tracked in MLflow, then the top-k
genotypes retrained in parallel (``dasvit.platform.sweep_run``).

Under ``ray submit`` it joins the running cluster; on a laptop it starts a local Ray with the dashboard on
127.0.0.1. Flags and the config are checked before torch, Ray, MLflow or Optuna are imported, so a usage error
exits 2 in about a second.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dasvit.config import ConfigError
from dasvit.platform.config import SweepConfig
from dasvit.quick_exit import freeze_heap_at_exit
from dasvit.vocabulary import objective_names, objective_spec


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sweep.py", description=__doc__)
    parser.add_argument("--config", help="sweep YAML (default: the packaged laptop default)")
    parser.add_argument("--num-trials", type=int)
    parser.add_argument("--workers", type=int, help="Ray Train workers per trial")
    parser.add_argument("--experiment", help="MLflow experiment name")
    parser.add_argument("--epochs", type=int, help="epochs of every search stage")
    parser.add_argument("--top-k", type=int, help="genotypes to retrain after the sweep (0: none)")
    parser.add_argument("--retrain-epochs", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--objective", help="what ranks trials (default: the config's): " + "; ".join(
        f"{name}: {objective_spec(name).about}" for name in objective_names()))
    parser.add_argument("--proxy-epochs", type=int, help="epochs of the proxy retraining at each stage's end")
    parser.add_argument("--max-macs", type=int, help="MACs per image the returned network may cost")
    parser.add_argument("--workdir", default=".", help="where mlflow.db, mlartifacts/ and ray_results/ go (default .)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                        "sqlite:///<workdir>/mlflow.db)")
    parser.add_argument("--storage-path", help="Ray Tune/Train storage: shared path or s3:// URI on a cluster")
    parser.add_argument("--address", help="Ray cluster address; 'local' starts a new local one (default: join a "
                        "running cluster, else start one)")
    parser.add_argument("--name", help="sweep name (default: <experiment>-<timestamp>)")
    parser.add_argument("--resume", nargs="?", const="latest", metavar="NAME",
                        help="resume an interrupted sweep; without NAME, the only unfinished one under the storage "
                        "path (if there are several, they are listed and nothing starts)")
    return parser


def load_config(args: argparse.Namespace) -> SweepConfig:
    config = SweepConfig.load(args.config)
    data = config.to_dict()
    overrides = {"num_trials": args.num_trials, "workers_per_trial": args.workers, "experiment": args.experiment,
                 "seed": args.seed, "objective": args.objective, "proxy_epochs": args.proxy_epochs,
                 "max_macs": args.max_macs}
    data.update({k: v for k, v in overrides.items() if v is not None})
    if args.epochs is not None:
        stages = data["search"].get("stages") or [vars(s) for s in config.base_search().stages]
        data["search"] = {**data["search"], "stages": [{**s, "epochs": args.epochs} for s in stages]}
    retrain = {"top_k": args.top_k, "epochs": args.retrain_epochs}
    data["retrain"] = {**data["retrain"], **{k: v for k, v in retrain.items() if v is not None}}
    return SweepConfig.from_dict(data)


def main(argv: Sequence[str] | None = None) -> int:
    freeze_heap_at_exit()
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args)
    except ConfigError as err:
        print(f"sweep.py: error: {err}", file=sys.stderr)
        return 2
    from dasvit.platform.sweep_run import run  # torch, Ray, MLflow and Optuna: only for a valid command line

    return run(args, config, argv)
