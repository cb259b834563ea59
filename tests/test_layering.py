"""The search core never loads the platform's heavy dependencies: it must run where Ray, MLflow or Optuna are not
wanted (a notebook, a plain training script), and importing it stays cheap."""

import json
import subprocess
import sys

import pytest

PLATFORM_MODULES = ("ray", "mlflow", "optuna")


@pytest.mark.parametrize("module", ["dasvit.search", "dasvit.cli", "dasvit.retrain"])
def test_core_modules_load_no_platform_dependency(module):
    code = f"import json, sys, {module}; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {PLATFORM_MODULES!r})))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_a_trials_driver_loads_neither_torchvision_nor_the_search_core():
    """Every Tune trial starts a driver process that imports ``dasvit.platform.trial``: it needs Ray Train and
    MLflow, not the workers' torchvision and search core (~1.5 s per trial; the data set reaches the workers as an
    unopened ``DataHandle``), nor matplotlib, which only the workers draw with (0.36 s)."""
    workers_only = ("torchvision", "dasvit.search", "dasvit.data", "dasvit.platform.trial_worker", "matplotlib",
                    "dasvit.plots")
    code = (f"import json, sys, dasvit.platform.trial; "
            f"print(json.dumps(sorted(m for m in {workers_only!r} if m in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == []
