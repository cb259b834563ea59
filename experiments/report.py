"""Generate the results tables of README.md and docs/*.md from the committed result files.

A figure typed by hand into a document drifts from the file it came from; a figure generated from that file cannot.
Every results table in the documents therefore sits between two marker comments,

    <!-- report:NAME -->
    ...generated table...
    <!-- /report:NAME -->

and ``TABLES[NAME]`` is the function that builds it from ``experiments/results/`` or ``benchmarks/results/``. This
script only reads those files and rewrites what lies between the markers, nothing else.

    python experiments/report.py                 # rewrite every block of README.md and docs/*.md
    python experiments/report.py --check         # exit 1 naming the stale blocks; change nothing
    python experiments/report.py --check --root DIR   # the documents under DIR (a copy); results still from here
    python experiments/report.py --show [NAME ...]    # print tables, write nothing
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
EXP = "experiments/results"
BENCH = "benchmarks/results"

# The defaults of `dasvit search` (configuration, not results): the rows that carry them are marked in the tables.
DEFAULT_KEEP_RATIO = 0.5
DEFAULT_LAMBDA = 0.5

BLOCK = re.compile(r"<!-- report:(?P<name>[A-Za-z0-9_-]+) -->\n(?P<body>.*?)<!-- /report:(?P=name) -->", re.S)
OPENING = re.compile(r"<!-- report:(?P<name>[A-Za-z0-9_-]+) -->")


# --- reading the result files ------------------------------------------------------------------------------------

@cache
def read_csv(path: str, **kwargs: Any) -> pd.DataFrame:
    """A result CSV, relative to the repository root (cached: several tables read the same file)."""
    return pd.read_csv(REPO / path, **kwargs)


@cache
def read_json(path: str) -> Any:
    """A result JSON, relative to the repository root."""
    return json.loads((REPO / path).read_text())


def exp_machine(name: str) -> str:
    """The machine an experiment ran on, as its JSON records it."""
    return read_json(f"{EXP}/{name}.json")["machine"]


def bench_machine(meta: Mapping[str, Any]) -> str:
    """The machine of a benchmark, from the ``meta``/``summary`` block of its JSON."""
    parts = [meta["device"]]
    if "torch" in meta:
        parts.append(f"torch {meta['torch']}")
    if "dtype" in meta:
        parts.append(meta["dtype"])
    return ", ".join(parts)


# --- formatting --------------------------------------------------------------------------------------------------

def pct(x: float, digits: int = 1) -> str:
    """A fraction as a percentage."""
    return f"{100 * x:.{digits}f} %"


def pm_pct(mean: float, std: float) -> str:
    """Mean +- standard deviation of fractions, as percentages."""
    return f"{100 * mean:.1f} +- {100 * std:.1f} %"


def num(x: float) -> str:
    """A count with thousands separators."""
    return f"{x:,.0f}"


def pm_num(mean: float, std: float) -> str:
    """Mean +- standard deviation of counts."""
    return f"{mean:,.0f} +- {std:,.0f}"


def mega(x: float) -> str:
    """MACs in millions."""
    return f"{x / 1e6:.2f} M"


def pm_mega(mean: float, std: float) -> str:
    """Mean +- standard deviation of MACs, in millions."""
    return f"{mean / 1e6:.2f} M +- {std / 1e6:.2f} M"


def ratio(x: float, digits: int = 2) -> str:
    """A ratio, written as a factor."""
    return f"{x:.{digits}f}x"


def points(x: float) -> str:
    """A difference of fractions, in percentage points."""
    return f"{100 * x:.1f} pt"


def sci(x: float, digits: int = 2) -> str:
    """A small number in short scientific notation (1.6e-7), larger ones with 3 significant digits."""
    if x != 0 and abs(x) < 1e-2:
        mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return f"{x:.3g}"


def ms(x: float) -> str:
    """Milliseconds."""
    return f"{x:.1f} ms"


def seconds(x: float, digits: int = 1) -> str:
    """Seconds."""
    return f"{x:.{digits}f} s"


def mem(mb: float) -> str:
    """Memory in MB, or GB above 1,000 MB."""
    return f"{mb / 1000:.2f} GB" if mb >= 1000 else f"{mb:.0f} MB"


def markdown(rows: Iterable[Mapping[str, Any]]) -> str:
    """A Markdown table of already formatted cells (no number parsing, so a cell is printed as written)."""
    return pd.DataFrame(list(rows)).to_markdown(index=False, disable_numparse=True)


def block(table: str, *, source: Iterable[str], machine: str, note: str = "") -> str:
    """A table with the line that says where its figures come from: the result files and the machine."""
    files = ", ".join(f"`{path}`" for path in source)
    line = f"Machine: {machine}. Source: {files}." + (f" {note}" if note else "")
    return f"{table}\n\n{line}\n"


# --- the README's set-up ---------------------------------------------------------------------------------------

def minutes(x: float) -> str:
    """A duration as minutes and seconds."""
    return f"{int(x // 60)} min {int(round(x % 60))} s"


def setup_times() -> str:
    """What the README's two commands cost from a clean clone, one line per command (``benchmarks/results/setup.json``,
    each run as timed)."""
    data = read_json(f"{BENCH}/setup.json")
    lines = []
    for command in data["commands"]:
        runs = command["runs"]
        total = [run["install_s"] + run["job_s"] for run in runs]
        spread = minutes(min(total)) if len(runs) == 1 else f"{minutes(min(total))} to {minutes(max(total))}"
        install = ", ".join(minutes(run["install_s"]) for run in runs)
        job = ", ".join(minutes(run["job_s"]) for run in runs)
        lines.append(f"- command {command['number']} ({command['what']}): **{spread}** in all over {len(runs)} "
                     f"run{'s' if len(runs) > 1 else ''} (set-up {install}; {command['job']} {job})")
    return "\n".join(lines) + f"\n\nMachine: {data['machine']}. Source: `{BENCH}/setup.json`. {data['note']}\n"


# --- experiments -------------------------------------------------------------------------------------------------

def robustness() -> str:
    """The default search over seeds x r x lambda: the worst case is what a user risks."""
    runs = read_csv(f"{EXP}/robustness.csv")
    rows = []
    for (r, lam), group in runs.groupby(["keep_ratio", "fairness_lambda"], sort=True):
        rows.append({
            "r": f"{r:g}" + (" (default)" if r == DEFAULT_KEEP_RATIO else ""),
            "lambda": f"{lam:g}" + (" (default)" if lam == DEFAULT_LAMBDA else ""),
            "seeds": str(len(group)),
            "min": pct(group.test_acc.min()),
            "median": pct(group.test_acc.median()),
            "max": pct(group.test_acc.max()),
            "degenerate": str(int(group.degenerate.sum())),
            "below 90 %": str(int((group.test_acc < 0.9).sum())),
            "max late_gain": points(group.late_gain.max()),
            "median params": num(group.params.median()),
        })
    return block(markdown(rows), source=[f"{EXP}/robustness.csv"], machine=exp_machine("robustness"))


def head_choice() -> str:
    """CLS head against the mean-pooled head on the same seeds: why the default head is `avg`."""
    cls = read_csv(f"{EXP}/robustness_cls.csv")
    avg = read_csv(f"{EXP}/robustness.csv")
    avg = avg[(avg["head"] == "avg") & (avg.keep_ratio == DEFAULT_KEEP_RATIO) & (avg.fairness_lambda == DEFAULT_LAMBDA)]
    rows = []
    for label, group in (("`cls`", cls), ("`avg` (default)", avg)):
        rows.append({
            "head": label, "seeds": str(len(group)),
            "min": pct(group.test_acc.min()), "median": pct(group.test_acc.median()), "max": pct(group.test_acc.max()),
            "below 90 %": str(int((group.test_acc < 0.9).sum())), "median params": num(group.params.median()),
        })
    machine = exp_machine("robustness_cls")
    return block(markdown(rows), source=[f"{EXP}/robustness_cls.csv", f"{EXP}/robustness.csv"], machine=machine)


def token_ratio() -> str:
    """Search cost and retrained accuracy against the keep ratio r."""
    runs = read_csv(f"{EXP}/token_ratio.csv")
    groups = dict(list(runs.groupby("keep_ratio")))
    full = groups[1.0].search_s.mean()
    rows = []
    for r, g in groups.items():
        label = {1.0: "1 (plain DARTS)", DEFAULT_KEEP_RATIO: f"{r:g} (default)"}.get(r, f"{r:g}")
        rows.append({
            "r": label, "seeds": str(len(g)),
            "search wall time": f"{g.search_s.mean():.0f} +- {g.search_s.std():.0f} s ({ratio(g.search_s.mean() / full)})",
            "supernet val acc": pm_pct(g.supernet_val_acc.mean(), g.supernet_val_acc.std()),
            "retrained test acc": pm_pct(g.test_acc.mean(), g.test_acc.std()),
            "params": pm_num(g.params.mean(), g.params.std()),
            "MACs": pm_mega(g.macs.mean(), g.macs.std()),
        })
    return block(markdown(rows), source=[f"{EXP}/token_ratio.csv"], machine=exp_machine("token_ratio"))


def _objective_label(candidate: dict, default: str) -> str:
    name = candidate["name"]
    match = re.fullmatch(r"proxy_e(\d+)(?:_b(\d+))?", name)
    if match:
        label = f"`proxy`, {match[1]} epochs" + (f" at batch {match[2]}" if match[2] else "")
    elif match := re.fullmatch(r"inherit_e(\d+)", name):
        label = "weight inheritance, " + (f"{match[1]} epoch(s) of fine-tuning" if int(match[1]) else "no fine-tuning")
    elif name == "truth_repeat":
        label = "another full retraining (other init seed)"
    elif candidate.get("tau_one_draw_min") is not None:  # scored over several draws at init: the zero-cost ones
        label = f"`{name}` (zero-cost, at init)"
    else:
        label = f"`{name}`"
    return label + (" (default)" if name == default else "")


def objective() -> str:
    """How well each candidate trial objective ranks genotypes by their retrained accuracy."""
    data = read_json(f"{EXP}/objective.json")
    truth = read_csv(f"{EXP}/objective.csv").truth_val_acc
    seeds = data["truth_seeds"]
    rows = [{
        "candidate": _objective_label(c, data["default"]),
        "Kendall's tau": "" if c["tau"] is None else f"{c['tau']:.2f}",  # null: not ranked against the mean
        "p": "" if c["p_value"] is None else f"{c['p_value']:.2g}",
        f"tau, init {seeds[0]} only": f"{c['tau_single']:.2f}",
        "top-1 regret": f"{100 * c['regret']:.2f} pt", "seconds per genotype": f"{c['seconds']:.1f}",
    } for c in data["candidates"]]
    rows.append({"candidate": "a random pick (expected)", "Kendall's tau": "0", "p": "", f"tau, init {seeds[0]} only": "0",
                 "top-1 regret": f"{100 * (truth.max() - truth.mean()):.2f} pt", "seconds per genotype": "0"})
    note = (f"Genotypes: {data['candidates'][0]['n']}; ground truth: the mean retrained val accuracy over init seeds "
            f"{', '.join(map(str, seeds))}, {data['truth_epochs']} epochs each. The other-init row is ranked against "
            f"init {seeds[0]} alone (its regret too).")
    return block(markdown(rows), source=[f"{EXP}/objective.json", f"{EXP}/objective.csv"],
                 machine=exp_machine("objective"), note=note)


def objective_truth() -> str:
    """The spread of the ground truth: how much there is to rank, against its measurement noise."""
    truth = read_csv(f"{EXP}/objective.csv").truth_val_acc
    q1, median, q3 = truth.quantile([0.25, 0.5, 0.75])
    rows = [{"genotypes": str(len(truth)), "min": pct(truth.min(), 2), "first quartile": pct(q1, 2),
             "median": pct(median, 2), "third quartile": pct(q3, 2), "max": pct(truth.max(), 2),
             "interquartile range": f"{100 * (q3 - q1):.2f} pt"}]
    return block(markdown(rows), source=[f"{EXP}/objective.csv"], machine=exp_machine("objective"))


SWEEP_METHODS = {
    "sweep": "default sweep, best retrained by its objective",
    "search": "one default `dasvit search`",
    "random": "random search, same wall time as the sweep",
    "cnn": "small CNN",
}


def sweep_vs_baselines() -> str:
    """The sweep against one search, random search and a CNN at equal compute: mean over the seeds."""
    data = read_json(f"{EXP}/sweep_vs_baselines.json")
    rows = [{
        "method": SWEEP_METHODS.get(method, method), "seeds": str(len(g)),
        "test accuracy": pm_pct(g.test_acc.mean(), g.test_acc.std()), "worst seed": pct(g.test_acc.min()),
        "params": pm_num(g.params.mean(), g.params.std()), "MACs": pm_mega(g.macs.mean(), g.macs.std()),
        "core-seconds": pm_num(g.cpu_seconds.mean(), g.cpu_seconds.std()),
        "candidates": "-".join(sorted({str(c) for c in (g.candidates.min(), g.candidates.max())}, key=int)),
    } for method, g in pd.DataFrame(data["rows"]).groupby("method", sort=False)]
    return block(markdown(rows), source=[f"{EXP}/sweep_vs_baselines.json"], machine=data["machine"],
                 note=f"Core-seconds: wall seconds x {data['cores']} cores.")


def sweep_vs_baselines_seeds() -> str:
    """The same comparison seed by seed: test accuracy of each method's network."""
    data = read_json(f"{EXP}/sweep_vs_baselines.json")
    table = pd.DataFrame(data["rows"]).pivot(index="seed", columns="method", values="test_acc")
    rows = [{"seed": str(seed), **{SWEEP_METHODS.get(m, m): pct(table.loc[seed, m]) for m in SWEEP_METHODS}}
            for seed in table.index]
    return block(markdown(rows), source=[f"{EXP}/sweep_vs_baselines.json"], machine=data["machine"])


