"""Training batches: seeded, packed windows of the augmented document stream.

Convention (shared with evaluation, docs/ARCHITECTURE.md): document `d` is fed as the augmented
sequence `aug_d = [start_id] + doc_d`; a window at offset `u` feeds `aug[u : u + L]` and predicts
`aug[u + 1 : u + L + 1]`.

Packing. Think of the augmented documents concatenated, `A = aug_0 + aug_1 + ...` (length
`m + n_docs`; never materialized). A training row with start `p` feeds `A[p : p + L]` and predicts
`A[p + 1 : p + L + 1]`. Each input position carries the index of its document (`doc_ids`, made
row-relative so the first segment of a row has id 0), so a model that masks attention with
`doc_ids` never lets a prediction see another document. The one target per boundary that would
predict the next document's `start_id` from the previous document's last token is ignored
(`IGNORE_INDEX`); every other target is a real prediction inside its own document, the closing
end-of-text token included. Example with `start_id = S`, documents `ab` and `cde`, `L = 4`:

    A       = S a b S c d e        (augmented offsets 0..6)
    p = 1:  x = a b S c            doc_ids = 0 0 1 1
            y = b - c d            ('-' = IGNORE_INDEX: b -> S crosses the boundary)

The model must restart position ids where `doc_ids` changes (the segment after a boundary starts
at position 0, as an evaluation window does); the first segment of a row starts at position 0
even when it starts mid-document, like an evaluation window at `u > 0`.

Determinism: the starts of step `t` are drawn from `numpy.random.default_rng([seed, t])`, so the
data order is a pure function of `(seed, step)` and a resumed run sees the same batches.
Distributed training gives rank `r` of `w` the rows `[r * B/w, (r + 1) * B/w)` of the global
batch.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from tokenbound.bounds.basics import LN2
from tokenbound.errors import UserError

IGNORE_INDEX = -100


def augmented_offsets(doc_offsets: np.ndarray) -> np.ndarray:
    """Start of each augmented document in `A`: `off[d] + d`; the last entry is `len(A)`.

    `doc_offsets` is `(n_docs + 1,)` int64 with `[0, ..., m]`; the result has the same shape.
    """
    off = np.asarray(doc_offsets, dtype=np.int64)
    return off + np.arange(len(off), dtype=np.int64)


def gather_augmented(tokens: np.ndarray, aug_off: np.ndarray, start_id: int,
                     q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tokens and document indices at augmented positions `q` (any shape, int64).

    `A[aug_off[d]] = start_id` and `A[aug_off[d] + 1 + j] = tokens[off[d] + j]`, so a non-start
    position `q` of document `d` holds `tokens[q - d - 1]`. Returns `(tok, doc)`, both int64 with
    the shape of `q`.
    """
    doc = np.searchsorted(aug_off, q, side="right") - 1  # same shape as q
    is_start = q == aug_off[doc]
    idx = np.where(is_start, 0, q - doc - 1)
    tok = np.where(is_start, start_id, np.asarray(tokens[idx.ravel()]).reshape(q.shape))
    return tok.astype(np.int64), doc.astype(np.int64)


def make_batch(stream, context_len: int, batch_size: int, seed: int, step: int,
               *, rank: int = 0, world_size: int = 1):
    """The rows of global batch `step` that belong to `rank` (all rows when `world_size == 1`).

    Returns `(x, y, doc_ids)`, int64 tensors of shape `(batch_size // world_size, context_len)`;
    `y == IGNORE_INDEX` at the boundary targets (module docstring).
    """
    check_batch_args(stream, context_len, batch_size, world_size)
    aug_off = augmented_offsets(stream.doc_offsets)
    starts = row_starts(aug_off, context_len, batch_size, seed, step)  # (B,)
    share = batch_size // world_size
    starts = starts[rank * share:(rank + 1) * share]  # (b,)
    rows = rows_at(stream.tokens, aug_off, int(stream.start_id), starts, context_len)
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in rows)


