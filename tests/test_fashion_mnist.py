"""Fashion-MNIST: the real official files (unpacked from Debian's package by the README's test command), the
protocol's fixed splits, damaged or absent files, class names in the model card, and grayscale image folders."""

from __future__ import annotations

import gzip
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from dasvit import fashion_mnist
from dasvit.cli import main
from dasvit.config import ConfigError, DataConfig, RetrainConfig
from dasvit.data import load_data, retrain_splits, search_splits, selection_split
from dasvit.genotype import BlockGenotype, Edge, Genotype, InputSpec
from dasvit.retrain import retrain
from dasvit.saved_model import load_model
from dasvit.vocabulary import FASHION_CLASSES, dataset_spec


@pytest.fixture(scope="module")
def official() -> dict[str, torch.Tensor]:
    return fashion_mnist.read_official(fashion_mnist.locate(None, download=False))


def test_the_official_files_hold_60000_and_10000_balanced_images(official):
    assert official["train_images"].shape == (60_000, 1, 28, 28) and official["test_images"].shape == (10_000, 1, 28, 28)
    assert np.bincount(official["train_labels"].numpy()).tolist() == [6_000] * 10
    assert np.bincount(official["test_labels"].numpy()).tolist() == [1_000] * 10
    assert 0.0 <= float(official["train_images"].min()) and float(official["train_images"].max()) == 1.0


def test_protocol_splits_are_fixed_disjoint_and_sized():
    selection, train = fashion_mnist.protocol_indices(10_000)
    again, full = fashion_mnist.protocol_indices(50_000)
    assert np.array_equal(selection, again) and np.array_equal(train, full[:10_000])  # the study set is in the full one
    most = dataset_spec("fashion-mnist").max_train_images  # the registry's limit is the protocol's
    assert len(selection) == 10_000 and len(full) == 50_000 == most
    assert not set(selection) & set(full) and fashion_mnist.FASHION_PROTOCOL.max_train_images == most


def test_load_data_follows_the_protocol():
    data = load_data(DataConfig("fashion-mnist", train_images=2_000))
    assert (len(data.trainval), len(data.selection), len(data.test), data.in_chans) == (2_000, 10_000, 10_000, 1)
    assert data.class_names[7] == "Sneaker" and data.flip
    train, alpha = search_splits(data, 28, seed=1)
    assert len(train) == len(alpha) == 1_000  # weights on one half, alpha on the other, split by the seed
    assert len(retrain_splits(data, 28)[0]) == 2_000 and len(selection_split(data, 28)) == 10_000


def test_train_images_out_of_range_is_a_config_error():
    with pytest.raises(ConfigError, match="train_images 60000 is more than the 50,000"):
        DataConfig("fashion-mnist", train_images=60_000).validate(4)
    with pytest.raises(ConfigError, match="train_images must be a positive int, got 0"):
        DataConfig("mnist5k", train_images=0).validate(4)


def _copy_files(tmp_path):
    root = tmp_path / "fm"
    root.mkdir()
    for name in fashion_mnist.FILES.values():
        shutil.copy(fashion_mnist.locate(None, False) / name, root / name)
    return root


@pytest.mark.parametrize("damage,needle", [
    (lambda path: path.write_bytes(b"not gzip"), "is unreadable or damaged"),
    (lambda path: path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 100)), "is damaged: its header"),
    (lambda path: path.unlink(), "are not in data root"),
])
def test_absent_or_damaged_files_exit_2_naming_both_ways_to_get_them(damage, needle, tmp_path, capsys):
    root = _copy_files(tmp_path)
    damage(root / fashion_mnist.FILES["test_labels"])
    out = tmp_path / "out"
    assert main(["search", "--dataset", "fashion-mnist", "--data-root", str(root), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert needle in err and "apt-get download dataset-fashion-mnist" in err and "--download" in err
    assert not out.exists()


def test_a_retrained_model_names_its_classes(tmp_path):
    config = RetrainConfig(data=DataConfig("fashion-mnist", train_images=2_000), epochs=3, batch_size=64, lr=3e-3)
    data = load_data(config.data)
    block = BlockGenotype(2, (Edge(0, 1, "conv_k3"), Edge(1, 2, "mlp_r2")))
    genotype = Genotype(16, 4, InputSpec(28, 1, 10), (block,), {"dataset": "fashion-mnist"}, "avg")
    result = retrain(genotype, config, data, out_dir=tmp_path / "model")
    assert result.val_acc is not None and 0.3 < result.val_acc and 0.3 < result.test_acc  # chance: 0.1
    metrics = (tmp_path / "model" / "metrics.csv").read_text().splitlines()[0]
    assert "val_acc" in metrics and "test_acc" not in metrics  # the test split is read once, at the end
    card = json.loads((tmp_path / "model" / "model_card.json").read_text())
    assert card["class_names"][9] == "Ankle boot" and card["in_chans"] == 1
    sneaker = data.test.images[data.test.labels == 7][0, 0].mul(255).byte().numpy()
    Image.fromarray(sneaker).save(tmp_path / "sneaker.png")
    assert load_model(tmp_path / "model").classify([tmp_path / "sneaker.png"])[0][0][0] in FASHION_CLASSES


def test_a_grayscale_image_folder_loads_as_one_channel(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("bag", "shirt"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), mode="L").save(tmp_path / cls / f"{i}.png")
    data = load_data(DataConfig("imagefolder", str(tmp_path), image_size=28))
    assert data.in_chans == 1 and len(data.mean) == 1
    assert retrain_splits(data, 28)[0][0][0].shape == (1, 28, 28)
