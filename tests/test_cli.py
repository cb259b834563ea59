"""Bad input exits 2 with a message naming the value and writes nothing; good input runs end to end."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dasvit.cli import main

TINY = ["--dataset", "digits", "--embed-dim", "16", "--stages", "1:1,2:1:2", "--ops", "none,skip,attn_h2,conv_k3",
        "--batch-size", "64", "--quiet"]


def _bad_genotype(tmp_path, text):
    path = tmp_path / "bad.json"
    path.write_text(text)
    return str(path)


CYCLIC = json.dumps({
    "version": 1, "embed_dim": 16, "patch_size": 2, "input": {"image_size": 8, "in_chans": 1, "num_classes": 10},
    "blocks": [{"nodes": 2, "edges": [{"from": 0, "to": 1, "op": "skip"}, {"from": 2, "to": 1, "op": "skip"},
                                      {"from": 1, "to": 2, "op": "skip"}]}]})

SEARCH_CASES = [
    (["--keep-ratio", "0"], "keep ratio 0.0 is outside (0, 1]"),
    (["--keep-ratio", "1.5"], "keep ratio 1.5 is outside (0, 1]"),
    (["--lambda", "-1"], "fairness lambda -1.0 must be >= 0"),
    (["--fairness-lambda", "-2"], "fairness lambda -2.0 must be >= 0"),
    (["--head", "max"], "head 'max' is not one of cls, avg"),
    (["--ops", "none,skip,attn_q2"], "unknown op 'attn_q2'"),
    (["--ops", ""], "the op set is empty"),
    (["--ops", "none"], "no op other than 'none'"),
    (["--epochs", "0"], "epochs must be an integer >= 1, got 0"),
    (["--stages", "0:1"], "depth must be an integer >= 1, got 0"),
    (["--stages", "two"], "stage 'two'"),
    (["--image-size", "9"], "image size 9 is not divisible by patch size 2"),
    (["--dataset", "cifar10"], "needs a data root"),
    (["--dataset", "cifar10", "--data-root", "/nonexistent/cifar"], "data root '/nonexistent/cifar' does not exist"),
    (["--batch-size", "100000"], "batch size 100000 is larger than"),
    (["--train-images", "0"], "train_images must be a positive int, got 0"),
    (["--dataset", "fashion-mnist", "--train-images", "50001"], "train_images 50001 is more than the 50,000"),
    (["--train-images", "5000"], "train_images 5000 is more than the 1438 non-test images of digits"),
]


@pytest.mark.parametrize("extra,needle", SEARCH_CASES, ids=[" ".join(c[0]) for c in SEARCH_CASES])
def test_bad_search_input_exits_2_and_writes_nothing(extra, needle, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["search", *TINY, "--out", str(out), *extra]) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()


def test_config_file_with_unknown_key(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("keep_ratio: 0.5\nkeep_raito: 0.3\n")
    out = tmp_path / "out"
    assert main(["search", "--config", str(config), "--out", str(out)]) == 2
    assert "unknown search config key(s): 'keep_raito'" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "text,needle",
    [("{not json", "not valid JSON"), ('{"version": 1', "not valid JSON"), (CYCLIC, "makes a cycle"),
     ('{"version": 7}', "unsupported version 7"), ("[]", "expected a JSON object")],
)
@pytest.mark.parametrize("command", ["retrain", "show"])
def test_bad_genotype_exits_2(command, text, needle, tmp_path, capsys):
    out = tmp_path / "out"
    extra = ["--out", str(out)] if command == "retrain" else []
    assert main([command, _bad_genotype(tmp_path, text), *extra]) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()


def test_search_refuses_to_overwrite_without_resume(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["search", *TINY, "--out", str(out)]) == 0
    assert main(["search", *TINY, "--out", str(out)]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main(["search", *TINY, "--out", str(out), "--resume"]) == 0  # a finished search resumes to the same end


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_resume_from_a_damaged_checkpoint_exits_2_naming_it(damage, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["search", *TINY, "--out", str(out)]) == 0
    checkpoint = out / "checkpoint.pt"
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not a checkpoint at all")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["search", *TINY, "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert str(checkpoint) in err and "rerun without --resume" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing else changed


@pytest.mark.slow
def test_console_script_search_retrain_show(tmp_path):
    out = tmp_path / "search"
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "dasvit.cli", *args], capture_output=True, text=True)

    searched = run("search", *TINY, "--out", str(out))
    assert searched.returncode == 0, searched.stderr
    for name in ("genotype.json", "metrics.csv", "alpha_history.json", "config.json", "checkpoint.pt"):
        assert (out / name).is_file()
    retrained = run("retrain", str(out / "genotype.json"), "--epochs", "1", "--out", str(tmp_path / "retrain"), "--quiet")
    assert retrained.returncode == 0, retrained.stderr
    result = json.loads(retrained.stdout)
    assert result["dataset"] == "digits" and 0 <= result["test_acc"] <= 1
    shown = run("show", str(out / "genotype.json"))
    assert shown.returncode == 0 and f"params: {result['params']:,}" in shown.stdout
    bad = run("search", *TINY, "--keep-ratio", "2", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "keep ratio 2.0" in bad.stderr


def test_show_vit_b16_prints_torchvision_counts(capsys):
    assert main(["show", "vit_b16", "--image-size", "224", "--num-classes", "1000"]) == 0
    printed = capsys.readouterr().out
    assert "params: 86,567,656" in printed and "17.56 GMACs" in printed


@pytest.mark.parametrize("dataset,layout,needle", [
    ("cifar10", {"cifar-10-batches-py/data_batch_1": b"\x80\x04garbage"}, "cifar10 not found or corrupt under"),
    ("cifar100", {}, "cifar100 not found or corrupt under"),
    ("imagefolder", {"readme.txt": b"no class folders here"}, "is not a readable class-folder tree"),
])
def test_corrupt_data_root_exits_2_and_writes_nothing(dataset, layout, needle, tmp_path, capsys):
    root = tmp_path / "root"
    root.mkdir()
    for name, content in layout.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    out = tmp_path / "out"
    assert main(["search", "--dataset", dataset, "--data-root", str(root), "--out", str(out), "--quiet"]) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()


def test_show_warns_about_a_genotype_whose_cls_never_sees_a_patch(tmp_path, capsys):
    blind = json.dumps({"version": 1, "embed_dim": 16, "patch_size": 2, "input": {"image_size": 8, "in_chans": 1,
                        "num_classes": 10}, "blocks": [{"nodes": 2, "edges": [{"from": 0, "to": 1, "op": "attn_h2"},
                                                                              {"from": 0, "to": 2, "op": "conv_k3"}]}]})
    assert main(["show", _bad_genotype(tmp_path, blind)]) == 0
    assert "the CLS token, all the head reads, never sees a patch" in capsys.readouterr().err
    assert main(["show", "vit_ti16"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_progress_is_one_plain_line_per_epoch_when_not_a_terminal(tmp_path, capsys):
    args = [a for a in TINY if a != "--quiet"]
    assert main(["search", *args, "--out", str(tmp_path / "s")]) == 0
    err = capsys.readouterr().err
    assert "search: epoch 1/2" in err and "search: epoch 2/2" in err and "left)" in err
    assert "\r" not in err and "\x1b[" not in err  # no bar redraws or colour codes in a log
    genotype = str(tmp_path / "s" / "genotype.json")
    assert main(["retrain", genotype, "--epochs", "2", "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert "retrain: epoch 1/2" in err and "retrain: epoch 2/2" in err


HEAVY = ("torch", "torchvision", "ray", "mlflow", "optuna")
NO_HEAVY_IMPORT = f"""
import runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__") if sys.argv[0].endswith(".py") else runpy.run_module(
        sys.argv[0], run_name="__main__")
