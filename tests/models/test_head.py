"""EmbeddingHead: GAP + GMP summed, Linear, L2 norm; the paper's initialisation."""

from __future__ import annotations

import math

import pytest
import torch

from pml_proxy_anchor.models import EmbeddingHead


def _reference(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    pooled = features.mean(dim=(2, 3)) + features.amax(dim=(2, 3))
    out = pooled @ weight.T + bias
    return out / out.norm(dim=1, keepdim=True)


def test_forward_matches_manual_gap_plus_gmp_linear_l2():
    generator = torch.Generator().manual_seed(0)
    head = EmbeddingHead(in_channels=8, embedding_size=5)
    with torch.no_grad():
        head.embedding.bias.normal_(generator=generator)  # make the bias take part
    features = torch.randn(3, 8, 5, 4, generator=generator)
    out = head(features)
    expected = _reference(features, head.embedding.weight.detach(), head.embedding.bias.detach())
    assert out.shape == (3, 5)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3), rtol=0, atol=1e-5)


def test_exact_value_on_a_constructed_case():
    head = EmbeddingHead(in_channels=2, embedding_size=2)
    with torch.no_grad():
        head.embedding.weight.copy_(torch.eye(2))
    # channel 0: mean 1.0, max 2.5 -> 3.5; channel 1: mean -1.0, max 0.5 -> -0.5
    features = torch.tensor([[[[0.0, 2.5], [1.0, 0.5]], [[-3.0, 0.5], [-1.0, -0.5]]]])
    expected = torch.tensor([[3.5, -0.5]]) / math.hypot(3.5, 0.5)
    torch.testing.assert_close(head(features), expected, rtol=0, atol=1e-6)


def test_without_normalisation_returns_the_linear_output():
    head = EmbeddingHead(4, 3, normalize=False)
    features = torch.randn(2, 4, 3, 3)
    pooled = features.mean(dim=(2, 3)) + features.amax(dim=(2, 3))
    torch.testing.assert_close(head(features), head.embedding(pooled), rtol=1e-6, atol=1e-6)


def test_init_kaiming_fan_out_and_zero_bias():
    torch.manual_seed(0)
    head = EmbeddingHead(in_channels=1024, embedding_size=512)
    weight = head.embedding.weight.detach()
    assert weight.shape == (512, 1024)
    assert torch.count_nonzero(head.embedding.bias) == 0
    expected_std = math.sqrt(2.0 / 512)  # fan_out = embedding_size; fan_in would give 0.044
    assert weight.std().item() == pytest.approx(expected_std, rel=0.02)
    assert abs(weight.mean().item()) < 3 * expected_std / math.sqrt(weight.numel())


def test_gradients_reach_the_linear_layer():
    head = EmbeddingHead(6, 4)
    head(torch.randn(2, 6, 2, 2)).sum().backward()
    assert head.embedding.weight.grad is not None
    assert torch.count_nonzero(head.embedding.weight.grad) > 0


@pytest.mark.parametrize("shape", [(2, 7, 3, 3), (2, 8), (8, 3, 3)])
def test_wrong_feature_map_shape_is_refused(shape):
    with pytest.raises(ValueError, match=r"expects a feature map \(B, 8, H, W\)"):
        EmbeddingHead(8, 4)(torch.randn(*shape))


def test_invalid_sizes_are_refused():
    with pytest.raises(ValueError, match="embedding_size=0"):
        EmbeddingHead(8, 0)
