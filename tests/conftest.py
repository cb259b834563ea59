from __future__ import annotations

import pytest
import torch

from dasvit.config import DataConfig, SearchConfig
from dasvit.data import ImageData, load_data
from dasvit.genotype import InputSpec
from dasvit.supernet import Supernet
from dasvit.vocabulary import SearchSpace, StageSpec

TINY_OPS = ("none", "skip", "attn_h2", "mlp_r2", "conv_k3")


@pytest.fixture(scope="session")
def digits() -> ImageData:
    return load_data(DataConfig("digits"))


@pytest.fixture
def tiny_config() -> SearchConfig:
    """Two short stages on scikit-learn's digits: seconds on 2 CPU cores."""
    return SearchConfig(
        data=DataConfig("digits"),
        embed_dim=16,
        ops=TINY_OPS,
        stages=(StageSpec(depth=1, epochs=2), StageSpec(depth=2, epochs=1, ops=2)),
        batch_size=64,
        keep_ratio=0.5,
        fairness_lambda=0.5,
        alpha_lr=1e-2,
        seed=3,
    )


def tiny_supernet(keep_ratio: float = 1.0, depth: int = 2, dtype: torch.dtype = torch.float32, seed: int = 0) -> Supernet:
    torch.manual_seed(seed)
    model = Supernet(SearchSpace(TINY_OPS, nodes=2), depth, 16, 2, InputSpec(8, 1, 10), keep_ratio=keep_ratio)
    with torch.no_grad():
        for alpha in model.arch_parameters():
            alpha.normal_(0, 0.5)
    return model.to(dtype)


def random_batch(n: int = 8, dtype: torch.dtype = torch.float32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=gen, dtype=dtype), torch.randint(0, 10, (n,), generator=gen)
