"""The search core never loads the platform's heavy dependencies: it must run where Ray, MLflow or Optuna are not
wanted (a notebook, a plain training script), and importing it stays cheap."""

import json
import subprocess
import sys

import pytest

PLATFORM_MODULES = ("ray", "mlflow", "optuna")


@pytest.mark.parametrize("module", ["dasvit.search", "dasvit.cli", "dasvit.retrain", "dasvit.saved_model", "dasvit.export"])
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


def test_loading_a_model_folder_needs_no_platform_dependency(tmp_path):
    """``dasvit.load`` reaches for MLflow only for an MLflow URI: a model folder loads with the core alone."""
    code = ("import json, sys, torch, dasvit\n"
            "from dasvit.genotype import load_genotype\n"
            "from dasvit.model import build_model\n"
            "from dasvit.saved_model import ModelCard, save_model\n"
            "g = load_genotype('vit_ti16')\n"
            f"save_model({str(tmp_path)!r}, build_model(g, 32, 3, 10), g, ModelCard('cifar10', 32, 3, (0.5,) * 3, "
            "(0.5,) * 3, tuple('abcdefghij'), 0.0, 0, 0, 'x', 0))\n"
            f"dasvit.load({str(tmp_path)!r})\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {PLATFORM_MODULES!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == []
