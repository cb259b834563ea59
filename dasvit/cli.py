"""``dasvit search | retrain | show | predict | export``. Every input is checked before anything is written; a bad
value exits with status 2 and a message that names it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import yaml

from dasvit.config import ConfigError, DataConfig, RetrainConfig, SearchConfig
from dasvit.genotype import PRESETS, Genotype, GenotypeError, load_genotype
from dasvit.io import CheckpointError, ModelError
from dasvit.quick_exit import freeze_heap_at_exit
from dasvit.vocabulary import COMPILE_MODES, DataError, OpError, StageSpec, dataset_names, validate_compile

# torch and the modules that need it are imported inside the commands, after the arguments are checked, so that a
# usage error exits in about a second (tests/test_cli.py checks that torch is never imported on that path)

USAGE_ERRORS = (ConfigError, GenotypeError, DataError, OpError, CheckpointError, ModelError)
EXPORT_FORMATS = ("onnx", "exported-program")  # dasvit.export.FORMATS, without importing torch to parse flags


class UsageError(ValueError):
    """Bad command-line input that no more specific error covers."""


def _parse_stages(text: str) -> tuple[StageSpec, ...]:
    """``depth:epochs[:ops],...``, e.g. ``2:4,3:4:4,4:4:2``."""
    stages = []
    for item in text.split(","):
        parts = item.strip().split(":")
        if len(parts) not in (2, 3) or not all(p.strip().lstrip("-").isdigit() for p in parts):
            raise UsageError(f"stage {item!r} in --stages {text!r} is not depth:epochs[:ops]")
        numbers = [int(p) for p in parts]
        stages.append(StageSpec(numbers[0], numbers[1], numbers[2] if len(numbers) == 3 else None))
    return tuple(stages)


def _read_config_file(path: str) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"config file {path!r} does not exist")
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as err:
        raise UsageError(f"config file {path!r} is not valid YAML/JSON: {err}") from None
    if not isinstance(data, dict):
        raise UsageError(f"config file {path!r} must hold a mapping of settings")
    return data


def _data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=dataset_names(), help="data set (default: mnist5k, embedded)")
    parser.add_argument("--data-root", help="root folder of fashion-mnist (default: Debian's path or the checkout's "
                        ".data/), cifar10/cifar100 or imagefolder data")
    parser.add_argument("--download", action="store_true",
                        help="allow torchvision to download fashion-mnist or CIFAR into --data-root")
    parser.add_argument("--image-size", type=int, help="resize images to this side (default: the data set's)")
    parser.add_argument("--train-images", type=int, help="use this many non-test images (default: all; fashion-mnist: "
                        "its protocol's 10,000 of 50,000)")


def _data_config(args: argparse.Namespace, base: DataConfig) -> DataConfig:
    return replace(
        base,
        **{k: v for k, v in {"dataset": args.dataset, "data_root": args.data_root, "image_size": args.image_size,
                             "train_images": args.train_images}.items() if v is not None},
        download=args.download or base.download,
    )


def search_config_from_args(args: argparse.Namespace) -> SearchConfig:
    config = SearchConfig.from_dict(_read_config_file(args.config)) if args.config else SearchConfig()
    stages = _parse_stages(args.stages) if args.stages else config.stages
    if args.epochs is not None:
        stages = tuple(replace(s, epochs=args.epochs) for s in stages)
    ops = tuple(o.strip() for o in args.ops.split(",") if o.strip()) if args.ops is not None else None
    config = config.with_overrides(
        data=_data_config(args, config.data), patch_size=args.patch_size, embed_dim=args.embed_dim, ops=ops,
        nodes=args.nodes, edges_per_node=args.edges_per_node, stages=stages, keep_ratio=args.keep_ratio, head=args.head,
        fairness_lambda=args.fairness_lambda, batch_size=args.batch_size, alpha_lr=args.alpha_lr,
        seed=args.seed, second_order=True if args.second_order else None,
    )
    return config.validate()


def cmd_search(args: argparse.Namespace) -> int:
    config = search_config_from_args(args)
    try:
        validate_compile(args.compile, args.device.split(":")[0])
    except ValueError as err:
        raise UsageError(str(err)) from None
    from dasvit.checkpoint import CHECKPOINT, GENOTYPE, resume
    from dasvit.data import load_data
    from dasvit.search import SearchRun

    out = Path(args.out)
    if not args.resume and ((out / CHECKPOINT).exists() or (out / GENOTYPE).exists()):
        raise UsageError(f"output folder {str(out)!r} already holds a search: pass --resume or choose another --out")
    data = load_data(config.data)
    run = SearchRun(config, data, device=args.device, fused=args.fused, compile_mode=args.compile)
    if args.resume and resume(run, out):
        print(f"resuming {out} at stage {run.stage}, epoch {run.epochs_done}", file=sys.stderr)
    genotype = run.run(out, progress=not args.quiet)
    print(f"genotype written to {out / GENOTYPE}")
    _print_summary(genotype, config.data.resolved_image_size, data.in_chans, data.num_classes)
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    genotype = load_genotype(args.genotype)
    searched_on = genotype.meta.get("dataset")
    base = DataConfig(dataset=searched_on) if searched_on in dataset_names() else DataConfig()
    config = RetrainConfig(
        data=_data_config(args, base),
        **{k: v for k, v in {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                             "threads": args.threads}.items()
           if v is not None},
    ).validate(genotype.patch_size)
    from dasvit.data import load_data
    from dasvit.retrain import retrain

    data = load_data(config.data)
    result = retrain(genotype, config, data, out_dir=args.out, device=args.device, progress=not args.quiet)
    print(json.dumps({"dataset": config.data.dataset, **asdict(result)}, indent=2))
    return 0


def _print_summary(genotype: Genotype, image_size: int, in_chans: int, num_classes: int) -> None:
    from dasvit.metrics import count_macs, count_params
    from dasvit.model import build_model

    model = build_model(genotype, image_size, in_chans, num_classes)
    params, macs = count_params(model), count_macs(model, image_size, in_chans)
    print(f"embed dim {genotype.embed_dim}, patch {genotype.patch_size}, {len(genotype.blocks)} blocks, "
          f"input {image_size}x{image_size}x{in_chans}, {num_classes} classes")
    for index, block in enumerate(genotype.blocks):
        edges = ", ".join(f"{e.source}-{e.op}->{e.target}" for e in block.live_edges())
        print(f"  block {index:2d}: {edges}")
    print(f"params: {params:,}")
    print(f"MACs:   {macs:,} ({macs / 1e9:.2f} GMACs, {2 * macs / 1e9:.2f} GFLOPs; FLOPs = 2 x MACs)")
    print(f"head:   {genotype.head} ({'CLS token' if genotype.head == 'cls' else 'mean of the patch tokens'})")
    if genotype.blind:
        print("warning: no live attention op: the CLS token, all the head reads, never sees a patch, so this "
              "network cannot classify", file=sys.stderr)


def cmd_show(args: argparse.Namespace) -> int:
    genotype = load_genotype(args.genotype)
    spec = genotype.input
    image_size = args.image_size or spec.image_size
    if image_size % genotype.patch_size != 0:
        raise ConfigError(f"image size {image_size} is not divisible by patch size {genotype.patch_size}")
    for name in ("image_size", "in_chans", "num_classes"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    _print_summary(genotype, image_size, args.in_chans or spec.in_chans, args.num_classes or spec.num_classes)
    return 0


def _model_source(text: str) -> str:
    """A model folder or an MLflow URI; a folder that does not exist is a usage error before anything loads."""
    from dasvit import is_mlflow_uri

    if not is_mlflow_uri(text) and not Path(text).is_dir():
        raise UsageError(f"model {text!r}: no such folder (give a model folder, runs:/<run id>/model or "
                         "models:/<name>@champion)")
    return text


def _image_files(sources: Sequence[str]) -> list[Path]:
    """Files as given (an unreadable one is reported later, by name); folders as their image files, sorted."""
    from PIL import Image

    suffixes = set(Image.registered_extensions())
    files: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
            if not found:
                raise UsageError(f"image folder {source!r} holds no image file")
            files.extend(found)
        else:
            files.append(path)
    return files


def cmd_predict(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise UsageError(f"--top-k must be >= 1, got {args.top_k}")
    source = _model_source(args.model)
    files = _image_files(args.images)
    import torch

    import dasvit

    model = dasvit.load(source, args.tracking_uri)
    inputs, rows, skipped = [], [], []
    for file in files:
        try:
            inputs.append((file, model.preprocess(file)))
        except OSError as err:  # missing, unreadable or not an image: named, skipped
            skipped.append({"image": str(file), "error": str(err)})
            print(f"dasvit predict: skipped {str(file)!r}: {err}", file=sys.stderr)
    for start in range(0, len(inputs), 64):
        chunk = inputs[start:start + 64]
        ranked = model.top_classes(torch.stack([x for _, x in chunk]), args.top_k)
        for (file, _), top in zip(chunk, ranked):
            rows.append({"image": str(file), "top": [{"class": name, "probability": p} for name, p in top]})
    if args.json:
        print(json.dumps({"model": args.model, "predictions": rows, "skipped": skipped}, indent=2))
    elif rows:
        import pandas as pd

        table = pd.DataFrame([{"image": r["image"], "rank": k + 1, "class": t["class"], "probability": t["probability"]}
                              for r in rows for k, t in enumerate(r["top"])])
        print(table.to_string(index=False, float_format=lambda p: f"{p:.4f}"))
    return 1 if skipped else 0


def cmd_export(args: argparse.Namespace) -> int:
    from importlib.util import find_spec

    from dasvit.export import SUFFIXES, ExportError

    missing = [name for name in ("onnx", "onnxruntime", "onnxscript") if find_spec(name) is None]
    if args.format == "onnx" and missing:
        raise UsageError(f"ONNX export needs {', '.join(missing)}: pip install -e '.[export]' (or use --format "
                         "exported-program)")
    source = _model_source(args.model)
    import dasvit
    from dasvit.export import export_model

    model = dasvit.load(source, args.tracking_uri)
    card = model.card
    out = Path(args.out) if args.out else Path(f"model-{card.genotype_id}{SUFFIXES[args.format]}")
    try:
        diff = export_model(model.network, (card.in_chans, card.image_size, card.image_size), out, args.format)
    except ExportError as err:
        print(f"dasvit export: error: {err}", file=sys.stderr)
        return 1
    print(f"{args.format} model written to {out} (input: float32 images, (batch, {card.in_chans}, {card.image_size}, "
          f"{card.image_size}), normalised with mean {list(card.mean)} and std {list(card.std)}; output: "
          f"{card.num_classes} logits); parity with PyTorch: max abs logit difference {diff:.2e}")
    return 0


def _add_search(sub: Any) -> None:
    """``dasvit search``: the data, the search space and schedule, where the search runs."""
    search = sub.add_parser("search", help="run a progressive DASViT search and write genotype.json")
    _data_args(search)
    search.add_argument("--config", help="YAML/JSON search config (flags override it)")
    search.add_argument("--keep-ratio", type=float, help="token keep ratio r in (0, 1]; 1 = plain DARTS")
    search.add_argument("--fairness-lambda", "--lambda", dest="fairness_lambda", type=float,
                        help="operation-fairness coefficient lambda >= 0 (default 0.5)")
    search.add_argument("--head", help="classifier input: avg (mean patch token, default) or cls (the CLS token)")
    search.add_argument("--stages", help="progressive schedule depth:epochs[:ops],... (default 2:3,3:3:4,4:3:2)")
    search.add_argument("--epochs", type=int, help="epochs of every stage (overrides the schedule's)")
    search.add_argument("--ops", help="comma-separated candidate ops, e.g. none,skip,attn_h2,mlp_r4,conv_k3")
    search.add_argument("--nodes", type=int, help="intermediate nodes per block")
    search.add_argument("--edges-per-node", type=int, help="incoming edges each node keeps when discretised")
    search.add_argument("--patch-size", type=int)
    search.add_argument("--embed-dim", type=int)
    search.add_argument("--batch-size", type=int)
    search.add_argument("--alpha-lr", type=float)
    search.add_argument("--second-order", action="store_true", help="second-order (unrolled) alpha gradient")
    search.add_argument("--seed", type=int)
    search.add_argument("--out", default="runs/search", help="output folder (default runs/search)")
    search.add_argument("--resume", action="store_true",
                        help="continue from --out's checkpoint if there is one; without it, an --out that already "
                             "holds a search is refused (exit 2) rather than overwritten")
    search.add_argument("--device", default="cpu")
    search.add_argument("--fused", action="store_true",
                        help="evaluate mixed ops in few large kernels (same math; for launch-bound GPUs, see README)")
    search.add_argument("--compile", choices=COMPILE_MODES, default="off",
                        help="compile the search step (dasvit.compiled; CUDA graphs only on CUDA); each stage "
                             "compiles anew (default off)")
    search.add_argument("--quiet", action="store_true", help="no progress bars")
    search.set_defaults(func=cmd_search)


def _add_retrain(sub: Any) -> None:
    """``dasvit retrain``: a genotype (file or preset) trained from scratch."""
    retrain = sub.add_parser("retrain", help="train a genotype from scratch as a plain ViT")
    retrain.add_argument("genotype", help=f"genotype JSON file or preset ({', '.join(PRESETS)})")
    _data_args(retrain)
    retrain.add_argument("--epochs", type=int)
    retrain.add_argument("--batch-size", type=int)
    retrain.add_argument("--lr", type=float)
    retrain.add_argument("--seed", type=int)
    retrain.add_argument("--threads", type=int, help="torch CPU threads (default 1, as a sweep's retraining task: the "
                         "same genotype, seed and recipe then give the same accuracy)")
    retrain.add_argument("--out", default="runs/retrain", help="output folder (default runs/retrain)")
    retrain.add_argument("--device", default="cpu")
    retrain.add_argument("--quiet", action="store_true")
    retrain.set_defaults(func=cmd_retrain)


def _add_show(sub: Any) -> None:
    """``dasvit show``: a genotype's blocks, parameters and MACs."""
    show = sub.add_parser("show", help="print a genotype's architecture, params and MACs")
    show.add_argument("genotype", help=f"genotype JSON file or preset ({', '.join(PRESETS)})")
    show.add_argument("--image-size", type=int)
    show.add_argument("--in-chans", type=int)
    show.add_argument("--num-classes", type=int)
    show.set_defaults(func=cmd_show)


