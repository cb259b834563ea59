"""A retrained network as a usable model: the folder ``dasvit retrain`` leaves, ``dasvit.load``, ``dasvit predict``
on real digit images, ``dasvit export`` checked against PyTorch with onnxruntime, and bad models refused by name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image

import dasvit
from dasvit.cli import main
from dasvit.config import DataConfig, RetrainConfig
from dasvit.data import build_transforms
from dasvit.genotype import genotype_from_dict
from dasvit.retrain import retrain
from dasvit.saved_model import GENOTYPE, WEIGHTS

TINY = {
    "version": 1, "embed_dim": 16, "patch_size": 2, "input": {"image_size": 8, "in_chans": 1, "num_classes": 10},
    "blocks": [{"nodes": 2, "edges": [{"from": 0, "to": 1, "op": "conv_k3"}, {"from": 1, "to": 2, "op": "attn_h2"}]}],
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, digits) -> Path:
    folder = tmp_path_factory.mktemp("model")
    retrain(genotype_from_dict(TINY), RetrainConfig(data=DataConfig("digits"), epochs=12, batch_size=64, lr=3e-3),
            digits, out_dir=folder)
    return folder


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory, digits) -> tuple[Path, list[int]]:
    """Real test digits as 8-bit PNG files, as a user would hold them, with their labels."""
    folder = tmp_path_factory.mktemp("digits")
    labels = []
    for i in range(12):
        image, label = digits.test[i]
        Image.fromarray((image[0].numpy() * 255).round().astype(np.uint8)).save(folder / f"{i:02d}.png")
        labels.append(label)
    return folder, labels


def test_load_gives_the_trained_network_with_its_preprocessing(model_dir, digits, digit_files):
    model = dasvit.load(model_dir)
    assert not model.training and model.card.dataset == "digits" and model.card.class_names == tuple("0123456789")
    folder, labels = digit_files
    from_file = model.preprocess(folder / "00.png")
    as_trained = build_transforms(digits, 8, augment=False)(digits.test[0][0])  # the retraining's test transform
    assert from_file.shape == (1, 8, 8) and torch.allclose(from_file, as_trained, atol=0.02)  # 8-bit rounding only
    predicted = [top[0][0] for top in model.classify(sorted(folder.glob("*.png")))]
    assert np.mean([p == str(y) for p, y in zip(predicted, labels)]) >= 0.5  # trained: chance is 0.1
    rgb_large = Image.open(folder / "00.png").convert("RGB").resize((32, 32))
    assert model.preprocess(rgb_large).shape == (1, 8, 8)  # wrong size and channels: converted as in training


def test_predict_prints_a_table_or_json_and_names_unreadable_images(model_dir, digit_files, tmp_path, capsys):
    folder, _ = digit_files
    assert main(["predict", str(model_dir), str(folder), "--top-k", "2"]) == 0
    table = capsys.readouterr().out
    assert "probability" in table and str(folder / "11.png") in table
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    assert main(["predict", str(model_dir), str(folder / "00.png"), str(broken), "--json"]) == 1
    out, err = capsys.readouterr()
    result = json.loads(out)
    expected = dasvit.load(model_dir).classify([folder / "00.png"], top_k=3)[0]
    assert [(t["class"], pytest.approx(t["probability"])) for t in result["predictions"][0]["top"]] == expected
    assert result["skipped"][0]["image"] == str(broken) and str(broken) in err


@pytest.mark.parametrize("fmt", ["onnx", "exported-program"])
def test_export_agrees_with_pytorch_at_any_batch_size(model_dir, tmp_path, fmt, capsys):
    out = tmp_path / f"model.{fmt}"
    assert main(["export", str(model_dir), "--format", fmt, "--out", str(out)]) == 0
    assert "parity with PyTorch" in capsys.readouterr().out
    model = dasvit.load(model_dir)
    images = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(images).numpy()
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        got = session.run(None, {"images": images.numpy()})[0]
    else:
        got = torch.export.load(str(out)).module()(images).detach().numpy()
    assert np.abs(got - expected).max() <= 1e-4


def _broken_copy(model_dir: Path, tmp_path: Path, how: str) -> tuple[Path, Path]:
    broken = tmp_path / how
    broken.mkdir()
    for file in model_dir.iterdir():
        (broken / file.name).write_bytes(file.read_bytes())
    if how == "corrupt":
        (broken / WEIGHTS).write_bytes(b"\x00garbage" * 10)
        return broken, broken / WEIGHTS
    wider = json.loads((broken / GENOTYPE).read_text()) | {"embed_dim": 32}
    (broken / GENOTYPE).write_text(json.dumps(wider))
    return broken, broken / WEIGHTS


@pytest.mark.parametrize("how", ["missing", "corrupt", "mismatch"])
@pytest.mark.parametrize("command", ["predict", "export"])
def test_a_bad_model_exits_2_naming_the_file_without_a_traceback(model_dir, digit_files, tmp_path, how, command):
    folder, _ = digit_files
    if how == "missing":
        path, named = tmp_path / "nosuch", tmp_path / "nosuch"
    else:
        path, named = _broken_copy(model_dir, tmp_path, how)
    args = [str(folder / "00.png")] if command == "predict" else ["--out", str(tmp_path / "m.onnx")]
    done = subprocess.run([sys.executable, "-m", "dasvit.cli", command, str(path), *args], check=False, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and str(named) in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "m.onnx").exists()
