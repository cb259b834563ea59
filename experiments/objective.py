"""Which trial objective predicts the accuracy a genotype retrains to?

Genotypes: the default search over a grid that spans the default sweep's space (seeds x keep ratio r x fairness
lambda), identical genotypes counted once. Ground truth: each genotype retrained from scratch with the full recipe
(``--truth-epochs``, 50) on the train half of one fixed search split and scored on its search-val half, once per
init seed of ``--truth-seeds``, averaged: the *retrained validation accuracy*, the figure a user can expect from
retraining the genotype. Selection never reads the test split, so neither does this study.

One retraining is itself a noisy measurement of that figure (init and data order move it by a few tenths of a
point, the size of the differences to rank), so the study also reports how well one truth retraining ranks the
genotypes by another (``truth_repeat``): no candidate can be expected to predict a single retraining better.

Candidates, each scored on the same genotypes:
- ``supernet``: the supernet's search-val accuracy at the end of the search (the sweep's ``supernet`` objective);
- ``params`` / ``macs``: the derived network's size (zero-cost, larger = better);
- ``proxy_e<k>``: a short proxy retraining, the recipe compressed to k epochs on the same train half (another init
  seed than the ground truth's), scored on the search-val half;
- ``inherit_e<k>``: weight inheritance (``dasvit.inherit``): the derived network starting from the weights its ops,
  stem and head have at the end of the search, fine-tuned with the recipe compressed to k epochs (0: not at all) on
  the search's own train half and scored on its search-val half (the split the supernet was searched on, so no
  image it trained on is scored); like ``supernet``, the mean over the searches that found the genotype;
- ``grad_norm`` / ``snip``: zero-cost proxies of the network at init: the summed norm of the loss gradient of every
  weight tensor, and SNIP's saliency ``sum |theta * dL/dtheta|`` (the two zero-cost proxies of Abdelfattah et al.,
  ICLR 2021, that apply to any network; NASWOT needs a ReLU-like activation in every network, which genotypes
  without an MLP edge lack). Each is the mean over 8 draws (an init seed, none of them a ground truth's, and a batch
  of 128 images of the train half); the JSON also gives the tau range of single draws.

For each: Kendall's tau against the ground truth, the top-1 regret (ground truth of the best genotype minus that of
the one the candidate ranks first) and its cost in CPU-seconds per scored genotype, against the mean over the truth
seeds (``tau``, ``regret``) and against the first seed's retraining alone (``tau_single``). The JSON names the
default: the candidate the sweep's packaged config uses.

    python experiments/objective.py [--seeds 0,1,2,3,4,5,6] [--ratios 0.25,0.4,0.6] [--lambdas 0,1]
                                    [--proxy-epochs 2,4,8,16,4/32] [--inherit-epochs 0,1,2] [--truth-seeds 0,2,3]
"""

from __future__ import annotations

import json
import math
import time

import common
import matplotlib.pyplot as plt
import pandas as pd
import torch
import torch.nn.functional as F
from inherit import inherit_weights
from scipy.stats import kendalltau

from dasvit.arglists import KEEP_RATIOS, LAMBDAS, SEEDS, NumberList
from dasvit.config import RetrainConfig
from dasvit.data import make_loader, retrain_splits, search_holdout, search_splits
from dasvit.metrics import evaluate
from dasvit.model import build_model
from dasvit.platform.config import SweepConfig
from dasvit.quick_exit import freeze_heap_at_exit
from dasvit.retrain import train_from_scratch
from dasvit.search import SearchRun

TRUTH_SPLIT_SEED = 0  # one search split for every genotype, so that their scores are comparable
PROXY_INIT_SEED = 1  # not a ground truth's init: a proxy must not win by sharing it
ZERO_COST = ("grad_norm", "snip")
ZERO_COST_BATCH = 128
ZERO_COST_SEEDS = (PROXY_INIT_SEED, 4, 5, 6, 7, 8, 9, 10)  # one draw each: the batch's order and the init
PROXY_INITS = tuple(sorted({PROXY_INIT_SEED, *ZERO_COST_SEEDS}))  # a ground truth shares none of them


