"""Comma-separated number options: parsed by one rule, a bad item is a usage error naming it."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

from dasvit.arglists import KEEP_RATIOS, LAMBDAS, SEEDS, NumberList

REPO = Path(__file__).resolve().parents[1]


def test_lists_parse_to_numbers_of_their_kind():
    assert SEEDS("0, 1,2") == [0, 1, 2]
    assert KEEP_RATIOS("0.25,1") == [0.25, 1.0]
    assert LAMBDAS("0") == [0.0]
    assert NumberList(float, empty_ok=True)("") == []


@pytest.mark.parametrize("parse,text,message", [
    (SEEDS, "0,two", "'0,two': 'two' is not an integer"),
    (SEEDS, "0,1.5", "'0,1.5': '1.5' is not an integer"),
    (SEEDS, "0,-1", "'0,-1': -1 is not an integer >= 0"),
    (SEEDS, "", "'': '' is not an integer"),
    (SEEDS, "0,,1", "'0,,1': '' is not an integer"),
    (KEEP_RATIOS, "0.5,1.5", "'0.5,1.5': 1.5 is not a number > 0 and <= 1"),
    (KEEP_RATIOS, "0", "'0': 0 is not a number > 0 and <= 1"),
    (LAMBDAS, "nan", "'nan': nan is not a number >= 0"),
    (NumberList(float), "inf", "'inf': inf is not a number"),
])
def test_a_bad_item_is_named(parse, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as error:
        parse(text)
    assert str(error.value) == message


def test_a_script_with_a_bad_list_exits_2_before_it_writes_anything(tmp_path, monkeypatch, capsys):
    """``experiments/robustness.py --ratios 0.5,2``: the usage error names the value; no MLflow store, no results."""
    monkeypatch.syspath_prepend(str(REPO / "experiments"))
    monkeypatch.chdir(tmp_path)
    spec = importlib.util.spec_from_file_location("robustness_script", REPO / "experiments" / "robustness.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--ratios", "0.5,2", "--out", str(tmp_path / "results")])
    assert exit_info.value.code == 2
    assert "argument --ratios: '0.5,2': 2 is not a number > 0 and <= 1" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
