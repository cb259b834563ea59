import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets

from dasvit.config import DataConfig
from dasvit.data import DataError, load_data, make_loader, retrain_splits, search_splits


def write_cifar(root, name, per_file=6, seed=0):
    """A tiny CIFAR-10/100 in torchvision's on-disk format (python pickles of uint8 rows)."""
    rng = np.random.default_rng(seed)
    classes, folder, files, label_key, meta_file, names_key = {
        "cifar10": (10, "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], "labels",
                    "batches.meta", "label_names"),
        "cifar100": (100, "cifar-100-python", ["train", "test"], "fine_labels", "meta", "fine_label_names"),
    }[name]
    (root / folder).mkdir(parents=True)
    for file in files:
        batch = {"data": rng.integers(0, 256, (per_file, 3072), dtype=np.uint8),
                 label_key: rng.integers(0, classes, per_file).tolist()}
        (root / folder / file).write_bytes(pickle.dumps(batch))
    (root / folder / meta_file).write_bytes(pickle.dumps({names_key: [f"class{i}" for i in range(classes)]}))


@pytest.fixture
def skip_md5(monkeypatch):
    # The fixture's bytes differ from the real files, so torchvision's md5 checks would reject it.
    monkeypatch.setattr(datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(datasets.cifar, "check_integrity", lambda *args, **kwargs: True)


@pytest.mark.parametrize("name,sizes", [("cifar10", (30, 6, 10)), ("cifar100", (6, 6, 100))])
def test_cifar_from_its_on_disk_format(name, sizes, tmp_path, skip_md5):
    write_cifar(tmp_path, name)
    data = load_data(DataConfig(name, str(tmp_path)))
    assert (len(data.trainval), len(data.test), data.num_classes, data.in_chans) == (*sizes, 3)
    train, val = search_splits(data, 32, seed=0)
    image, label = train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and 0 <= label < sizes[2]
    images, labels = next(iter(make_loader(val, 2, shuffle=False)))
    assert images.shape == (2, 3, 32, 32)


def test_cifar_errors_name_the_root(tmp_path):
    with pytest.raises(DataError, match=f"cifar10 not found or corrupt under '{tmp_path}'.*--download"):
        load_data(DataConfig("cifar10", str(tmp_path)))
    with pytest.raises(DataError, match="does not exist"):
        load_data(DataConfig("cifar10", str(tmp_path / "nowhere")))
    with pytest.raises(DataError, match="needs a data root"):
        load_data(DataConfig("cifar100", None))
    with pytest.raises(DataError, match="unknown data set 'svhn'"):
        load_data(DataConfig("svhn"))


def test_imagefolder_tree(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / split / cls / f"{i}.png")
    data = load_data(DataConfig("imagefolder", str(tmp_path), image_size=16))
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
    data = load_data(DataConfig("mnist5k"))
    assert (len(data.trainval) + len(data.test), data.native_size, data.num_classes) == (5000, 28, 10)