def parse_args(argv: list[str] | None):
    parser = common.parser(__doc__)
    parser.set_defaults(seeds="0,1,2,3,4,5,6")
    parser.add_argument("--ratios", type=KEEP_RATIOS, default="0.25,0.4,0.6")
    parser.add_argument("--lambdas", type=LAMBDAS, default="0,1")
    parser.add_argument("--proxy-epochs", default="2,4,8,16,4/32",
                        help="comma-separated proxy_e<k> candidates: k epochs, or k/b for k epochs at batch size b")
    parser.add_argument("--inherit-epochs", type=NumberList(int, minimum=0), default="0,1,2",
                        help="comma-separated inherit_e<k> candidates: k epochs of fine-tuning (0: none)")
    parser.add_argument("--truth-epochs", type=int, default=RetrainConfig.epochs)
    parser.add_argument("--truth-seeds", type=SEEDS, default="0,2,3",
                        help=f"comma-separated init seeds of the ground-truth retrainings, averaged (none of the "
                             f"proxies' {', '.join(map(str, PROXY_INITS))})")
    args = parser.parse_args(argv)
    if set(PROXY_INITS) & set(args.truth_seeds) or len(set(args.truth_seeds)) != len(args.truth_seeds):
        parser.error(f"--truth-seeds {','.join(map(str, args.truth_seeds))}: distinct seeds, none of them a "
                     f"proxy's init seed {', '.join(map(str, PROXY_INITS))}")
    try:
        args.proxies = [tuple(int(x) for x in (spec.split("/") + [str(RetrainConfig.batch_size)])[:2])
                        for spec in args.proxy_epochs.split(",")]
    except ValueError:
        parser.error(f"--proxy-epochs {args.proxy_epochs!r}: comma-separated k or k/b (integers), e.g. 4,4/32")
    if min(min(p) for p in args.proxies) < 1 or args.truth_epochs < 1:
        parser.error(f"--proxy-epochs ({args.proxy_epochs}) and --truth-epochs ({args.truth_epochs}) must be >= 1")
    return args


def proxy_name(epochs: int, batch: int) -> str:
    return f"proxy_e{epochs}" + ("" if batch == RetrainConfig.batch_size else f"_b{batch}")


def genotype_key(genotype) -> str:
    """The network a genotype builds: its live edges only (an edge whose output nobody reads changes nothing)."""
    live = [[(e.source, e.target, e.op) for e in block.live_edges()] for block in genotype.blocks]
    return common.config_key(live, genotype.embed_dim, genotype.patch_size, genotype.head)


def zero_cost(genotype, batches: list[tuple[torch.Tensor, torch.Tensor]], data) -> dict[str, float]:
    """``grad_norm`` and ``snip`` of ``genotype``'s network at init, one draw per seed of ``ZERO_COST_SEEDS`` (its own
    init and its own batch), each as ``<name>_draw<i>`` and as the mean over the draws, with the seconds they took."""
    start = time.perf_counter()
    scores: dict[str, float] = {}
    for draw, (seed, (images, labels)) in enumerate(zip(ZERO_COST_SEEDS, batches)):
        torch.manual_seed(seed)
        model = build_model(genotype, images.shape[-1], data.in_chans, data.num_classes)
        F.cross_entropy(model(images), labels).backward()
        weights = [w for w in model.parameters() if w.grad is not None]
        with torch.no_grad():
            scores[f"grad_norm_draw{draw}"] = float(sum(w.grad.norm() for w in weights))
            scores[f"snip_draw{draw}"] = float(sum((w * w.grad).abs().sum() for w in weights))
    seconds = time.perf_counter() - start
    for name in ZERO_COST:
        scores[name] = sum(scores[f"{name}_draw{d}"] for d in range(len(ZERO_COST_SEEDS))) / len(ZERO_COST_SEEDS)
        scores[f"{name}_s"] = seconds
    return scores


def inherited(run: SearchRun, genotype, holdout, config: RetrainConfig) -> tuple[float, float]:
    """Search-val accuracy of ``genotype`` (``run``'s) with the supernet's weights after ``config.epochs`` epochs of
    fine-tuning on the train half of ``holdout`` (the search's own split), and the seconds it took."""
    start = time.perf_counter()
    model = inherit_weights(run.model, genotype)
    if config.epochs == 0:
        accuracy = evaluate(model, retrain_splits(holdout, config.data.resolved_image_size)[1], run.device)[1]
    else:
        accuracy = train_from_scratch(model, config, holdout).test_acc
    return accuracy, time.perf_counter() - start


