"""The commands freeze the heap at exit, after the exit handlers registered before them have a chance to run
(atexit runs last-in, first-out), so that Python's final collections do not walk torch's and Ray's objects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CHECK_AT_EXIT = "import atexit, gc; atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0))"


def run_python(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120,
                          cwd=cwd)


@pytest.mark.parametrize("command", [
    "from dasvit.cli import main; main(['show', 'vit_ti16'])",
    "from dasvit.platform.sweep import main; main(['--config', 'missing.yaml'])",  # a usage error: frozen all the same
    "from dasvit.platform.retrain_jobs import main; main(['--experiment', 'x', '--top', '0'])",
])
def test_commands_freeze_the_heap_at_exit(command, tmp_path):
    done = run_python(f"{CHECK_AT_EXIT}; {command}", cwd=tmp_path)  # the check, registered first, runs last
    assert done.stdout.strip().endswith("frozen at exit: True"), done.stdout[-2000:] + done.stderr[-2000:]


def test_without_a_command_nothing_is_frozen():  # the check itself can tell frozen from not
    done = run_python(f"{CHECK_AT_EXIT}; import dasvit.quick_exit")
    assert done.stdout.strip() == "frozen at exit: False", done.stderr[-2000:]


def test_registers_once():
    done = run_python("import atexit; from dasvit.quick_exit import freeze_heap_at_exit; before = atexit._ncallbacks(); "
                      "freeze_heap_at_exit(); freeze_heap_at_exit(); print(atexit._ncallbacks() - before)")
    assert done.stdout.strip() == "1", done.stderr[-2000:]