def cnn_gap() -> str:
    """Seed by seed: the sweep that tunes width and depth within the small CNN's MACs, against that CNN."""
    data = read_json(f"{EXP}/cnn_gap.json")
    rows = [{
        "seed": str(r["seed"]), "sweep's network": pct(r["sweep_test_acc"]),
        "random search, same space and time": pct(r["random_test_acc"]), "small CNN": pct(r["cnn_test_acc"]),
        "gap": points(r["gap"]), f"within {points(data['gap_target'])}": "yes" if r["within_target"] else "no",
        "width x blocks": f"{r['sweep_embed_dim']} x {r['sweep_depth']}",
        "params (sweep / CNN)": f"{num(r['sweep_params'])} / {num(r['cnn_params'])}",
        "MACs (sweep / CNN)": f"{mega(r['sweep_macs'])} / {mega(r['cnn_macs'])}",
    } for r in data["rows"]]
    return block(markdown(rows), source=[f"{EXP}/cnn_gap.json"],
                 machine=data["machine"], note=f"Budget: max_macs = {num(data['max_macs'])} MACs per image.")


FASHION = f"{EXP}/fashion"
FASHION_METHODS = {
    "sweep": "Fashion-MNIST sweep, its champion",
    "hand_vit": "hand-designed ViT (depth 4, width 64)",
    "cnn": "small CNN",
}


