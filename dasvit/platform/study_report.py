"""What Optuna learnt over a sweep: its optimisation history and which tuned knob decided the objective.

Both come from the sweep's own Optuna study (``<sweep>-optuna.db``): the history plot shows whether TPE improved on
its random start-up, and the parameter importances (Optuna's fANOVA over the completed trials) say which of
lambda, r, width and depth mattered. Both are logged to the sweep's MLflow run and the importances printed.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import optuna

MIN_TRIALS = 2  # fANOVA needs at least two completed trials to split on


def load_study(study_path: Path, name: str | None = None) -> optuna.Study:
    """The sweep's study (``name``: the sweep's name; None: the only study the file holds)."""
    return optuna.load_study(study_name=name, storage=f"sqlite:///{study_path}")


def _objective(trial: optuna.trial.FrozenTrial) -> float:
    return trial.values[0]  # the first objective (a second one, when set, is a cost to minimise)


def completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.values and not math.isnan(t.values[0])]


def param_importances(study: optuna.Study) -> dict[str, float]:
    """Share of the objective's variance each tuned knob explains (sums to 1); empty with too few trials or when
    no knob varied."""
    trials = completed(study)
    if len(trials) < MIN_TRIALS or not study.best_trials:
        return {}
    try:
        importances = optuna.importance.get_param_importances(
            study, target=_objective, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (RuntimeError, ValueError):  # e.g. every completed trial proposed the same values
        return {}
    return {name: float(value) for name, value in importances.items()}


def figures(study: optuna.Study, importances: dict[str, float]) -> dict[str, Any]:
    """The MLflow artifact path -> matplotlib figure of each plot the study supports (``importances``: what
    ``param_importances`` found, so that it is not computed again to decide whether to plot them)."""
    from optuna.visualization import matplotlib as optuna_plots

    if len(completed(study)) < 1:
        return {}
    with warnings.catch_warnings():  # Optuna marks its matplotlib plots experimental; they are what we log
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _plots(study, optuna_plots, bool(importances))


def _plots(study: optuna.Study, optuna_plots: Any, with_importances: bool) -> dict[str, Any]:
    plots = {"plots/optuna_history.png": optuna_plots.plot_optimization_history(
        study, target=_objective, target_name="objective").figure}
    if with_importances:
        plots["plots/optuna_importances.png"] = optuna_plots.plot_param_importances(
            study, target=_objective, target_name="objective",
            evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)).figure
    for figure in plots.values():
        figure.set_size_inches(6.5, 3.8)
        figure.tight_layout()
    return plots


def describe(importances: dict[str, float], trials: int) -> str:
    if not importances:
        return f"parameter importances: not enough varied trials to tell ({trials} completed)"
    ranked = ", ".join(f"{name} {share:.2f}" for name, share in importances.items())
    return f"parameter importances (Optuna fANOVA over {trials} completed trials, share of the objective's variance): " \
           f"{ranked}"


def report(client: Any, run_id: str, study_path: Path, name: str) -> str:
    """Log the plots and the importances (``importance.<knob>`` metrics) to the sweep's run; the summary line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    study = load_study(study_path, name)
    importances = param_importances(study)
    for path, figure in figures(study, importances).items():
        client.log_figure(run_id, figure, path)
        plt.close(figure)
    for knob, share in importances.items():
        client.log_metric(run_id, f"importance.{knob}", share)
    return describe(importances, len(completed(study)))