def rows_at(tokens: np.ndarray, aug_off: np.ndarray, start_id: int, starts: np.ndarray,
            context_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Packed rows `A[p : p + L] -> A[p + 1 : p + L + 1]` for each start `p`, as numpy int64.

    Returns `(x, y, doc_ids)`, each `(len(starts), L)`; see the module docstring.
    """
    q = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(context_len + 1)  # (b, L + 1)
    tok, doc = gather_augmented(tokens, aug_off, start_id, q)
    x = tok[:, :-1]  # (b, L)
    y = np.where(doc[:, 1:] == doc[:, :-1], tok[:, 1:], IGNORE_INDEX)  # (b, L)
    doc_ids = doc[:, :-1] - doc[:, :1]  # (b, L), row-relative
    return x, y, doc_ids


def row_starts(aug_off: np.ndarray, context_len: int, batch_size: int, seed: int,
               step: int) -> np.ndarray:
    """Starts `p` of the rows of global batch `step`, uniform in `[0, len(A) - L - 1]`, (B,)."""
    rng = np.random.default_rng([int(seed), int(step)])
    return rng.integers(0, int(aug_off[-1]) - context_len, size=batch_size)


def target_count(stream, context_len: int, batch_size: int, seed: int, step: int) -> int:
    """Number of non-ignored targets in the whole global batch `step` (all ranks together).

    Row `p` loses one target per document start in `A[p + 1 : p + L + 1]`, i.e. per augmented
    offset in `[p + 1, p + L]`. Every rank computes this without communication.
    """
    aug_off = augmented_offsets(stream.doc_offsets)
    p = row_starts(aug_off, context_len, batch_size, seed, step)  # (B,)
    lost = (np.searchsorted(aug_off, p + context_len, side="right")
            - np.searchsorted(aug_off, p, side="right"))  # (B,)
    return int(batch_size * context_len - lost.sum())


def check_batch_args(stream, context_len: int, batch_size: int, world_size: int = 1) -> None:
    """Raise UserError when the stream is too short or the sizes do not fit."""
    if context_len < 1 or batch_size < 1:
        raise UserError(f"--seq-len ({context_len}) and --batch-size ({batch_size}) "
                        "must be positive")
    if batch_size % world_size:
        raise UserError(f"--batch-size {batch_size} must be divisible by the number of "
                        f"processes ({world_size}); pick a multiple of {world_size}")
    n_aug = len(stream.tokens) + len(stream.doc_offsets) - 1
    if n_aug < context_len + 1:
        raise UserError(f"the token stream has {n_aug:,} positions (tokens + document starts), "
                        f"fewer than --seq-len + 1 = {context_len + 1}; use a smaller "
                        "--seq-len or more data")


def batch_iterator(stream, context_len: int, batch_size: int, seed: int, start_step: int = 0,
                   *, rank: int = 0, world_size: int = 1) -> Iterator[tuple]:
    """Endless `(x, y, doc_ids)` batches for steps `start_step, start_step + 1, ...`.

    Batch `t` depends only on `(stream, context_len, batch_size, seed, t)` (see `make_batch`),
    so `batch_iterator(..., start_step=k)` continues exactly where step `k - 1` stopped.
    """
    check_batch_args(stream, context_len, batch_size, world_size)
    step = int(start_step)
    while True:
        yield make_batch(stream, context_len, batch_size, seed, step,
                         rank=rank, world_size=world_size)
        step += 1


def token_losses_nats(model, x: torch.Tensor, y: torch.Tensor,
                      doc_ids: torch.Tensor) -> torch.Tensor:
    """Per-target cross-entropy in nats, `(B, T)` float32, 0 where `y == IGNORE_INDEX`.

    The log-softmax is taken in float32 even when the logits come out of bf16 autocast.
    """
    logits = model(x, doc_ids=doc_ids)  # (B, T, V)
    flat = logits.float().reshape(-1, logits.shape[-1])  # (B*T, V)
    nll = F.cross_entropy(flat, y.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none")
    return nll.reshape(y.shape)  # (B, T)


@torch.no_grad()
def estimate_loss(model, stream, context_len: int, n_batches: int, batch_size: int, seed: int,
                  *, autocast: bool = False) -> float:
    """Mean cross-entropy in bits per token over a fixed, seeded set of packed windows.

    The windows are batches `0 .. n_batches - 1` of `batch_iterator(stream, ..., seed)`; every
    non-ignored target counts once (sum in float64, divided by the count and by ln 2). Used to
    report the loss of a model before/after training or quantization; it is an estimate, not a
    certified quantity. The model is put in eval mode and its previous mode restored.
    """
    device = next(iter(model.parameters())).device
    was_training = model.training
    model.eval()
    total_nats, count = 0.0, 0
    try:
        batches = batch_iterator(stream, context_len, batch_size, seed)
        for _ in range(n_batches):
            x, y, doc_ids = (t.to(device) for t in next(batches))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                nll = token_losses_nats(model, x, y, doc_ids)  # (B, T)
            total_nats += float(nll.double().sum())
            count += int((y != IGNORE_INDEX).sum())
    finally:
        model.train(was_training)
    if count == 0:
        raise UserError("estimate_loss saw no targets; use --eval-batches >= 1")
    return total_nats / count / LN2
