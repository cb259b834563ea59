"""The results tables in README.md and docs/ are what experiments/report.py generates from the result files."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "experiments" / "report.py"


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPORT), "--check", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_committed_docs_match_their_result_files() -> None:
    result = run_check()
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_edited_figure_makes_the_check_fail_naming_its_block(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    for doc in (ROOT / "docs").glob("*.md"):
        shutil.copy(doc, tmp_path / "docs" / doc.name)
    results = tmp_path / "docs" / "results.md"
    text = results.read_text()
    block = re.search(r"<!-- report:robustness -->\n(.*?)<!-- /report:robustness -->", text, re.S)
    assert block is not None
    edited = re.sub(r"\d+\.\d %", "-1.0 %", block[1], count=1)  # one accuracy in the table
    assert edited != block[1]
    results.write_text(text[:block.start(1)] + edited + text[block.end(1):])

    result = run_check("--root", str(tmp_path))

    assert result.returncode == 1
    assert "docs/results.md: block 'robustness' is stale" in result.stderr
    assert "headline" not in result.stderr  # only the edited block is named