def searched_genotypes(exp: common.Experiment, args, plan: common.Budget) -> pd.DataFrame:
    """One row per distinct genotype: the searches that found it, their mean supernet search-val accuracy and the
    mean of each weight-inheritance candidate over them."""
    found: dict[str, dict] = {}
    for ratio in args.ratios:
        for lam in args.lambdas:
            for seed in args.seeds:
                label = f"r{ratio:g}-lambda{lam:g}-seed{seed}"
                run = exp.search(plan.search.with_overrides(seed=seed, keep_ratio=ratio, fairness_lambda=lam), label)
                genotype = run.genotype()
                entry = found.setdefault(genotype_key(genotype), {"genotype": genotype, "searches": [], "val": [],
                                                                  "search_s": [], "inherit": []})
                entry["searches"].append(label)
                entry["val"].append(run.history[-1].val_acc)
                entry["search_s"].append(sum(r.seconds for r in run.history))
                entry["inherit"].append({})
                holdout = search_holdout(exp.data(plan.retrain.data), seed)
                for k in args.inherit_epochs:
                    config = RetrainConfig(data=plan.retrain.data, epochs=min(k, 1) if args.smoke else k,
                                           seed=PROXY_INIT_SEED)
                    entry["inherit"][-1][f"inherit_e{k}"], entry["inherit"][-1][f"inherit_e{k}_s"] = inherited(
                        run, genotype, holdout, config)
                print(f"searched {label}: {len(found)} distinct genotypes", flush=True)
    return pd.DataFrame([{"genotype_id": key, "genotype": e["genotype"], "searches": " ".join(e["searches"]),
                          "supernet": sum(e["val"]) / len(e["val"]), "search_s": sum(e["search_s"]) / len(e["search_s"]),
                          **pd.DataFrame(e["inherit"]).mean().to_dict()}
                         for key, e in found.items()])


def score(exp: common.Experiment, args, plan: common.Budget, table: pd.DataFrame) -> pd.DataFrame:
    data = exp.data(plan.search.data)
    train, _ = search_splits(data, plan.search.data.resolved_image_size, TRUTH_SPLIT_SEED)
    batches = []
    for seed in ZERO_COST_SEEDS:  # the seed fixes the batch's images and their augmentation (torch's global RNG)
        torch.manual_seed(seed)
        batches.append(next(iter(make_loader(train, ZERO_COST_BATCH, shuffle=True, seed=seed))))
    rows = []
    for n, row in enumerate(table.itertuples()):
        record = {"genotype_id": row.genotype_id, "searches": row.searches, "supernet": row.supernet,
                  "supernet_s": 0.0, **{k: getattr(row, k) for k in table.columns if k.startswith("inherit_e")},
                  **zero_cost(row.genotype, batches, data)}
        for k, batch in args.proxies:
            config = RetrainConfig(data=plan.retrain.data, epochs=1 if args.smoke else k, batch_size=batch,
                                   seed=PROXY_INIT_SEED)
            name = proxy_name(k, batch)
            result = exp.retrain(f"{row.genotype_id}-{name}", config, row.genotype, holdout_seed=TRUTH_SPLIT_SEED)
            record[name], record[f"{name}_s"] = result["test_acc"], result["seconds"]
        start = time.perf_counter()
        epochs = plan.retrain.epochs if args.smoke else args.truth_epochs
        truths = [exp.retrain(f"{row.genotype_id}-truth" + (f"-init{seed}" if seed else ""),
                              RetrainConfig(data=plan.retrain.data, epochs=epochs, seed=seed), row.genotype,
                              holdout_seed=TRUTH_SPLIT_SEED) for seed in args.truth_seeds]
        record.update({f"truth_init{seed}": t["test_acc"] for seed, t in zip(args.truth_seeds, truths)})
        record.update(params=truths[0]["params"], macs=truths[0]["macs"], params_s=0.0, macs_s=0.0,
                      truth_val_acc=sum(t["test_acc"] for t in truths) / len(truths),
                      truth_late_gain=sum(t["late_gain"] for t in truths) / len(truths),
                      truth_s=sum(t["seconds"] for t in truths) / len(truths))
        rows.append(record)
        print(f"scored {n + 1}/{len(table)} ({time.perf_counter() - start:.0f} s for the ground truth)", flush=True)
    return pd.DataFrame(rows)