def _mean_pm(values: pd.Series, show: Callable[[float], str], show_pm: Callable[[float, float], str]) -> str:
    """The value of one seed, or the mean +- std of several."""
    return show(values.iloc[0]) if len(values) == 1 else show_pm(values.mean(), values.std())


def fashion_sweep() -> str:
    """The Fashion-MNIST sweep's champion beside the networks a user could train instead on the same images."""
    data = read_json(f"{FASHION}/fashion_sweep.json")
    rows = [{
        "network": FASHION_METHODS.get(method, method), "seeds": str(len(g)),
        "selection accuracy": _mean_pm(g.selection_acc, pct, pm_pct),
        "test accuracy": _mean_pm(g.test_acc, pct, pm_pct),
        "params": _mean_pm(g.params, num, pm_num), "MACs": _mean_pm(g.macs, mega, pm_mega),
        "wall time": seconds(g.wall_seconds.mean(), 0),
    } for method, g in pd.DataFrame(data["rows"]).groupby("method", sort=False)]
    note = (f"{data['num_trials']} trials ({data['startup_trials']} random, then TPE), objective "
            f"`{data['objective']}`; every network retrained {data['retrain_epochs']} epochs on the protocol's "
            "10,000 study images; selection: the 10,000 held-out images; test: the official 10,000, read once. "
            "Wall time: the sweep's end to end (trials and retrainings), or one retraining's (two ran at a time).")
    return block(markdown(rows), source=[f"{FASHION}/fashion_sweep.json"], machine=data["machine"], note=note)


def search_retrain_gap() -> str:
    """Does the supernet's own accuracy rank the genotypes it finds?"""
    data = read_json(f"{EXP}/search_retrain_gap.json")
    runs = read_csv(f"{EXP}/search_retrain_gap.csv")
    rows = [{
        "genotypes": str(len(runs)), "Kendall's tau": f"{data['kendall_tau']:.2f}", "p": f"{data['p_value']:.3f}",
        "supernet val acc": f"{100 * runs.supernet_val_acc.min():.0f}-{100 * runs.supernet_val_acc.max():.0f} %",
        "retrained test acc": f"{100 * runs.test_acc.min():.1f}-{100 * runs.test_acc.max():.1f} %",
        "retraining adds": f"{100 * runs.gap.mean():.0f} +- {100 * runs.gap.std():.0f} pt",
    }]
    return block(markdown(rows), source=[f"{EXP}/search_retrain_gap.json", f"{EXP}/search_retrain_gap.csv"],
                 machine=data["machine"])


HAND, CNN, SEARCHED, MATCHED = "hand ViT", "CNN (width 16)", "DASViT (searched)", "hand ViT (params-matched)"
NETWORK_LABELS = {
    SEARCHED: "DASViT (searched)",
    HAND: "hand ViT (same depth and width)",
    MATCHED: "hand ViT (params-matched)",
    CNN: "small CNN (3 stages, width 16)",
}


def searched_vs_hand() -> str:
    """The searched genotype against the standard ViT block and a small CNN, all trained alike."""
    runs = read_csv(f"{EXP}/searched_vs_hand.csv")
    groups = dict(list(runs.groupby("model", sort=False)))
    hand = groups[HAND]
    rows = []
    for model, g in groups.items():
        params = pm_num(g.params.mean(), g.params.std()) if g.params.std() > 0 else num(g.params.mean())
        macs = pm_mega(g.macs.mean(), g.macs.std()) if g.macs.std() > 0 else mega(g.macs.mean())
        rows.append({
            "network": NETWORK_LABELS.get(model, model), "seeds": str(len(g)),
            "test accuracy": pm_pct(g.test_acc.mean(), g.test_acc.std()), "params": params, "MACs": macs,
            "params vs hand": ratio(g.params.mean() / hand.params.mean()),
            "MACs vs hand": ratio(g.macs.mean() / hand.macs.mean()),
            "late_gain": f"{100 * g.late_gain.mean():+.1f} pt",
        })
    return block(markdown(rows), source=[f"{EXP}/searched_vs_hand.csv"], machine=exp_machine("searched_vs_hand"))


def searched_vs_hand_per_seed() -> str:
    """Per seed, where the searched genotype stands between the hand ViT and the CNN."""
    runs = read_csv(f"{EXP}/searched_vs_hand.csv").pivot(index="seed", columns="model", values="test_acc")
    rows = [{
        "seed": str(seed), "DASViT": pct(row[SEARCHED]), "hand ViT": pct(row[HAND]),
        "hand ViT (params-matched)": pct(row[MATCHED]), "CNN": pct(row[CNN]),
        "DASViT - hand ViT": f"{100 * (row[SEARCHED] - row[HAND]):.1f} pt",
        "CNN - DASViT": f"{100 * (row[CNN] - row[SEARCHED]):.1f} pt",
    } for seed, row in runs.iterrows()]
    mean = runs.mean()
    closed = (mean[SEARCHED] - mean[HAND]) / (mean[CNN] - mean[HAND])
    note = f"Share of the hand-ViT-to-CNN gap (in mean test accuracy) that the search closes: {100 * closed:.0f} %."
    return block(markdown(rows), source=[f"{EXP}/searched_vs_hand.csv"], machine=exp_machine("searched_vs_hand"),
                 note=note)


def fairness() -> str:
    """What the operation-fairness coefficient lambda changes in the search."""
    runs = read_csv(f"{EXP}/fairness.csv")
    rows = []
    for lam, g in runs.groupby("fairness_lambda"):
        rows.append({
            "lambda": f"{lam:g}" + (" (default)" if lam == DEFAULT_LAMBDA else ""), "seeds": str(len(g)),
            "skip share of the supernet (end)": f"{g.skip_share.mean():.3f} +- {g.skip_share.std():.3f}",
            f"skip edges in the genotype (of {g.genotype_edges.iloc[0]})":
                f"{g.genotype_skip_edges.mean():.1f} +- {g.genotype_skip_edges.std():.1f}",
            "penalty R (end)": sci(g.fairness_penalty.mean()),
            "alpha entropy": f"{g.alpha_entropy.mean():.3f}",
            "supernet val acc": pm_pct(g.val_acc.mean(), g.val_acc.std()),
        })
    return block(markdown(rows), source=[f"{EXP}/fairness.csv"], machine=exp_machine("fairness"))


DATASET_LABELS = {"mnist5k": "MNIST 28x28", "digits": "8x8 digits"}


def transfer() -> str:
    """A genotype searched on one data set and retrained on another, against one searched on the target."""
    runs = read_csv(f"{EXP}/transfer.csv")
    rows = []
    for (target, source, moved), g in runs.groupby(["target", "searched_on", "transferred"], sort=False):
        rows.append({
            "target": DATASET_LABELS.get(target, target),
            "searched on": DATASET_LABELS.get(source, source) + (" (transferred)" if moved else ""),
            "seeds": str(len(g)), "test accuracy": pm_pct(g.test_acc.mean(), g.test_acc.std()),
            "params": pm_num(g.params.mean(), g.params.std()), "MACs": pm_mega(g.macs.mean(), g.macs.std()),
        })
    return block(markdown(rows), source=[f"{EXP}/transfer.csv"], machine=exp_machine("transfer"))


def random_search() -> str:
    """DASViT against random search given the same wall time."""
    runs = read_csv(f"{EXP}/random_search.csv")
    rows = []
    for method, g in runs.groupby("method", sort=False):
        evaluated = "1 (by gradient)" if method == "DASViT" else f"{g.candidates.mean():.1f} +- {g.candidates.std():.1f}"
        rows.append({
            "method": method, "seeds": str(len(g)), "test accuracy": pm_pct(g.test_acc.mean(), g.test_acc.std()),
            "params": pm_num(g.params.mean(), g.params.std()), "MACs": pm_mega(g.macs.mean(), g.macs.std()),
            "genotypes evaluated": evaluated,
        })
    return block(markdown(rows), source=[f"{EXP}/random_search.csv"], machine=exp_machine("random_search"))


def random_search_per_seed() -> str:
    """Per seed: the time allowed and both final accuracies, since the means lie within the spread."""
    runs = read_csv(f"{EXP}/random_search.csv")
    rows = []
    for seed, g in runs.groupby("seed"):
        by = g.set_index("method")
        rows.append({
            "seed": str(seed), "time allowed (DASViT's search wall time)": seconds(by.loc["DASViT", "search_s"], 0),
            "DASViT": pct(by.loc["DASViT", "test_acc"]), "random search": pct(by.loc["random search", "test_acc"]),
            "random genotypes drawn": str(by.loc["random search", "candidates"]),
        })
    return block(markdown(rows), source=[f"{EXP}/random_search.csv"], machine=exp_machine("random_search"))


def search_cost() -> str:
    """Wall time and step memory of each stage of the progressive search."""
    runs = read_csv(f"{EXP}/search_cost.csv")
    data = read_json(f"{EXP}/search_cost.json")
    rows = []
    for stage, g in runs.groupby("stage"):
        peak = g.step_peak_mb.std()
        state = g.weights_grads_adam_mb.std()
        rows.append({
            "stage": str(stage), "depth": f"{g.depth.iloc[0]:.0f}", "ops per edge": f"{g.ops_per_edge.iloc[0]:.0f}",
            "epochs": f"{g.epochs.iloc[0]:.0f}", "wall time": f"{g.seconds.mean():.1f} +- {g.seconds.std():.1f} s",
            "step peak memory": f"{g.step_peak_mb.mean():.1f}" + (f" +- {peak:.1f}" if peak > 0 else "") + " MB",
            "weights + grads + AdamW state": f"{g.weights_grads_adam_mb.mean():.1f}"
                                             + (f" +- {state:.1f}" if state > 0 else "") + " MB",
        })
    epochs = runs.groupby("stage").epochs.first().sum()
    rows.append({"stage": "total", "depth": "", "ops per edge": "", "epochs": f"{epochs:.0f}",
                 "wall time": f"{data['total_seconds_mean']:.1f} +- {data['total_seconds_std']:.1f} s",
                 "step peak memory": "", "weights + grads + AdamW state": ""})
    return block(markdown(rows), source=[f"{EXP}/search_cost.csv", f"{EXP}/search_cost.json"],
                 machine=data["machine"], note=f"Seeds: {runs.seed.nunique()}.")


DIVERGENCE_STEPS = (1, 10, 94, 186)


def fused_divergence_steps() -> str:
    """Seed 2, first stage: eager vs fused next to eager vs eager nudged by one ulp, step by step."""
    trace = read_csv(f"{EXP}/fused_divergence_seed2.csv")
    rows = []
    for pair, g in trace.groupby("pair", sort=False):
        by_step = g.set_index("step").alpha_rel_diff
        rows.append({"pair": pair, **{f"step {s}": sci(by_step[s], 3) for s in DIVERGENCE_STEPS}})
    data = read_json(f"{EXP}/fused_divergence_seed2.json")
    return block(markdown(rows), source=[f"{EXP}/fused_divergence_seed2.csv"],
                 machine=f"x86_64 CPU, torch {data['torch']}",
                 note="Cells: the largest relative difference of the two runs' alphas after the step.")


def fused_divergence_search() -> str:
    """Whole searches of both pairs: does a one-ulp nudge change the genotype as the fused path does?"""
    rows = []
    for seed in (2, 3):
        data = read_json(f"{EXP}/fused_divergence_seed{seed}.json")
        for pair, result in data["whole_search"].items():
            epochs = pd.DataFrame(result["epochs"])
            last = epochs[epochs.stage == epochs.stage.max()]
            pruned = epochs.dropna(subset=["edges_pruned_differently"])
            alpha = last.alpha_rel_diff.dropna()
            ids = result.get("genotype_ids")
            rows.append({
                "seed": str(seed), "pair": pair, "same genotype": "yes" if result["same_genotype"] else "no",
                "genotype ids": " / ".join(f"`{i}`" for i in ids) if ids else "",
                "edges pruned differently (stage 2, stage 3)":
                    ", ".join(f"{n:.0f}" for n in pruned.edges_pruned_differently),
                "op masks of the last stage": "same" if last.same_op_masks.all() else "differ",
                "largest alpha difference, last stage": sci(alpha.max()) if len(alpha) else "(other op masks)",
            })
    torch = read_json(f"{EXP}/fused_divergence_seed2.json")["torch"]
    return block(markdown(rows), source=[f"{EXP}/fused_divergence_seed2.json", f"{EXP}/fused_divergence_seed3.json"],
                 machine=f"x86_64 CPU, torch {torch}")


# --- benchmarks --------------------------------------------------------------------------------------------------

TOKEN_SELECTION_FILES = ("token_selection_cpu", "token_selection_cpu_b128", "token_selection_cuda_default",
                         "token_selection_cuda_vits224", "token_selection_cuda_vits224_b256")


def _setting(meta: Mapping[str, Any]) -> str:
    return f"{meta['image_size']} px, patch {meta['patch_size']}, D {meta['embed_dim']}, batch {meta['batch_size']}"


def token_selection() -> str:
    """Time, memory and FLOPs of one search step at each keep ratio, relative to r = 1, on every machine measured."""
    rows = []
    for name in TOKEN_SELECTION_FILES:
        data = read_json(f"{BENCH}/{name}.json")
        meta = data["meta"]
        by_r = {row["keep_ratio"]: row for row in data["rows"] if row.get("path", "eager") == "eager"}
        full = by_r[1.0]
        share = full.get("fraction_of_matmul_peak")
        rows.append({
            "setting": _setting(meta), "machine": bench_machine(meta),
            "r = 0.125 time / mem": f"{ratio(by_r[0.125]['time_vs_r1'])} / {ratio(by_r[0.125]['mem_vs_r1'])}",
            "r = 0.25 time / mem / FLOPs": f"{ratio(by_r[0.25]['time_vs_r1'])} / {ratio(by_r[0.25]['mem_vs_r1'])} / "
                                           f"{ratio(by_r[0.25]['flop_vs_r1'])}",
            "r = 0.5 time / mem": f"{ratio(by_r[0.5]['time_vs_r1'])} / {ratio(by_r[0.5]['mem_vs_r1'])}",
            "r = 1 step": f"{full['step_ms']:.0f} ms, {mem(full['peak_mem_mb'])}",
            "r = 1 share of matmul peak": pct(share, 2) if share is not None else "",
        })
    sources = [f"{BENCH}/{name}.json" for name in TOKEN_SELECTION_FILES]
    return block(markdown(rows), source=sources, machine="per row",
                 note="Time: median step; memory: peak allocated during the step; both relative to r = 1 in the same run.")


def token_selection_threads() -> str:
    """Eager and fused paths with 1 thread (a sweep worker) and 2 threads (`dasvit search`)."""
    rows = []
    machines = []
    for threads in (1, 2):
        data = read_json(f"{BENCH}/token_selection_cpu_threads{threads}.json")
        machines.append(bench_machine(data["meta"]))
        step = {(row["path"], row["keep_ratio"]): row for row in data["rows"]}
        cell = {path: f"{ratio(step[path, 0.25]['time_vs_r1'])} ({ms(step[path, 0.25]['step_ms'])} / "
                      f"{ms(step[path, 1.0]['step_ms'])})" for path in ("eager", "fused")}
        rows.append({
            "torch threads": str(threads), "eager r = 0.25 / r = 1": cell["eager"], "fused r = 0.25 / r = 1": cell["fused"],
            "fused speed vs eager at r = 0.25": ratio(step["fused", 0.25]["speedup_vs_eager"]),
            "fused speed vs eager at r = 1": ratio(step["fused", 1.0]["speedup_vs_eager"]),
        })
    sources = [f"{BENCH}/token_selection_cpu_threads{t}.json" for t in (1, 2)]
    return block(markdown(rows), source=sources, machine="; ".join(machines),
                 note="Speed vs eager above 1x: the fused step is faster.")


