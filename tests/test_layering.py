"""The search core never loads the platform's heavy dependencies: it must run where Ray, MLflow or Optuna are not
wanted (a notebook, a plain training script), and importing it stays cheap."""

import json
import subprocess
import sys

import pytest

PLATFORM_MODULES = ("ray", "mlflow", "optuna")


CORE_MODULES = ["dasvit.search", "dasvit.cli", "dasvit.retrain", "dasvit.saved_model", "dasvit.export"]


WORKERS_ONLY = ("torchvision", "dasvit.search", "dasvit.data", "dasvit.platform.trial_worker", "matplotlib",
                "dasvit.plots")


def fresh_interpreter_codes(model_dir: str) -> dict[str, str]:
    """Per check, the code whose imports it inspects: each prints its finding as JSON."""
    loaded = f"sorted(m for m in sys.modules if m.split('.')[0] in {PLATFORM_MODULES!r})"
    return {
        **{module: f"import json, sys, {module}; print(json.dumps({loaded}))" for module in CORE_MODULES},
        "trial_driver": ("import json, sys, dasvit.platform.trial; "
                         f"print(json.dumps(sorted(m for m in {WORKERS_ONLY!r} if m in sys.modules)))"),
        "sweep_driver": ("import json, sys, dasvit.platform.sweep_run\n"
                         "from dasvit.config import DataConfig\n"
                         "from dasvit.data import load_data\n"
                         "load_data(DataConfig('digits'))\n"
                         "print(json.dumps('torchvision' in sys.modules))"),
        "model_folder": ("import json, sys, torch, dasvit\n"
                         "from dasvit.genotype import load_genotype\n"
                         "from dasvit.model import build_model\n"
                         "from dasvit.saved_model import ModelCard, save_model\n"
                         "g = load_genotype('vit_ti16')\n"
                         f"save_model({model_dir!r}, build_model(g, 32, 3, 10), g, ModelCard('cifar10', 32, 3, "
                         "(0.5,) * 3, (0.5,) * 3, tuple('abcdefghij'), 0.0, 0, 0, 'x', 0))\n"
                         f"dasvit.load({model_dir!r})\n"
                         f"print(json.dumps({loaded}))"),
    }


@pytest.fixture(scope="module")
def printed(tmp_path_factory):
    """What each check's code prints as JSON, run in a fresh interpreter of its own (so that only its own imports
    are loaded); all of them at once, since each interpreter spends its time importing on one core."""
    codes = fresh_interpreter_codes(str(tmp_path_factory.mktemp("model")))
    started = {name: subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True) for name, code in codes.items()}
    outputs = {name: (process.communicate(timeout=180), process.returncode) for name, process in started.items()}

    def result(name: str):
        (stdout, stderr), returncode = outputs[name]
        assert returncode == 0, stderr[-2000:]
        return json.loads(stdout)

    return result


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_modules_load_no_platform_dependency(module, printed):
    assert printed(module) == []


def test_a_trials_driver_loads_neither_torchvision_nor_the_search_core(printed):
    """Every Tune trial starts a driver process that imports ``dasvit.platform.trial``: it needs Ray Train and
    MLflow, not the workers' torchvision and search core (~1.5 s per trial; the data set reaches the workers as an
    unopened ``DataHandle``), nor matplotlib, which only the workers draw with (0.36 s)."""
    assert printed("trial_driver") == []


def test_the_sweeps_driver_loads_a_built_in_data_set_without_torchvision(printed):
    """The sweep's driver loads the data set once and hands it to the trials; torchvision (its transforms and data
    set classes) is imported only where those are built, so the driver's start skips its ~1.5 s (torch._dynamo)."""
    assert printed("sweep_driver") is False


def test_loading_a_model_folder_needs_no_platform_dependency(printed):
    """``dasvit.load`` reaches for MLflow only for an MLflow URI: a model folder loads with the core alone."""
    assert printed("model_folder") == []


def _import_graph() -> dict[str, set[str]]:
    """Every ``dasvit`` module -> the ``dasvit`` modules it imports anywhere in its text (lazy imports too)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    modules = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
               for p in (root / "dasvit").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def test_no_import_circles():
    """A module never reaches itself through imports: each can be read, tested and moved on its own."""
    graph = _import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                raise AssertionError("import circle: " + " -> ".join([*path[path.index(target):], target]))
            if target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_the_core_never_imports_the_platform():
    """Only the package's front door (``dasvit.load``, for MLflow URIs) may reach into ``dasvit.platform``."""
    graph = _import_graph()
    core = [m for m in graph if not m.startswith("dasvit.platform") and m != "dasvit"]
    assert {m: sorted(t for t in graph[m] if t.startswith("dasvit.platform")) for m in core} == {m: [] for m in core}
