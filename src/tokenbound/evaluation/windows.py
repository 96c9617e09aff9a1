"""Evaluation windows: the context policy of METHOD section 3, as a pure numpy function.

Every document `doc = tokens[o : o + n]` is augmented as `aug = [start_id] + doc`; `start_id`
is context only and never scored, the predictions are `aug[1..n]` (the closing end-of-text
token included). With context length `L` and stride `s` (`1 <= s <= L`):

* window 0 feeds `aug[0 : min(L, n)]` and scores ALL its predictions `aug[1 .. min(L, n)]`;
* window `j >= 1` starts at `u_j = j s`, feeds `aug[u_j : min(u_j + L, n)]` (the last input
  `aug[n]` would predict nothing, so inputs stop at `aug[n - 1]`) and scores only the
  predictions `aug(L + (j-1) s, L + j s] ∩ [1, n]`, i.e. its last `s` predictions
  (prediction offsets `L - s ..` within the window).

Hence every token is scored exactly once, with at least `L - s + 1` inputs before it (the token
itself excluded, `start_id` included), and a window's start `u_j` is a function of the
document offset only, never of the document length (no end-aligned last window). Position ids
restart at 0 in every window. `s = 1` is the paper's exact sliding context, `s = L` block
evaluation.

Worked example (10 tokens, two documents, `L = 4`, `s = 2`, `S` = start_id)::

    stream   t0 t1 t2 t3 t4 t5 t6 | t7 t8 t9        doc_offsets = [0, 7, 10]
    doc 0: aug = S t0 t1 t2 t3 t4 t5 t6   (n = 7)
      w0: input S  t0 t1 t2  predicts t0 t1 t2 t3  scores all 4   input_start=-1 off=0 k=4
      w1: input t1 t2 t3 t4  predicts t2 t3 t4 t5  scores t4 t5   input_start= 1 off=2 k=2
      w2: input t3 t4 t5     predicts t4 t5 t6     scores t6      input_start= 3 off=2 k=1
    doc 1: aug = S t7 t8 t9   (n = 3)
      w3: input S  t7 t8     predicts t7 t8 t9     scores all 3   input_start=-1 off=0 k=3

`first_scored` (stream position of the first scored token) is `[0, 4, 6, 7]`; the scored
ranges `[first, first + k)` tile `[0, 10)` exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tokenbound.configs import ConfigError
from tokenbound.errors import UserError


@dataclass(frozen=True)
class Windows:
    """All evaluation windows of a stream, in document order (arrays of shape (n_windows,)).

    Fields:
        doc: int64 document index.
        input_start: int64 stream position of the first input token, or -1 when the first
            input is `start_id` (followed by the document's first tokens).
        input_len: int64 number of input tokens T (position ids 0..T-1).
        score_offset: int64 offset of the first scored prediction within the window's T
            predictions (0 for a document's first window, `L - s` for the others).
        n_scored: int64 number of scored predictions (the last ones of the window).
        first_scored: int64 stream position of the first scored token.
        context_len, stride: the policy (L, s).
    """

    doc: np.ndarray
    input_start: np.ndarray
    input_len: np.ndarray
    score_offset: np.ndarray
    n_scored: np.ndarray
    first_scored: np.ndarray
    context_len: int
    stride: int

    def __len__(self) -> int:
        return int(self.doc.shape[0])


def check_policy(context_len: int, stride: int) -> None:
    """Raise `ConfigError` (fields `context_len`, `stride`) unless `1 <= stride <= context_len`."""
    if int(context_len) < 1:
        raise ConfigError("context_len", "{context_len} must be >= 1 (got {v})", v=context_len)
    if not 1 <= int(stride) <= int(context_len):
        raise ConfigError("stride", "{stride} must be in [1, {context_len}={L}] (got {v})",
                          L=context_len, v=stride)


def windows_per_doc(doc_lens: np.ndarray, context_len: int, stride: int) -> np.ndarray:
    """Number of windows of each document: 0 if empty, else 1 + ceil(max(0, n - L) / s)."""
    n = np.asarray(doc_lens, dtype=np.int64)
    extra = -(-np.maximum(n - context_len, 0) // stride)  # ceil division
    return np.where(n > 0, 1 + extra, 0).astype(np.int64)


def make_windows(doc_offsets: np.ndarray, context_len: int, stride: int) -> Windows:
    """Windows of every document for context length L and stride s (see the module docstring).

    Args:
        doc_offsets: int64 (n_docs + 1,), nondecreasing, `[0, ..., m]`.
        context_len: L, the number of input tokens of a full window.
        stride: s in [1, L].
    """
    check_policy(context_len, stride)
    L, s = int(context_len), int(stride)
    off = np.asarray(doc_offsets, dtype=np.int64)
    if off.ndim != 1 or off.size < 1 or off[0] != 0 or np.any(np.diff(off) < 0):
        raise UserError("doc_offsets must be nondecreasing and start at 0; rebuild the stream")
    lens = np.diff(off)  # (n_docs,)
    per_doc = windows_per_doc(lens, L, s)  # (n_docs,)
    doc = np.repeat(np.arange(lens.size, dtype=np.int64), per_doc)  # (W,)
    first_w = np.cumsum(per_doc) - per_doc  # (n_docs,) index of each document's window 0
    j = np.arange(doc.size, dtype=np.int64) - first_w[doc]  # window index within its document
    n = lens[doc]
    u = j * s  # input start in aug coordinates
    input_len = np.minimum(L, n - u)
    score_offset = np.where(j == 0, 0, L - s)
    n_scored = input_len - score_offset
    first_aug = u + score_offset + 1  # aug index of the first scored prediction
    return Windows(
        doc=doc,
        input_start=np.where(u == 0, -1, off[doc] + u - 1),
        input_len=input_len,
        score_offset=score_offset,
        n_scored=n_scored,
        first_scored=off[doc] + first_aug - 1,
        context_len=L,
        stride=s,
    )


def doc_first_window(doc_offsets: np.ndarray, context_len: int, stride: int) -> np.ndarray:
    """int64 (n_docs,): global index of each document's window 0 (empty documents included)."""
    per_doc = windows_per_doc(np.diff(np.asarray(doc_offsets, np.int64)), context_len, stride)
    return np.cumsum(per_doc) - per_doc


def scoring_window(positions: np.ndarray, doc_offsets: np.ndarray, context_len: int,
                   stride: int) -> np.ndarray:
    """Global index of the window that SCORES each stream position (int64, same shape).

    Position p of document d (offset o) is aug index k = p - o + 1; it is scored by window
    0 if k <= L, else by window ceil((k - L) / s).
    """
    off = np.asarray(doc_offsets, dtype=np.int64)
    p = np.asarray(positions, dtype=np.int64)
    if p.size and (p.min() < 0 or p.max() >= off[-1]):
        raise UserError(f"positions must lie in [0, {int(off[-1])})")
    d = np.searchsorted(off, p, side="right") - 1  # last doc with offset <= p (skips empties)
    k = p - off[d] + 1
    j = np.where(k <= context_len, 0, -(-(k - context_len) // stride))
    return doc_first_window(off, context_len, stride)[d] + j


def window_inputs(tokens: np.ndarray, doc_offsets: np.ndarray, start_id: int, windows: Windows,
                  idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Input ids and targets of windows `idx`, which must all have the same input length T.

    Returns:
        inputs: int64 (B, T) = aug[u : u + T] of each window.
        targets: int64 (B, T) = aug[u + 1 : u + T + 1] (the prediction of every input position).
    """
    idx = np.asarray(idx, dtype=np.int64)
    T = int(windows.input_len[idx[0]])
    if np.any(windows.input_len[idx] != T):
        raise ValueError("window_inputs needs windows of equal input length")
    inputs, targets = padded_inputs(tokens, doc_offsets, start_id, windows, idx, start_id)
    return inputs[:, :T], targets[:, :T]


def padded_inputs(tokens: np.ndarray, doc_offsets: np.ndarray, start_id: int, windows: Windows,
                  idx: np.ndarray, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets of windows `idx` of any lengths, right-padded to `L` with `pad_id`.

    Row b holds window `idx[b]`'s inputs `aug[u : u + n]` and targets `aug[u + 1 : u + n + 1]`
    in its first `n = input_len` columns; the rest is `pad_id` (inputs and targets). A causal model's outputs at the real positions see no padding,
    and every forward pass has the same shape `(B, L)`, so a token's logits never depend on
    where its document ends (METHOD 3, 7.1: shape-dependent kernels round differently).

    Returns:
        inputs, targets: int64 (B, L).
    """
    idx = np.asarray(idx, dtype=np.int64)
    L = int(windows.context_len)
    off = np.asarray(doc_offsets, dtype=np.int64)
    n = windows.input_len[idx]  # (B,)
    tgt0 = np.where(windows.input_start[idx] < 0, off[windows.doc[idx]],
                    windows.input_start[idx] + 1)  # (B,)
    t = np.arange(L, dtype=np.int64)[None, :]  # (1, L)
    real = t < n[:, None]  # (B, L)
    pos = np.where(real, tgt0[:, None] + t, 0)  # (B, L)
    targets = np.where(real, np.asarray(tokens[pos.ravel()], dtype=np.int64).reshape(pos.shape),
                       pad_id)  # (B, L)
    inputs = np.full_like(targets, pad_id)  # (B, L): inputs[t] = target[t - 1], first = aug[u]
    inputs[:, 1:] = np.where(real[:, 1:], targets[:, :-1], pad_id)
    first_is_start = windows.input_start[idx] < 0
    safe_start = np.maximum(windows.input_start[idx], 0)
    inputs[:, 0] = np.where(first_is_start, start_id, np.asarray(tokens[safe_start], np.int64))
    return inputs, targets