def compiled_step() -> str:
    """The step through torch.compile's inductor against eager on CPU, compile time included."""
    runs = read_csv(f"{BENCH}/token_selection_cpu_compiled.csv")
    meta = read_json(f"{BENCH}/token_selection_cpu_compiled.json")["meta"]
    rows = []
    for path, g in runs.groupby("path", sort=False):
        by_r = g.set_index("keep_ratio")
        rows.append({
            "path": path,
            "r = 0.25 step (speed vs eager)": f"{ms(by_r.step_ms[0.25])} ({ratio(by_r.speedup_vs_eager[0.25])})",
            "r = 1 step (speed vs eager)": f"{ms(by_r.step_ms[1.0])} ({ratio(by_r.speedup_vs_eager[1.0])})",
            "r = 0.25 / r = 1": ratio(by_r.time_vs_r1[0.25]),
            "first step, r = 0.25 / r = 1 (compiles)": f"{by_r.first_step_s[0.25]:.2f} / {by_r.first_step_s[1.0]:.2f} s",
        })
    return block(markdown(rows), source=[f"{BENCH}/token_selection_cpu_compiled.csv"], machine=bench_machine(meta),
                 note=f"Setting: {_setting(meta)}.")


def scaling() -> str:
    """Search-step throughput with 1 and 2 data-parallel Ray Train workers, and in-process for reference."""
    runs = read_csv(f"{BENCH}/scaling.csv")
    meta = read_json(f"{BENCH}/scaling.json")["meta"]
    order = runs.assign(ray=~runs.setup.str.startswith("Ray")).sort_values(["ray", "workers"]).index
    rows = [{"setup": row.setup, "images/s": f"{row.images_per_s:.0f}", "vs 1 Ray worker": ratio(row.speedup_vs_1_worker)}
            for row in runs.loc[order].itertuples()]
    by = runs.set_index("setup").images_per_s
    two_workers = by[by.index.str.startswith("Ray Train, 2")].iloc[0]
    two_threads = by[by.index.str.startswith("in-process, 2")].iloc[0]
    note = (f"2 Ray workers against one process with 2 threads: {ratio(two_workers / two_threads)}. "
            f"Config: {meta['config']}, batch {meta['batch_per_worker']} per worker, 1 CPU and 1 torch thread per worker.")
    return block(markdown(rows), source=[f"{BENCH}/scaling.csv"], machine=f"{meta['device']}, 2 cores", note=note)


OVERHEAD_FILES = ("ray_overhead", "ray_overhead_2workers")


def _layout(summary: Mapping[str, Any]) -> str:
    workers, cpus = summary["workers_per_trial"], summary["cpus_per_worker"]
    return f"{workers} worker{'s' if workers > 1 else ''} x {cpus} CPU{'s' if cpus > 1 else ''}"


def ray_overhead() -> str:
    """The same trials through the full Ray sweep and one after another in-process."""
    rows = []
    for name in OVERHEAD_FILES:
        s = read_json(f"{BENCH}/{name}.json")["summary"]
        rows.append({
            "trial layout": _layout(s), "trials x epochs": f"{s['trials']} x {s['epochs_per_trial']}",
            "sweep wall": seconds(s["sweep_s"]), "in-process wall": seconds(s["inprocess_s"]),
            "ratio": ratio(s["ratio"]), "overhead per trial": seconds(s["overhead_per_trial_s"]),
            "empty Train trial": seconds(s["empty_train_trial_s"]), "Ray start": seconds(s["ray_start_s"]),
            "trial driver import": seconds(s["trial_driver_import_s"]),
            "Train worker import": seconds(s["trial_worker_import_s"]),
        })
    machine = read_json(f"{BENCH}/{OVERHEAD_FILES[0]}.json")["summary"]["device"]
    note = ("Imports, in a fresh interpreter: `dasvit.platform.trial` (what a trial's driver imports), and that plus "
            "`dasvit.platform.trial_worker` (what each Train worker imports).")
    sources = [f"{BENCH}/{name}.json" for name in OVERHEAD_FILES]
    return block(markdown(rows), source=sources, machine=machine, note=note)


def sweep_load() -> str:
    """Concurrent trials against one tracking server: what reached it, and what the load cost."""
    data = read_json(f"{BENCH}/sweep_load.json")
    rows = [{
        "trials at a time": str(level["concurrent"]), "trials": str(level["trials"]),
        "epoch points": str(level["points"]), "missing": str(level["missing_runs"] + level["missing_points"]
                                                           + level["missing_artifacts"]),
        "duplicated": str(level["duplicate_points"]), "RUNNING left": str(level["running"]),
        "server errors": str(level["server_errors"] + level["probe_errors"]),
        "write latency median / p95": f"{ms(level['write_latency_median_ms'])} / "
                                      f"{ms(level['write_latency_p95_ms'])}",
        "wall per trial": seconds(level["wall_per_trial_s"]),
        "worker-group start": seconds(level["mean_worker_group_start_s"]),
        "MLflow logging per trial": seconds(level["mean_mlflow_logging_s"]),
    } for level in data["levels"]]
    note = (f"In all: {data['missing']} missing, {data['running']} left RUNNING, {data['errors']} server or probe "
            f"errors, {data['failed_sweeps']} failed sweeps.")
    return block(markdown(rows), source=[f"{BENCH}/sweep_load.json"], machine=data["machine"], note=note)


def _overhead_parts(s: Mapping[str, Any]) -> dict[str, float]:
    parts = s["parts_per_trial_s"]
    small = parts["checkpointing"] + parts["genotype_size"] + parts["report"] + parts["model_build"]
    named = {
        "search epochs run slower inside Ray": parts["search_epochs"] - s["mean_trial_inprocess_s"],
        "worker-group start, the workers' imports included": parts["worker_group_start"],
        "MLflow logging": parts["mlflow_logging"],
        "worker-group teardown": parts["teardown"],
        "Ray start, shared by the trials": s["ray_start_s"] / s["trials"],
        "data in the worker (`ray.get` of the sweep's copy)": parts["data_loading"],
        "checkpointing, genotype sizing, reports, model build": small,
    }
    named["not attributed (Tune's trial start, the trial driver, bookkeeping)"] = (
        s["overhead_per_trial_s"] - sum(named.values()))
    return named


def ray_overhead_parts() -> str:
    """Where each trial's overhead goes, from the `overhead_*_s` metrics its MLflow run logs."""
    summaries = [read_json(f"{BENCH}/{name}.json")["summary"] for name in OVERHEAD_FILES]
    parts = [_overhead_parts(s) for s in summaries]
    rows = [{"part": part, **{f"seconds per trial, {_layout(s)}": f"{p[part]:.2f}" for s, p in zip(summaries, parts)}}
            for part in parts[0]]
    rows.append({"part": "total overhead per trial",
                 **{f"seconds per trial, {_layout(s)}": f"{s['overhead_per_trial_s']:.2f}" for s in summaries}})
    return block(markdown(rows), source=[f"{BENCH}/{name}.json" for name in OVERHEAD_FILES],
                 machine=summaries[0]["device"])


