"""A trained network as a folder anyone can load: weights, genotype and a model card.

``model.safetensors`` holds the weights (no pickle: loading them runs no code), ``genotype.json`` the architecture,
``model_card.json`` what the network expects (input size, channels, normalisation, class names) and what it achieved.
``load_model`` turns the folder back into a ``Classifier`` in eval mode whose ``preprocess`` gives an image the
treatment the training images had.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from dasvit.data import to_tensor_transform
from dasvit.genotype import Genotype, GenotypeError, load_genotype
from dasvit.io import ModelError, atomic_write_bytes, atomic_write_text
from dasvit.model import build_model

WEIGHTS, CARD, GENOTYPE = "model.safetensors", "model_card.json", "genotype.json"
ImageInput = Image.Image | str | os.PathLike


@dataclass(frozen=True)
class ModelCard:
    """What a trained network expects as input and what it achieved (test accuracy on the data set's test split)."""

    dataset: str
    image_size: int
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    test_acc: float
    params: int
    macs: int  # multiply-accumulates of one image's forward pass (FLOPs = 2 x MACs)
    genotype_id: str
    seed: int

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        return cls(**{**data, **{k: tuple(data[k]) for k in ("mean", "std", "class_names")}})


class Preprocess:
    """An image (PIL image or file) -> the normalised (C, H, W) tensor the network was trained on: converted to
    the training channels (grayscale or RGB), resized to the training size, scaled to [0, 1] and normalised."""

    def __init__(self, card: ModelCard):
        from torchvision.transforms import v2  # here, not at import: see dasvit.data

        self.mode = "L" if card.in_chans == 1 else "RGB"
        self.to_pixels = to_tensor_transform()
        self.normalise = v2.Compose([v2.Resize((card.image_size, card.image_size), antialias=True),
                                     v2.Normalize(card.mean, card.std)])

    def __call__(self, image: ImageInput) -> torch.Tensor:
        if isinstance(image, Image.Image):
            image = image.convert(self.mode)
        else:
            with Image.open(image) as file:  # OSError (e.g. PIL.UnidentifiedImageError) when unreadable
                image = file.convert(self.mode)
        return self.from_pixels(self.to_pixels(image))

    def from_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1], (C, H, W) or (N, C, H, W) at any size -> the network's input."""
        return self.normalise(pixels)


class Classifier(nn.Module):
    """A trained genotype network with its card and preprocessing; ``forward`` takes preprocessed images."""

    def __init__(self, network: nn.Module, genotype: Genotype, card: ModelCard):
        super().__init__()
        self.network, self.genotype, self.card = network, genotype, card
        self.preprocess = Preprocess(card)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images)

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities of a batch of preprocessed images."""
        return self.network(images).float().softmax(-1)

    def top_classes(self, batch: torch.Tensor, top_k: int = 1) -> list[list[tuple[str, float]]]:
        """The ``top_k`` (class name, probability) pairs of each preprocessed image, most probable first."""
        top = self.probabilities(batch).topk(min(top_k, self.card.num_classes), dim=-1)
        return [[(self.card.class_names[int(i)], float(p)) for p, i in zip(probs, index)]
                for probs, index in zip(top.values, top.indices)]

    def classify(self, images: Sequence[ImageInput], top_k: int = 1) -> list[list[tuple[str, float]]]:
        """``top_classes`` of images (PIL images or files)."""
        return self.top_classes(torch.stack([self.preprocess(image) for image in images]), top_k)


def save_model(folder: str | Path, network: nn.Module, genotype: Genotype, card: ModelCard) -> None:
    """Write the model folder; each file is replaced atomically and the card, written last, marks it complete."""
    from safetensors.torch import save

    folder = Path(folder)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in network.state_dict().items()}
    atomic_write_bytes(folder / WEIGHTS, save(state))
    genotype.save(folder / GENOTYPE)
    atomic_write_text(folder / CARD, json.dumps(asdict(card), indent=2) + "\n")


def _read_card(path: Path) -> ModelCard:
    try:
        return ModelCard.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise ModelError(f"model card {str(path)!r} is not a dasvit model card: {err}") from None


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelError(f"weights file {str(path)!r} is not a readable safetensors file: {err}") from None


def _check_fit(state: dict[str, torch.Tensor], network: nn.Module, weights: Path, genotype: Path) -> None:
    """A short message instead of ``load_state_dict``'s page of names when weights and genotype disagree."""
    expected = network.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    misshaped = [k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape]
    if missing or unexpected or misshaped:
        detail = "; ".join(f"{what}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
                           for what, names in (("missing", missing), ("unexpected", unexpected),
                                               ("wrong shape", sorted(misshaped))) if names)
        raise ModelError(f"weights file {str(weights)!r} does not fit the network of {str(genotype)!r} ({detail})")


def load_model(folder: str | Path) -> Classifier:
    """The ``Classifier`` saved in ``folder``, in eval mode; ``ModelError`` naming the file that is wrong."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"model {str(folder)!r}: no such folder (a model folder holds {WEIGHTS}, {GENOTYPE}, {CARD})")
    for name in (CARD, GENOTYPE, WEIGHTS):
        if not (folder / name).is_file():
            raise ModelError(f"model folder {str(folder)!r} has no {name}")
    card = _read_card(folder / CARD)
    try:
        genotype = load_genotype(folder / GENOTYPE)
    except GenotypeError as err:
        raise ModelError(str(err)) from None
    network = build_model(genotype, card.image_size, card.in_chans, card.num_classes)
    state = _read_weights(folder / WEIGHTS)
    _check_fit(state, network, folder / WEIGHTS, folder / GENOTYPE)
    network.load_state_dict(state)
    return Classifier(network, genotype, card).eval()
