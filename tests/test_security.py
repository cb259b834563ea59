"""What the project loads and serves: no unpickling of files, UIs bound to loopback."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted((REPO / "dasvit").rglob("*.py")) + sorted((REPO / "dasvit.platform").rglob("*.py"))


def _calls(name: str) -> list[tuple[Path, ast.Call]]:
    found = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == name:
                found.append((path, node))
    return found


def test_every_torch_load_refuses_pickled_code():
    loads = _calls("torch.load")
    assert loads  # the checkpoints are loaded somewhere: the scan must see it
    for path, call in loads:
        flags = {k.arg: ast.unparse(k.value) for k in call.keywords}
        assert flags.get("weights_only") == "True", f"{path.name}:{call.lineno} torch.load without weights_only=True"
    assert not _calls("pickle.load") and not _calls("pickle.loads")


def test_local_ray_dashboard_binds_loopback():
    (init,) = [c for _, c in _calls("ray.init") if any(k.arg == "include_dashboard" for k in c.keywords)]
    assert {k.arg: ast.unparse(k.value) for k in init.keywords}["dashboard_host"] == "'127.0.0.1'"