def _add_predict(sub: Any) -> None:
    """``dasvit predict``: a trained model's classes for images."""
    predict = sub.add_parser("predict", help="classify images with a trained model")
    predict.add_argument("model", help="model folder (dasvit retrain --out), runs:/<run id>/model or "
                                       "models:/<name>@champion")
    predict.add_argument("images", nargs="+", help="image files or folders of images")
    predict.add_argument("--top-k", type=int, default=3, help="classes shown per image (default 3)")
    predict.add_argument("--json", action="store_true", help="print JSON instead of a table")
    predict.add_argument("--tracking-uri", help="MLflow store of an MLflow model URI (default: $MLFLOW_TRACKING_URI, "
                                                "else ./mlflow.db)")
    predict.set_defaults(func=cmd_predict)


def _add_export(sub: Any) -> None:
    """``dasvit export``: a trained model for deployment."""
    export = sub.add_parser("export", help="export a trained model for deployment, checked against PyTorch")
    export.add_argument("model", help="model folder, runs:/<run id>/model or models:/<name>@champion")
    export.add_argument("--format", choices=EXPORT_FORMATS, default="onnx")
    export.add_argument("--out", help="output file (default model-<genotype id>.onnx or .pt2)")
    export.add_argument("--tracking-uri", help="MLflow store of an MLflow model URI")
    export.set_defaults(func=cmd_export)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dasvit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_search, _add_retrain, _add_show, _add_predict, _add_export):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    freeze_heap_at_exit()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, *USAGE_ERRORS) as err:
        print(f"dasvit {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
