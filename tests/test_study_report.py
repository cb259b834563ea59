"""The sweep's Optuna report: importances say which knob decided the objective, and the plots are logged."""

from __future__ import annotations

import optuna
import pytest

from dasvit.platform import study_report


@pytest.fixture
def study_path(tmp_path):
    """A seeded study of 12 trials whose objective depends on keep_ratio only, stored like a sweep's."""
    path = tmp_path / "sweep-optuna.db"
    study = optuna.create_study(study_name="sweep", storage=f"sqlite:///{path}", direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: 10 * t.suggest_float("keep_ratio", 0.25, 1.0) + 0 * t.suggest_float("fairness_lambda", 0, 1),
                   n_trials=12)
    return path


class FakeClient:
    def __init__(self):
        self.figures, self.metrics = [], {}

    def log_figure(self, run_id, figure, path):
        self.figures.append(path)

    def log_metric(self, run_id, key, value):
        self.metrics[key] = value


def test_importances_name_the_knob_that_decides(study_path):
    client = FakeClient()
    line = study_report.report(client, "run", study_path, "sweep")
    assert client.metrics["importance.keep_ratio"] > 0.9 > client.metrics["importance.fairness_lambda"]
    assert sorted(client.figures) == ["plots/optuna_history.png", "plots/optuna_importances.png"]
    assert line.startswith("parameter importances") and "keep_ratio 0.9" in line and "over 12 completed" in line


def test_too_few_trials_say_so(tmp_path):
    path = tmp_path / "s-optuna.db"
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{path}", direction="maximize")
    study.optimize(lambda t: t.suggest_float("keep_ratio", 0.25, 1.0), n_trials=1)
    client = FakeClient()
    assert "not enough varied trials" in study_report.report(client, "run", path, "s")
    assert client.figures == ["plots/optuna_history.png"] and client.metrics == {}
