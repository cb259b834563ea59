import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets

from dasvit.data import DataError, load_data, make_loader, retrain_splits, search_splits


def write_cifar10(root, per_batch=6, seed=0):
    """A tiny CIFAR-10 in torchvision's on-disk format (python pickles of uint8 rows)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, per_batch).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {"label_names": [f"class{i}" for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))


@pytest.fixture
def fake_cifar(tmp_path, monkeypatch):
    write_cifar10(tmp_path)
    # The fixture's bytes differ from the real files, so torchvision's md5 checks would reject it.
    monkeypatch.setattr(datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(datasets.cifar, "check_integrity", lambda *args, **kwargs: True)
    return tmp_path


def test_cifar10_from_its_on_disk_format(fake_cifar):
    data = load_data("cifar10", fake_cifar)
    assert (len(data.trainval), len(data.test), data.num_classes, data.in_chans) == (30, 6, 10, 3)
    train, val = search_splits(data, 32, seed=0)
    image, label = train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and 0 <= label < 10
    images, labels = next(iter(make_loader(val, 4, shuffle=False)))
    assert images.shape == (4, 3, 32, 32)


def test_cifar_errors_name_the_root(tmp_path):
    with pytest.raises(DataError, match=f"cifar10 not found or corrupt under '{tmp_path}'.*--download"):
        load_data("cifar10", tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        load_data("cifar10", tmp_path / "nowhere")
    with pytest.raises(DataError, match="needs a data root"):
        load_data("cifar100", None)
    with pytest.raises(DataError, match="unknown data set 'svhn'"):
        load_data("svhn")


def test_imagefolder_tree(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / split / cls / f"{i}.png")
    data = load_data("imagefolder", tmp_path, image_size=16)
    assert (len(data.trainval), len(data.test), data.num_classes) == (6, 6, 2)
    train, test = retrain_splits(data, 16)
    assert train[0][0].shape == (3, 16, 16) and test[0][0].shape == (3, 16, 16)


def test_splits_are_seeded_and_disjoint(digits):
    a_train, a_val = search_splits(digits, 8, seed=1)
    b_train, _ = search_splits(digits, 8, seed=1)
    c_train, _ = search_splits(digits, 8, seed=2)
    assert np.array_equal(a_train.indices, b_train.indices)
    assert not np.array_equal(a_train.indices, c_train.indices)
    assert not set(a_train.indices) & set(a_val.indices)
    assert len(a_train) + len(a_val) == len(digits.trainval)
    assert len(digits.test) == 359  # fixed 20% hold-out, independent of the seed


def test_builtin_mnist5k_is_real_mnist():
    data = load_data("mnist5k")
    assert (len(data.trainval) + len(data.test), data.native_size, data.num_classes) == (5000, 28, 10)