def ray_overhead_trials() -> str:
    """Each trial's val accuracy in-process and through the sweep: same search, same result (1 worker)."""
    frames = {name: read_csv(f"{BENCH}/{name}.csv") for name in OVERHEAD_FILES}
    base = frames[OVERHEAD_FILES[0]]
    rows = []
    for row in base.itertuples():
        cells = {"lambda": f"{row.fairness_lambda:.3f}", "r": f"{row.keep_ratio:.3f}",
                 "in-process val acc": f"{row.inprocess_val_acc:.4f}"}
        for name in OVERHEAD_FILES:
            layout = _layout(read_json(f"{BENCH}/{name}.json")["summary"])
            other = frames[name]
            match = other[(other.fairness_lambda == row.fairness_lambda) & (other.keep_ratio == row.keep_ratio)]
            cells[f"sweep val acc, {layout}"] = f"{match.sweep_val_acc.iloc[0]:.4f}"
        rows.append(cells)
    machine = read_json(f"{BENCH}/{OVERHEAD_FILES[0]}.json")["summary"]["device"]
    return block(markdown(rows), source=[f"{BENCH}/{name}.csv" for name in OVERHEAD_FILES], machine=machine)


PROCESS_ROLES = {
    "ImplicitFunc": "Tune's trainable (`ImplicitFunc`, runs the trial)",
    "_QueueActor": "Tune's report queue (`_QueueActor`)",
    "TrainController": "Ray Train's controller (`TrainController`)",
    "_AutoscalingCoordinatorActor": "autoscaling coordinator (one per local Ray)",
    "PlacementGroupCleaner": "placement-group cleaner",
    "SynchronizationActor": "synchronisation actor",
    "RayTrainWorker": "a Train worker (`RayTrainWorker`)",
    "DatasetManager": "dataset manager",
}


def ray_train_floor() -> str:
    """The processes an empty Ray Train trial starts, one after another: why a trial has a fixed cost."""
    s = read_json(f"{BENCH}/ray_overhead_2workers.json")["summary"]
    rows = [{
        "process": PROCESS_ROLES.get(p["role"], p["role"]), "appeared": f"{p['appeared_s']:.2f}",
        "began its actor's work": f"{p['working_s']:.2f}",
        "ended": f"{p['ended_s']:.2f}" if p["ended_s"] is not None else "stays",
    } for p in s["empty_trial_processes"]]
    note = f"Seconds from the trial's submission; the empty trial ({_layout(s)}) took {s['empty_train_trial_s']:.1f} s."
    return block(markdown(rows), source=[f"{BENCH}/ray_overhead_2workers.json"], machine=s["device"], note=note)


def _process_group(role: str) -> str:
    if role.startswith("ray-dashboard-"):
        return "the dashboard's head processes (`ray-dashboard-*`)"
    return f"`{role}`"


def exit_after_sigterm() -> str:
    """A sweep stopped by SIGTERM during retraining: when it reacts, exits, and when each of its processes is gone."""
    data = read_json(f"{BENCH}/exit_after_sigterm_cpu.json")
    events = [
        {"event": "the sweep prints that SIGTERM arrived", "seconds after SIGTERM": f"{data['to_interrupt_line_s']:.2f}"},
        {"event": "the sweep prints its resume command", "seconds after SIGTERM": f"{data['to_resume_line_s']:.2f}"},
        {"event": f"the driver exits (code {data['returncode']})", "seconds after SIGTERM": f"{data['to_exit_s']:.2f}"},
        {"event": "every process of the sweep is gone", "seconds after SIGTERM": f"{data['all_gone_s']:.2f}"},
    ]
    samples = data["samples"]
    last_seen: dict[str, int] = {}
    counts: dict[str, int] = {}
    for index, sample in enumerate(samples):
        for role in sample["alive"]:
            if role == "(exiting)":
                continue
            group = _process_group(role)
            last_seen[group] = index
            counts[group] = max(counts.get(group, 0), sum(v for r, v in sample["alive"].items()
                                                           if _process_group(r) == group))
    processes = [{
        "processes": f"{group} x {counts[group]}" if counts[group] > 1 else group,
        "last seen alive (s)": f"{samples[index]['t']:.2f}",
        "gone at (s)": f"{samples[index + 1]['t']:.2f}" if index + 1 < len(samples) else "after the last sample",
    } for group, index in sorted(last_seen.items(), key=lambda item: (item[1], item[0]))]
    note = "Processes are sampled at the times shown; a process is gone at the first sample that lacks it."
    return block(f"{markdown(events)}\n\n{markdown(processes)}", source=[f"{BENCH}/exit_after_sigterm_cpu.json"],
                 machine="x86_64 CPU, 2 cores", note=note)


def vit_b_memory() -> str:
    """The paper's memory claim at ViT-B scale: step memory against r, and the largest batch that fits."""
    data = read_json(f"{BENCH}/vit_b_memory_cuda.json")
    rows = sorted(data["rows"], key=lambda row: -row["keep_ratio"])
    full = next(row for row in rows if row["keep_ratio"] == 1.0)
    columns = [("1 (plain DARTS)" if row["keep_ratio"] == 1.0 else f"{row['keep_ratio']:g}", row) for row in rows]
    table = [
        {"r": "peak step memory, batch 64", **{c: mem(row["peak_mem_mb"]) for c, row in columns}},
        {"r": "vs r = 1", **{c: ratio(row["peak_mem_mb"] / full["peak_mem_mb"]) for c, row in columns}},
        {"r": "step time, batch 64", **{c: ms(row["step_ms"]) for c, row in columns}},
        {"r": "largest batch that fits", **{c: f"{row['largest_batch']:.0f}" if row.get("largest_batch") else ""
                                            for c, row in columns}},
    ]
    meta = data["meta"]
    note = (f"Setting: {meta['image_size']} px, patch {meta['patch_size']}, D {meta['embed_dim']}, depth {meta['depth']}, "
            f"all {len(meta['ops'])} default ops on every edge, {meta['data']}; GPU memory "
            f"{meta['device_memory_gb']:.1f} GiB.")
    return block(markdown(table), source=[f"{BENCH}/vit_b_memory_cuda.json"], machine=bench_machine(meta), note=note)


def gpu_step_d384() -> str:
    """Eager and fused steps at r = 1 and r = 0.25 on the GPU at 224 px, D 384."""
    data = read_json(f"{BENCH}/token_selection_cuda_d384.json")
    step = {(row["path"], row["keep_ratio"]): row for row in data["rows"]}
    rows = [{
        "setting": _setting(data["meta"]), "eager r = 1": ms(step["eager", 1.0]["step_ms"]),
        "fused r = 1": f"{ms(step['fused', 1.0]['step_ms'])} ({ratio(step['fused', 1.0]['speedup_vs_eager'])} speed)",
        "eager r = 0.25": ms(step["eager", 0.25]["step_ms"]), "fused r = 0.25": ms(step["fused", 0.25]["step_ms"]),
        "r = 0.25 / r = 1": f"eager {ratio(step['eager', 0.25]['time_vs_r1'])}, "
                            f"fused {ratio(step['fused', 0.25]['time_vs_r1'])}",
        "memory r = 0.25 / r = 1": f"eager {ratio(step['eager', 0.25]['mem_vs_r1'])}, "
                                   f"fused {ratio(step['fused', 0.25]['mem_vs_r1'])}",
    }]
    return block(markdown(rows), source=[f"{BENCH}/token_selection_cuda_d384.json"], machine=bench_machine(data["meta"]))


def gpu_step_vitb() -> str:
    """How much of the card's matmul peak a ViT-B-width search step uses."""
    data = read_json(f"{BENCH}/token_selection_cuda_vitb.json")
    meta = data["meta"]
    rows = [{
        "setting": _setting(meta), "path, r": f"{row['path']}, r = {row['keep_ratio']:g}",
        "step": ms(row["step_ms"]), "TFLOP per step": f"{row['step_gflop'] / 1000:.1f}",
        "achieved": f"{row['achieved_tflops']:.0f} TFLOP/s",
        "bf16 matmul peak (same run)": f"{meta['matmul_peak_tflops']:.0f} TFLOP/s",
        "share of peak": pct(row["fraction_of_matmul_peak"]),
    } for row in data["rows"]]
    return block(markdown(rows), source=[f"{BENCH}/token_selection_cuda_vitb.json"], machine=bench_machine(meta))


