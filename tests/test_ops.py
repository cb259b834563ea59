import pytest
import torch

from dasvit.ops import TokenContext, build_op
from dasvit.vocabulary import OpError, parse_op


@pytest.mark.parametrize(
    "name,family,arg",
    [("none", "none", 0), ("skip", "skip", 0), ("attn_h4", "attn", 4), ("mlp_r2", "mlp", 2), ("conv_k5", "conv", 5)],
)
def test_parse_known_ops(name, family, arg):
    spec = parse_op(name, dim=16)
    assert (spec.family, spec.arg) == (family, arg)


@pytest.mark.parametrize(
    "name,needle",
    [("conv3x3", "unknown op 'conv3x3'"), ("attn_h0", "must be >= 1"), ("conv_k4", "must be odd"),
     ("attn_h3", "3 heads do not divide the embedding dim 16"), ("", "unknown op ''")],
)
def test_parse_rejects_bad_ops(name, needle):
    with pytest.raises(OpError, match=needle):
        parse_op(name, dim=16)


@pytest.mark.parametrize("name", ["attn_h2", "mlp_r2", "conv_k3"])
def test_parametric_ops_are_residual_and_keep_shape(name):
    torch.manual_seed(0)
    op = build_op(name, 16)
    x = torch.randn(2, 1 + 16, 16)
    y = op(x, TokenContext((4, 4)))
    assert y.shape == x.shape
    # A zeroed branch output leaves the residual: x + 0.
    for p in op.parameters():
        torch.nn.init.zeros_(p)
    assert torch.equal(op(x, TokenContext((4, 4))), x)


def test_conv_leaves_cls_untouched():
    torch.manual_seed(0)
    op = build_op("conv_k3", 16)
    x = torch.randn(2, 17, 16)
    y = op(x, TokenContext((4, 4)))
    assert torch.equal(y[:, 0], x[:, 0])
    assert not torch.allclose(y[:, 1:], x[:, 1:])
