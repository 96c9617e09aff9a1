"""Random subspace: P w against a naively built dense P, scales, and the trained-state contract."""

import math

import pytest
import torch

from tokenbound.errors import UserError
from tokenbound.models import GPTConfig, build_model
from tokenbound.models.subspace import KroneckerProjection, projection_shapes


def tiny(**kw):
    base = dict(vocab_size=32, context_len=24, n_layer=2, n_head=2, d_model=16, seed=3)
    return GPTConfig(**{**base, **kw})


def test_projection_shapes():
    # d = 32,400 = 180 * 180; D = 851,968: D1 = ceil(sqrt(D)) = 924, D2 = ceil(D / 924) = 923
    assert projection_shapes(851_968, 32_400) == (924, 180, 923, 180)
    # d = 6 = 2 * 3; D = 10: D1 = ceil(sqrt(10)) = 4, D2 = max(3, ceil(10 / 4) = 3) = 3
    assert projection_shapes(10, 6) == (4, 2, 3, 3)
    # d prime: d1 = 1; the factor widths never exceed their heights (P has full column rank)
    D1, d1, D2, d2 = projection_shapes(50, 13)
    assert (d1, d2) == (1, 13) and D2 >= 13 and D1 * D2 >= 50


@pytest.mark.parametrize("orthonormal", [False, True])
def test_projection_equals_naive_dense_product(orthonormal):
    proj = KroneckerProjection(D=10, d=6, seed=1, orthonormal=orthonormal)
    a, b = proj.a, proj.b  # (4, 2), (3, 3)
    # P[(r, s), (i, j)] = a[r, i] b[s, j], rows r * 3 + s, columns i * 3 + j; first 10 rows
    P = torch.zeros(12, 6)
    for r in range(4):
        for s in range(3):
            for i in range(2):
                for j in range(3):
                    P[r * 3 + s, i * 3 + j] = a[r, i] * b[s, j]
    P = P[:10]
    w = torch.randn(6, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(proj(w), P @ w, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(proj.dense(), P)
    if orthonormal:  # Q factors: A^T A = I, B^T B = I, so the full Kronecker columns are too
        full = torch.kron(a, b)
        torch.testing.assert_close(full.T @ full, torch.eye(6), atol=1e-5, rtol=0)


def test_default_scale_gives_unit_columns_on_average():
    proj = KroneckerProjection(D=4000, d=100, seed=0)
    norms = proj.dense().norm(dim=0)  # (d,)
    # entries a * b with a ~ N(0, 1/D1), b ~ N(0, 1/D2): E ||column||^2 = D / (D1 D2) ~ 1
    assert abs(float((norms**2).mean()) - 1.0) < 0.1


@pytest.mark.parametrize("per_tensor", [False, True])
def test_subspace_model_is_theta0_plus_pw(per_tensor):
    cfg = tiny(subspace_dim=20, subspace_per_tensor=per_tensor)
    model = build_model(cfg)
    dense = build_model(tiny())  # the same seed gives theta0 = the dense model's init
    names = list(dense.trained_state())
    D = sum(t.numel() for t in dense.trained_state().values())
    assert model.ambient_dim == D
    w = torch.randn(20, generator=torch.Generator().manual_seed(3))
    model.load_trained_state({"subspace.w": w})
    delta = model.subspace.dense() @ w  # (D,) naive P w
    theta = model.materialize()
    assert list(theta) == names
    offset = 0
    for n, t0 in dense.trained_state().items():
        chunk = delta[offset: offset + t0.numel()].view(t0.shape)
        offset += t0.numel()
        # per-tensor: g_t = sigma_t sqrt(D), sigma_t = std(theta0_t) (init_std if constant)
        sigma = float(t0.std()) if float(t0.std()) > 0 else cfg.init_std
        g = sigma * math.sqrt(D) if per_tensor else 1.0
        torch.testing.assert_close(theta[n], t0 + g * chunk, atol=1e-6, rtol=1e-5)
    idx = torch.randint(0, 32, (1, 8), generator=torch.Generator().manual_seed(4))
    dense.load_trained_state({n: t.detach().clone() for n, t in theta.items()})
    torch.testing.assert_close(model(idx), dense(idx), atol=1e-6, rtol=1e-6)


def test_subspace_trained_state_is_w_only_and_eval_cache_tracks_w():
    model = build_model(tiny(linear={"attn": "lora", "mlp": "lora"}, subspace_dim=30)).eval()
    assert list(model.trained_state()) == ["subspace.w"]
    assert model.trained_state()["subspace.w"].shape == (30,)
    idx = torch.randint(0, 32, (1, 8), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        before = model(idx)
        model.load_trained_state({"subspace.w": torch.full((30,), 0.5)})
        after = model(idx)  # the cached theta must be recomputed
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, model(idx))  # with grad: no cache, same values


def test_subspace_dim_larger_than_ambient_is_a_user_error():
    with pytest.raises(UserError, match="subspace_dim"):
        build_model(tiny(linear={"attn": "lora", "mlp": "lora"}, subspace_dim=10**6))