def search_cost_cifar() -> str:
    """Seconds per epoch of each search stage at CIFAR-10 scale, and the GPU-hours of whole searches."""
    data = read_json(f"{BENCH}/search_cost_cifar_cuda.json")
    s = data["summary"]
    stages = [{"stage": str(row["stage"]), "depth": str(row["depth"]), "ops per edge": str(row["ops_per_edge"]),
               "epochs (default)": str(row["default_epochs"]), "seconds per epoch": f"{row['seconds_per_epoch']:.1f}"}
              for row in data["rows"]]
    hours = [
        {"search": "DASViT, default schedule (3 x 3 epochs), measured",
         "GPU-hours": f"{s['default_search_hours']:.3f} ({60 * s['default_search_hours']:.1f} min)"},
        {"search": "DASViT, 50 epochs, projected", "GPU-hours": f"{s['darts_length_search_hours']:.2f}"},
        *({"search": f"{name}, as published", "GPU-hours": f"{value:g}"} for name, value in s["prior_gpu_hours"].items()),
    ]
    note = f"Data: {s['data']}, {s['images']:,} images, batch {s['batch_size']}, fused op."
    return block(f"{markdown(stages)}\n\n{markdown(hours)}", source=[f"{BENCH}/search_cost_cifar_cuda.json"],
                 machine=bench_machine(s), note=note)


GPU_SWEEP_RUNS = ("run1_4trials", "run2_2trials")


def _gpu_util(run: str) -> pd.DataFrame:
    util = read_csv(f"{EXP}/gpu_sweep/{run}/gpu_util.csv", skipinitialspace=True)
    return pd.DataFrame({
        "util": pd.to_numeric(util["utilization.gpu [%]"].str.rstrip(" %")),
        "memory": pd.to_numeric(util["memory.used [MiB]"].str.rstrip(" MiB")),
    })


def gpu_sweep() -> str:
    """The sweep on one GPU: what finished under the time limit, how its runs ended, and how busy the GPU was."""
    rows = []
    for run in GPU_SWEEP_RUNS:
        runs = read_csv(f"{EXP}/gpu_sweep/{run}/mlflow_runs.csv")
        sweep = runs[~runs.run.str.startswith(("search_trial", "retrain"))]
        trials = runs[runs.run.str.startswith("search_trial")]
        retrains = runs[runs.run.str.startswith("retrain")]
        finished = trials[trials.status_tag == "finished"]
        util = _gpu_util(run)
        busy = util[util.memory > 0]
        statuses = ", ".join(f"{n} {status}" for status, n in trials.mlflow_status.value_counts().items())
        rows.append({
            "run": run, "search trials in MLflow": f"{len(trials)} ({statuses})",
            "finished trials: seconds (MLflow), val acc": "; ".join(
                f"{row.seconds:.1f} s, {row.val_acc:.3f}" for row in finished.itertuples()),
            "retrainings": ", ".join(f"{row.mlflow_status} after {row.seconds:.1f} s"
                                     for row in retrains.itertuples()) or "none started",
            "sweep run": ", ".join(f"{row.mlflow_status}" + (f" (`status={row.status_tag}`)"
                                                             if isinstance(row.status_tag, str) else "")
                                   for row in sweep.itertuples()),
            "GPU utilisation: mean / while memory in use / max":
                f"{util.util.mean():.1f} % / {busy.util.mean():.1f} % / {util.util.max():.0f} %",
        })
    env = (REPO / EXP / "gpu_sweep" / GPU_SWEEP_RUNS[0] / "env.txt").read_text().splitlines()
    versions = next(line for line in env if "+cu" in line).split()
    machine = f"{' '.join(versions[2:])}, torch {versions[0]}"
    note = "GPU utilisation sampled by `nvidia-smi` once a second."
    sources = [f"{EXP}/gpu_sweep/{run}/{name}" for run in GPU_SWEEP_RUNS for name in ("mlflow_runs.csv", "gpu_util.csv")]
    return block(markdown(rows), source=sources, machine=machine, note=note)


# --- the README's headline -----------------------------------------------------------------------------------------

def _row(measurement: str, result: str, machine: str, command: str, details: str) -> dict[str, str]:
    return {"measurement": measurement, "result": result, "machine": machine, "command": command, "details": details}


def _headline_searches() -> list[dict[str, str]]:
    """What the searches hand back on the digits: the sweep, the sweep within the CNN's MACs, one search, the
    hand-designed ViT, the small CNN, random search."""
    versus = read_json(f"{EXP}/sweep_vs_baselines.json")
    sweep = pd.DataFrame(versus["rows"]).query("method == 'sweep'")
    gap_data = read_json(f"{EXP}/cnn_gap.json")
    gap = pd.DataFrame(gap_data["rows"])
    hand_runs = read_csv(f"{EXP}/searched_vs_hand.csv")
    hand = hand_runs.groupby("model").test_acc.agg(["mean", "std"])
    rand = read_csv(f"{EXP}/random_search.csv").groupby("method").test_acc.agg(["mean", "std"])
    exp_cpu, compare = exp_machine("searched_vs_hand"), "`python experiments/searched_vs_hand.py`"
    vs_hand = "[searched vs hand vs CNN](docs/results.md#searched-vs-hand-designed-vs-cnn)"
    return [
        _row(f"default sweep (the main command): best network, retrained, test accuracy over {len(sweep)} seeds",
             f"{pm_pct(sweep.test_acc.mean(), sweep.test_acc.std())}, worst seed {pct(sweep.test_acc.min())}",
             versus["machine"], "`python experiments/sweep_vs_baselines.py`",
             "[sweep vs alternatives](docs/results.md#sweep-against-the-alternatives-at-equal-compute)"),
        _row(f"sweep tuning width and depth within the small CNN's MACs, test accuracy over {len(gap)} seeds",
             f"{pm_pct(gap.sweep_test_acc.mean(), gap.sweep_test_acc.std())}, within "
             f"{points(gap_data['gap_target'])} of the CNN on {int(gap.within_target.sum())} of {len(gap)}",
             gap_data["machine"], "`python experiments/cnn_gap.py`",
             "[width and depth](docs/results.md#width-and-depth-within-the-cnns-macs)"),
        _row(f"searched genotype (one `dasvit search`), test accuracy over {hand_runs.seed.nunique()} seeds",
             pm_pct(hand.loc[SEARCHED, "mean"], hand.loc[SEARCHED, "std"]), exp_cpu, compare, vs_hand),
        _row("hand-designed ViT, same depth and width", pm_pct(hand.loc[HAND, "mean"], hand.loc[HAND, "std"]),
             exp_cpu, compare, vs_hand),
        _row("small CNN", pm_pct(hand.loc[CNN, "mean"], hand.loc[CNN, "std"]), exp_cpu, compare, vs_hand),
        _row("random search given the search's wall time",
             pm_pct(rand.loc["random search", "mean"], rand.loc["random search", "std"]),
             exp_machine("random_search"), "`python experiments/random_search.py`",
             "[random search](docs/results.md#searched-vs-random-search-at-the-same-compute)"),
    ]