def compare(scores: pd.DataFrame, candidates: list[str], default: str, truth_seeds: list[int]) -> pd.DataFrame:
    """Kendall's tau (tau-b) and top-1 regret of each candidate against the retrained validation accuracy (the mean
    over the truth seeds; ``tau_single``: against the first seed's retraining alone). With two or more truth seeds,
    ``truth_repeat`` is the second seed's retraining as a candidate against the first's: the most a predictor of
    one retraining can be expected to reach."""
    truth, single = scores["truth_val_acc"], scores[f"truth_init{truth_seeds[0]}"]
    if len(truth_seeds) > 1:
        scores = scores.assign(truth_repeat=scores[f"truth_init{truth_seeds[1]}"], truth_repeat_s=scores["truth_s"])
        candidates = [*candidates, "truth_repeat"]
    rows = []
    for name in candidates:
        tau, p_value = kendalltau(scores[name], truth)
        picked = scores.loc[scores[name].idxmax()]
        row = {"name": name, "tau": float(tau), "p_value": float(p_value),
               "regret": float(truth.max() - picked["truth_val_acc"]),
               "tau_single": float(kendalltau(scores[name], single)[0]),
               "seconds": float(scores[f"{name}_s"].mean()), "n": len(scores), "default": name == default}
        if name in ZERO_COST:  # how much one draw (one init, one batch) alone would have ranked differently
            draws = [kendalltau(scores[f"{name}_draw{d}"], truth)[0] for d in range(len(ZERO_COST_SEEDS))]
            row.update(tau_one_draw_min=float(min(draws)), tau_one_draw_max=float(max(draws)))
        if name == "truth_repeat":  # compared with the first seed only: the mean contains the candidate itself
            row.update(tau=math.nan, p_value=math.nan, regret=float(single.max() - single[scores[name].idxmax()]))
        rows.append(row)
    return pd.DataFrame(rows)


def default_candidate() -> str:
    """The candidate the sweep's packaged default config ranks trials by."""
    config = SweepConfig.load()
    return f"proxy_e{config.proxy_epochs}" if config.objective == "proxy" else config.objective


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = parse_args(argv)
    plan = common.budget(args.smoke, args.dataset)
    default = default_candidate()
    candidates = (["supernet", "params", "macs", *ZERO_COST] + [proxy_name(k, b) for k, b in args.proxies]
                  + [f"inherit_e{k}" for k in args.inherit_epochs])
    with common.Experiment("objective", args) as exp:
        scores = score(exp, args, plan, searched_genotypes(exp, args, plan))
        summary = compare(scores, candidates, default, args.truth_seeds)
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
        for name, marker in (("supernet", "x"), (default if default in scores else candidates[-1], "o")):
            axes[0].scatter(scores[name].rank(pct=True), scores["truth_val_acc"], marker=marker, s=18, label=name)
        axes[0].set(xlabel="candidate's rank (fraction of genotypes scored lower or equal)",
                    ylabel=f"retrained val accuracy ({args.truth_epochs} epochs)")
        axes[0].legend(fontsize=8)
        axes[1].barh(summary["name"], summary["tau"], color=["C1" if d else "C0" for d in summary["default"]])
        axes[1].axvline(0, color="grey", linewidth=0.8)
        axes[1].set(xlabel="Kendall's tau with the retrained val accuracy")
        exp.write(scores, summary, fig, {
            "candidates": json.loads(summary.to_json(orient="records")), "default": default,
            "truth_epochs": args.truth_epochs, "truth_seeds": args.truth_seeds, "truth_split_seed": TRUTH_SPLIT_SEED,
            "proxy_init_seed": PROXY_INIT_SEED,
            "seconds_note": "mean wall seconds per scored genotype, 2 torch threads (CPU-seconds <= 2x this)",
        })
    return scores


if __name__ == "__main__":
    freeze_heap_at_exit()  # no final collections over torch's heap at exit (~1 s)
    main()
