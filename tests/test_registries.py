"""Extension points: a data set registered from outside the package is one every command, config and script
accepts by name, without editing ``dasvit/``."""

from __future__ import annotations

import json

import pytest
import torch

from dasvit.cli import main
from dasvit.config import ConfigError, DataConfig
from dasvit.data import ImageData, load_data
from dasvit.vocabulary import DATASET_REGISTRY, DatasetSpec, dataset_names, register_dataset

STRIPES = DatasetSpec("stripes", 8, 2, "test_registries:load_stripes", "made by this test: horizontal or vertical bars",
                      ("horizontal", "vertical"))


def load_stripes(config: DataConfig) -> ImageData:
    """200 8x8 images of a bar, horizontal (0) or vertical (1), at a random row or column, with noise."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (200,), generator=generator)
    images = 0.2 * torch.rand(200, 1, 8, 8, generator=generator)
    for i, (label, at) in enumerate(zip(labels, torch.randint(0, 8, (200,), generator=generator))):
        if label == 0:
            images[i, 0, at, :] = 1.0
        else:
            images[i, 0, :, at] = 1.0
    from dasvit.data import _LabelledTensors

    return ImageData("stripes", _LabelledTensors(images[:160], labels[:160]), _LabelledTensors(images[160:], labels[160:]),
                     2, 1, 8, (0.3,), (0.3,), flip=False, classes=STRIPES.classes)


@pytest.fixture
def stripes():
    register_dataset(STRIPES)
    yield STRIPES
    DATASET_REGISTRY.pop(STRIPES.name)


def test_a_registered_data_set_loads_validates_and_searches(stripes, tmp_path, capsys):
    assert "stripes" in dataset_names()
    data = load_data(DataConfig("stripes"))
    assert (len(data.trainval), data.class_names) == (160, ("horizontal", "vertical"))
    assert DataConfig("stripes").resolved_image_size == 8
    out = tmp_path / "search"
    assert main(["search", "--dataset", "stripes", "--stages", "1:1", "--embed-dim", "8", "--ops",
                 "none,skip,conv_k3", "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "genotype.json").read_text())["input"]["num_classes"] == 2
    with pytest.raises(ValueError, match="already registered with other properties"):
        register_dataset(DatasetSpec("stripes", 16, 4, "test_registries:load_stripes", "another"))


def test_an_unregistered_name_is_refused_naming_the_registered_ones():
    with pytest.raises(ConfigError, match="unknown data set 'stripes': choose from digits, mnist5k, fashion-mnist"):
        DataConfig("stripes").validate(2)