except SystemExit as exit:
    code = exit.code
print("heavy:", ",".join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize("command,needle", [
    (["dasvit.cli", "--help"], ""),
    (["dasvit.cli", "search", "--keep-ratio", "1.5"], "keep ratio 1.5 is outside (0, 1]"),
    (["dasvit.cli", "search", "--ops", "none,attn_q2"], "unknown op 'attn_q2'"),
    (["dasvit.cli", "search", "--compile", "inductor-cudagraphs"],
     "compile mode 'inductor-cudagraphs' needs a CUDA device, not 'cpu'"),
    (["dasvit.cli", "show", "nosuch.json"], "nosuch.json"),
    (["experiments/sweep.py", "--num-trials", "0"], "num_trials must be an integer >= 1, got 0"),
    (["experiments/sweep.py", "--bogus"], "unrecognized arguments: --bogus"),
], ids=lambda c: " ".join(c) if isinstance(c, list) else None)
def test_usage_errors_come_before_torch_ray_mlflow_and_optuna_are_imported(command, needle, tmp_path):
    """A usage error exits in about a second: none of the heavy libraries is imported on the way (assert on the
    imports, not on a time; the README gives the measured times)."""
    done = subprocess.run([sys.executable, "-c", NO_HEAVY_IMPORT, *command], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert done.returncode == (0 if command[-1] == "--help" else 2), done.stderr[-2000:]
    assert needle in done.stderr
    assert done.stderr.strip().splitlines()[-1] == "heavy:", done.stderr[-2000:]
