"""tokenbound.evaluation: windows (pure) + per-token scoring of any (B, T) -> (B, T, V) callable.

METHOD sections 2.4, 2.5 and 3. Entry points:

    make_windows(doc_offsets, L, s) -> Windows          the context policy (pure numpy)
    ModelSource(fn, vocab_size, max_context, ident)      what is scored (loaders: tokenbound.sources)
    evaluate(model, stream, out_dir, EvalConfig(...)) -> dict   resumable shards -> stats.npz
    load_result(out_dir) -> (WindowStats, eval.json dict)
    WindowStats: per-window sums, totals(), sample_arrays(), betting/doc sums (exact mode)
"""

from tokenbound.evaluation.config import EvalConfig
from tokenbound.evaluation.engine import evaluate
from tokenbound.evaluation.sampling import draw_positions, draw_windows
from tokenbound.evaluation.scoring import score_windows
from tokenbound.evaluation.shards import load_result
from tokenbound.evaluation.sources import ModelSource
from tokenbound.evaluation.stats import WindowStats
from tokenbound.evaluation.token_stats import (TokenStats, token_stats, token_stats_naive,
                                               token_stats_vchunked)
from tokenbound.evaluation.windows import Windows, make_windows, scoring_window

__all__ = ["EvalConfig", "evaluate", "load_result", "draw_positions", "draw_windows",
           "score_windows", "ModelSource", "WindowStats", "TokenStats",
           "token_stats", "token_stats_naive", "token_stats_vchunked",
           "Windows", "make_windows", "scoring_window"]