def _headline_costs() -> list[dict[str, str]]:
    """What the method and the platform cost: token selection on CPU and at ViT-B scale, the GPU step, a search
    at CIFAR scale, Ray's overhead, the tracking server under load."""
    cpu = read_json(f"{BENCH}/token_selection_cpu.json")
    quarter = next(row for row in cpu["rows"] if row["keep_ratio"] == 0.25)
    vitb = read_json(f"{BENCH}/vit_b_memory_cuda.json")
    vitb_rows = {row["keep_ratio"]: row for row in vitb["rows"]}
    peak = read_json(f"{BENCH}/token_selection_cuda_vitb.json")
    cifar = read_json(f"{BENCH}/search_cost_cifar_cuda.json")["summary"]
    overhead = read_json(f"{BENCH}/ray_overhead_2workers.json")["summary"]
    load = read_json(f"{BENCH}/sweep_load.json")
    busiest = max(load["levels"], key=lambda level: level["concurrent"])
    return [
        _row("token selection, r = 0.25 vs r = 1: time / memory of a search step (default config)",
             f"{ratio(quarter['time_vs_r1'])} / {ratio(quarter['mem_vs_r1'])}", bench_machine(cpu["meta"]),
             "`python benchmarks/token_selection.py`", "[token-selection cost](docs/results.md#token-selection-cost)"),
        _row("token selection at ViT-B scale (224 px, D 768), r = 0.25 vs r = 1: step memory",
             ratio(vitb_rows[0.25]["peak_mem_mb"] / vitb_rows[1.0]["peak_mem_mb"]), bench_machine(vitb["meta"]),
             "`python benchmarks/vit_b_memory.py --device cuda --dtype bf16 --repeats 3 --max-batch-limit 2048`",
             "[memory at ViT-B scale](docs/results.md#the-papers-memory-claim-at-vit-b-scale)"),
        _row("ViT-B-width search step (batch 256, r = 1, fused): share of the bf16 matmul peak",
             pct(peak["rows"][0]["fraction_of_matmul_peak"]), bench_machine(peak["meta"]),
             "see [the GPU step](docs/results.md#the-gpu-step)", "[the GPU step](docs/results.md#the-gpu-step)"),
        _row("default search at CIFAR-10 scale (synthetic images, timing only)",
             f"{cifar['default_search_hours']:.3f} GPU-hours", bench_machine(cifar),
             "`python benchmarks/search_cost_cifar.py --device cuda --dtype bf16 --fused --steps 30`",
             "[search cost at CIFAR scale](docs/results.md#search-cost-at-cifar-scale-projected)"),
        _row("default sweep's trials against the same searches run in-process",
             f"{ratio(overhead['ratio'])} wall time", overhead["device"],
             "`python benchmarks/ray_overhead.py --workers 2 --tag ray_overhead_2workers`",
             "[Ray overhead](docs/results.md#ray-overhead)"),
        _row(f"tracking server under load: {busiest['trials']} trials, {busiest['concurrent']} at a time, "
             "each logging every epoch",
             f"{load['missing']} of {sum(level['points'] for level in load['levels'])} epoch points missing, "
             f"write p95 {ms(busiest['write_latency_p95_ms'])}", load["machine"], "`python benchmarks/sweep_load.py`",
             "[server under load](docs/results.md#the-tracking-server-under-load)"),
    ]


def headline() -> str:
    """The few figures a new user needs, each from its result file, with the command that reproduces it."""
    return markdown(_headline_searches() + _headline_costs()) + "\n"


TABLES: dict[str, Callable[[], str]] = {
    "headline": headline,
    "robustness": robustness,
    "head_choice": head_choice,
    "token_ratio": token_ratio,
    "objective": objective,
    "objective_truth": objective_truth,
    "sweep_vs_baselines": sweep_vs_baselines,
    "sweep_vs_baselines_seeds": sweep_vs_baselines_seeds,
    "cnn_gap": cnn_gap,
    "fashion_sweep": fashion_sweep,
    "search_retrain_gap": search_retrain_gap,
    "searched_vs_hand": searched_vs_hand,
    "searched_vs_hand_per_seed": searched_vs_hand_per_seed,
    "fairness": fairness,
    "transfer": transfer,
    "random_search": random_search,
    "random_search_per_seed": random_search_per_seed,
    "search_cost": search_cost,
    "fused_divergence_steps": fused_divergence_steps,
    "fused_divergence_search": fused_divergence_search,
    "token_selection": token_selection,
    "token_selection_threads": token_selection_threads,
    "compiled_step": compiled_step,
    "scaling": scaling,
    "ray_overhead": ray_overhead,
    "ray_overhead_parts": ray_overhead_parts,
    "ray_overhead_trials": ray_overhead_trials,
    "ray_train_floor": ray_train_floor,
    "sweep_load": sweep_load,
    "exit_after_sigterm": exit_after_sigterm,
    "vit_b_memory": vit_b_memory,
    "gpu_step_d384": gpu_step_d384,
    "gpu_step_vitb": gpu_step_vitb,
    "search_cost_cifar": search_cost_cifar,
    "gpu_sweep": gpu_sweep,
    "setup_times": setup_times,
}


# --- the blocks in the documents ---------------------------------------------------------------------------------

class ReportError(Exception):
    """A document whose markers cannot be rewritten safely (unknown name, unclosed block)."""


def block_names(text: str) -> list[str]:
    """The names of the blocks in a document, in order; refuses unclosed blocks."""
    closed = [match["name"] for match in BLOCK.finditer(text)]
    opened = [match["name"] for match in OPENING.finditer(text)]
    if sorted(opened) != sorted(closed):
        unclosed = sorted(set(opened) - set(closed)) or sorted(opened)
        raise ReportError(f"block(s) without their closing marker: {', '.join(unclosed)}")
    return closed


def render(text: str, tables: Mapping[str, str]) -> str:
    """The document with every block's body replaced by its generated table, everything else unchanged."""
    unknown = [name for name in block_names(text) if name not in tables]
    if unknown:
        raise ReportError(f"unknown block(s): {', '.join(unknown)} (known: {', '.join(sorted(tables))})")

    def body(match: re.Match[str]) -> str:
        name = match["name"]
        return f"<!-- report:{name} -->\n{tables[name]}<!-- /report:{name} -->"

    return BLOCK.sub(body, text)


def stale_blocks(text: str, tables: Mapping[str, str]) -> list[str]:
    """The names of the blocks whose body differs from what `render` would write."""
    render(text, tables)  # raises on unknown or unclosed blocks
    return [match["name"] for match in BLOCK.finditer(text) if match["body"] != tables[match["name"]]]


def documents(root: Path) -> list[Path]:
    """The documents that may hold blocks: README.md and docs/*.md."""
    return [path for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))] if path.is_file()]


def build_tables() -> dict[str, str]:
    """Every registered table, generated from the result files."""
    return {name: function() for name, function in TABLES.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 naming the stale blocks; write nothing")
    parser.add_argument("--show", nargs="*", metavar="NAME", help="print these tables (all without a name) and exit")
    parser.add_argument("--root", type=Path, default=REPO,
                        help="folder holding README.md and docs/ (default: this repository; results are always read "
                             "from this repository)")
    args = parser.parse_args(argv)
    tables = build_tables()
    if args.show is not None:
        for name in args.show or tables:
            print(f"<!-- report:{name} -->\n{tables[name]}<!-- /report:{name} -->\n")
        return 0
    problems: list[str] = []
    placed: set[str] = set()
    for path in documents(args.root):
        text = path.read_text()
        label = path.relative_to(args.root)
        try:
            placed.update(block_names(text))
            if args.check:
                problems += [f"{label}: block '{name}' is stale" for name in stale_blocks(text, tables)]
            else:
                new = render(text, tables)
                if new != text:
                    path.write_text(new)
                    print(f"rewrote {label}")
        except ReportError as err:
            problems.append(f"{label}: {err}")
    problems += [f"table '{name}' is in no document" for name in TABLES if name not in placed]
    for problem in problems:
        print(problem, file=sys.stderr)
    if args.check and problems:
        print("run `python experiments/report.py` to regenerate the blocks", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
