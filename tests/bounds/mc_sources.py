"""Monte Carlo harness (METHOD 7.6): a known order-1 Markov source and a finite hypothesis class.

Source: V = 16 tokens; from state x the next token is `support[x, 0]` w.p. 0.7 and
`support[x, 1]` w.p. 0.3. A hypothesis k is a table of bits `B[k, i]` (fixed before data) and
predicts the token `support[x_{i-1}, B[k, i]]` with probability 1 (a one-hot `p`), so its
smoothed loss is exactly `a` (hit) or `a + c` (miss): `X_i = c * miss_i`, and its true
conditional mean is `mu_i = c * (1 - T[x_{i-1}, predicted_i])`, computable exactly. Two-valued
losses have the largest variance for their range, which gives the broken variants teeth.
The hypothesis is selected on the data (most hits) from 2^b candidates, charged b bits.
"""

from __future__ import annotations

import math

import numpy as np

from tokenbound.bounds import smoothing

V = 16
P_MAJOR = 0.7


def make_source(seed: int = 0, p_major: float = P_MAJOR):
    """`support` (V, 2) distinct tokens and the transition matrix `T` (V, V)."""
    rng = np.random.default_rng(seed)
    support = np.stack([rng.choice(V, size=2, replace=False) for _ in range(V)])  # (V, 2)
    trans = np.zeros((V, V))
    trans[np.arange(V), support[:, 0]] = p_major
    trans[np.arange(V), support[:, 1]] = 1.0 - p_major
    return support, trans


def sample_chain(rng, support, length: int, p_major: float = P_MAJOR) -> np.ndarray:
    """`length` tokens of the chain; the first is uniform and serves as context only."""
    sup = support.tolist()
    minor = (rng.random(length) >= p_major).tolist()  # True: the 1 - p_major successor
    out = [int(rng.integers(V))]
    for i in range(1, length):
        out.append(sup[out[-1]][minor[i]])
    return np.asarray(out, dtype=np.int64)


def sample_docs(rng, support, n_docs: int, length: int, p_major: float) -> np.ndarray:
    """(n_docs, length) i.i.d. chains, each with a uniform first token (vectorized over docs)."""
    docs = np.empty((n_docs, length), dtype=np.int64)
    docs[:, 0] = rng.integers(V, size=n_docs)
    for j in range(1, length):
        docs[:, j] = support[docs[:, j - 1], (rng.random(n_docs) >= p_major).astype(np.int64)]
    return docs


def entropy_center(alpha: float) -> float:
    """H(q) - a for a one-hot p smoothed by alpha (bits), clipped to [0, c]: a predictable center."""
    a, c = smoothing(V, alpha)
    top = 1.0 - alpha + alpha / V
    rest = alpha / V
    h = -top * math.log2(top) - (V - 1) * rest * math.log2(rest)
    return min(max(h - a, 0.0), c)


def select(support, bits, prev, target):
    """Predicted tokens (H, n) of every hypothesis and the index of the one with most hits."""
    pred = support[prev[None, :], bits]  # (H, n)
    k = int(np.argmax((pred == target[None, :]).sum(axis=1)))
    return pred, k


def token_stats(x_cost: np.ndarray, center: float, c: float, lams: np.ndarray):
    """Sums for one (alpha, center): sum X, sum Xhat, sum (X - Xhat)^2, S(lam) (Lam,)."""
    xi = (center - x_cost) / c  # (m,)
    s = np.log1p(lams[None, :] * xi[:, None]).sum(axis=0)  # (Lam,)
    return x_cost.sum(), center * x_cost.size, ((x_cost - center) ** 2).sum(), s
