"""Structured linear layers: forward == x @ dense_weight().T, parameter-count formulas, and the
Monarch/Kronecker materializations against naive constructions."""

import pytest
import torch

from tokenbound.models import (DenseLinear, KroneckerLinear, LoRALinear, MonarchLinear,
                               monarch_param_count, near_square_factors)
from tokenbound.models.linear import monarch_permutation


def _n_params(layer):
    return sum(p.numel() for p in layer.parameters() if p.requires_grad)


LAYERS = [
    lambda i, o, b: DenseLinear(i, o, bias=b),
    lambda i, o, b: LoRALinear(i, o, 3, seed=5, bias=b),
    lambda i, o, b: KroneckerLinear(i, o, bias=b),
    lambda i, o, b: MonarchLinear(i, o, 4, bias=b),
]


@pytest.mark.parametrize("make", LAYERS)
@pytest.mark.parametrize("shape", [(16, 16), (16, 64), (64, 16), (12, 24)])
@pytest.mark.parametrize("bias", [False, True])
def test_forward_equals_materialized_dense(make, shape, bias):
    torch.manual_seed(0)
    layer = make(*shape, bias)
    if isinstance(layer, LoRALinear):  # make B nonzero so that the update is exercised
        torch.nn.init.normal_(layer.lora_b)
    if layer.bias is not None:
        torch.nn.init.normal_(layer.bias)
    x = torch.randn(3, 5, shape[0])  # (B, T, in)
    w = layer.dense_weight()
    assert w.shape == (shape[1], shape[0])
    ref = x @ w.T + (0 if layer.bias is None else layer.bias)
    torch.testing.assert_close(layer(x), ref, atol=1e-5, rtol=1e-5)


def test_monarch_768_has_294912_params():
    # two factors of 4 blocks of 192 x 192: 2 * 4 * 192**2 = 294,912
    assert _n_params(MonarchLinear(768, 768, blocks=4)) == 294_912 == 2 * 4 * 192**2
    assert monarch_param_count(768, 768, 4) == 294_912


@pytest.mark.parametrize("i,o,nb", [(16, 64, 4), (64, 16, 4), (24, 12, 3), (8, 8, 2)])
def test_monarch_count_formula(i, o, nb):
    # mid = min(i, o); R: nb blocks (mid/nb, i/nb); L: nb blocks (o/nb, mid/nb)
    mid = min(i, o)
    expected = nb * (mid // nb) * (i // nb) + nb * (o // nb) * (mid // nb)
    assert _n_params(MonarchLinear(i, o, nb)) == monarch_param_count(i, o, nb) == expected


def test_monarch_dense_weight_against_naive_loop():
    # W[o, i] = sum_m L[o, m] R[perm[m], i], with L, R the block-diagonal matrices, built
    # entry by entry from the block tensors.
    torch.manual_seed(1)
    layer = MonarchLinear(8, 8, 2)
    nb, k = 2, 4
    R = torch.zeros(8, 8)
    L = torch.zeros(8, 8)
    for blk in range(nb):
        for a in range(k):
            for b in range(k):
                R[blk * k + a, blk * k + b] = layer.r[blk, a, b]
                L[blk * k + a, blk * k + b] = layer.l[blk, a, b]
    perm = [0, 4, 1, 5, 2, 6, 3, 7]  # (2, 4) viewed, transposed, flattened
    assert monarch_permutation(8, 2).tolist() == perm
    W = torch.zeros(8, 8)
    for o in range(8):
        for i in range(8):
            W[o, i] = sum(L[o, m] * R[perm[m], i] for m in range(8))
    torch.testing.assert_close(layer.dense_weight(), W)
    assert (W != 0).all()  # nb^2 divides mid: every output depends on every input


def test_kronecker_factors_and_count():
    assert near_square_factors(128) == (8, 16)
    assert near_square_factors(512) == (16, 32)
    assert near_square_factors(13) == (1, 13)
    layer = KroneckerLinear(128, 512)
    assert layer.a.shape == (16, 8) and layer.b.shape == (32, 16)
    assert _n_params(layer) == 16 * 8 + 32 * 16


def test_lora_counts_and_frozen_base_is_seeded():
    a, b = LoRALinear(16, 32, 4, seed=7), LoRALinear(16, 32, 4, seed=7)
    assert _n_params(a) == 4 * (16 + 32)
    assert torch.equal(a.weight0, b.weight0)
    assert not torch.equal(a.weight0, LoRALinear(16, 32, 4, seed=8).weight0)
    assert "weight0" not in a.state_dict()  # regenerated, never stored
    torch.testing.assert_close(a.dense_weight(), a.weight0)  # B is zero-init
