"""Grids fixed before any data is seen (METHOD 2.1, 2.4, 3).

Every bound that searches one of these grids pays `ln(len(grid))` nats in its complexity (or
sampling) term. They are constants of the package: changing one is a change of method and must
be recorded in reports (reports copy them).
"""

import numpy as np

#: The published code's alpha grid (METHOD 2.7): the paper-compatibility arithmetic searches
#: exactly these values and no others, whatever else was scored.
PAPER_ALPHA_GRID: tuple[float, ...] = (1e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.25, 0.5)

#: Prediction-smoothing values scored for every token (METHOD 3): the paper's grid plus 0.75
#: and 0.9, because on small alphabets (V of a few dozen) the best alpha sat at the paper's
#: edge 0.5. Every certificate pays `ln(len(ALPHA_GRID))` (as evaluated: `bound` pays the grid
#: an evaluation recorded, so an evaluation made with the paper's 8 values pays ln 8).
ALPHA_GRID: tuple[float, ...] = PAPER_ALPHA_GRID + (0.75, 0.9)

#: k of the top-k error statistics scored for every token.
TOPK: tuple[int, ...] = (1, 10, 100)

#: Empirical-Bernstein (Fan) lambda grid: 1,000 geometric values in [1e-4, 0.999] (6.9 nats).
BERNSTEIN_LAMBDAS: np.ndarray = np.geomspace(1e-4, 0.999, 1000)

#: Betting-form lambda grid: 128 geometric values in [1e-4, 0.999] (4.85 nats). The evaluation
#: engine accumulates sum_i ln1p(lam * xi_i) for each of these values in exact mode.
BETTING_LAMBDAS: np.ndarray = np.geomspace(1e-4, 0.999, 128)

#: Bernoulli-kl lambda grid for [0, 1] losses: 1,000 geometric values in [1e-3, 30].
KL_LAMBDAS: np.ndarray = np.geomspace(1e-3, 30.0, 1000)

#: Centers for the variance-adaptive bounds (METHOD 2.4), in the order stored by evaluation:
#: "entropy" = H(q_i) - a; "expected" = E_{y~p}[-log2 q(y)] - a; both clipped to [0, c].
CENTERS: tuple[str, ...] = ("entropy", "expected")
