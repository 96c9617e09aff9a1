"""Packed batches: gold example, naive reference, determinism, sharding, loss estimate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tokenbound.errors import UserError
from tokenbound.training import (IGNORE_INDEX, batch_iterator, estimate_loss, make_batch,
                                 target_count)
from tokenbound.training.batches import augmented_offsets, rows_at

from training_helpers import TableModel, random_docs, toy_stream


def naive_augmented(docs, start_id):
    """A = [S] + doc_0 + [S] + doc_1 + ... and the document index of every position."""
    tokens, owner = [], []
    for d, doc in enumerate(docs):
        tokens += [start_id] + list(doc)
        owner += [d] * (len(doc) + 1)
    return tokens, owner


def test_gold_example_from_docstring():
    # S=9; documents "ab" = [1, 2] and "cde" = [3, 4, 5]; A = S a b S c d e
    stream = toy_stream([[1, 2], [3, 4, 5]], start_id=9)
    aug_off = augmented_offsets(stream.doc_offsets)
    assert aug_off.tolist() == [0, 3, 7]
    x, y, doc_ids = rows_at(stream.tokens, aug_off, 9, np.array([1, 0, 2]), 4)
    assert x.tolist() == [[1, 2, 9, 3], [9, 1, 2, 9], [2, 9, 3, 4]]
    assert y.tolist() == [[2, -100, 3, 4], [1, 2, -100, 3], [-100, 3, 4, 5]]
    assert doc_ids.tolist() == [[0, 0, 1, 1], [0, 0, 0, 1], [0, 1, 1, 1]]


def test_rows_match_naive_slicing_of_the_augmented_stream():
    docs = random_docs(seed=1, n_docs=30, max_len=9, vocab_size=16)
    stream = toy_stream(docs, start_id=0)
    A, owner = naive_augmented(docs, 0)
    L = 7
    starts = np.arange(len(A) - L)  # every admissible start
    x, y, doc_ids = rows_at(stream.tokens, augmented_offsets(stream.doc_offsets), 0, starts, L)
    for r, p in enumerate(starts):
        for t in range(L):
            assert x[r, t] == A[p + t]
            want = A[p + t + 1] if owner[p + t + 1] == owner[p + t] else IGNORE_INDEX
            assert y[r, t] == want
            assert doc_ids[r, t] == owner[p + t] - owner[p]


def test_every_target_is_a_real_token_of_its_own_document():
    docs = random_docs(seed=2, n_docs=20, max_len=6, vocab_size=16)
    stream = toy_stream(docs, start_id=0)
    _, y, _ = make_batch(stream, 5, 64, seed=3, step=0)
    assert (y[y != IGNORE_INDEX] != 0).all()  # start_id is never a target


def test_batches_are_a_function_of_seed_and_step():
    stream = toy_stream(random_docs(seed=3, n_docs=40, max_len=12, vocab_size=16))
    it = batch_iterator(stream, 8, 4, seed=5)
    first = [next(it) for _ in range(6)]
    resumed = batch_iterator(stream, 8, 4, seed=5, start_step=3)
    for k in range(3, 6):
        again = next(resumed)
        for a, b in zip(first[k], again):
            assert torch.equal(a, b)
    other = make_batch(stream, 8, 4, seed=6, step=0)
    assert not torch.equal(first[0][0], other[0])
    assert all(t.dtype == torch.int64 and t.shape == (4, 8) for t in first[0])


def test_rank_shares_are_disjoint_and_cover_the_global_batch():
    stream = toy_stream(random_docs(seed=4, n_docs=40, max_len=12, vocab_size=16))
    whole = make_batch(stream, 8, 6, seed=1, step=2)
    shares = [make_batch(stream, 8, 6, seed=1, step=2, rank=r, world_size=3) for r in range(3)]
    for i in range(3):
        assert torch.equal(torch.cat([s[i] for s in shares]), whole[i])


def test_target_count_matches_the_labels():
    stream = toy_stream(random_docs(seed=5, n_docs=50, max_len=5, vocab_size=16))
    for step in range(5):
        _, y, _ = make_batch(stream, 9, 8, seed=2, step=step)
        assert target_count(stream, 9, 8, seed=2, step=step) == int((y != IGNORE_INDEX).sum())


def test_bad_sizes_raise_user_errors():
    stream = toy_stream([[1, 2], [3]])  # A has 5 positions
    with pytest.raises(UserError, match="seq-len"):
        make_batch(stream, 5, 2, seed=0, step=0)
    make_batch(stream, 4, 2, seed=0, step=0)  # 5 positions = L + 1: one admissible start
    with pytest.raises(UserError, match="divisible"):
        make_batch(stream, 2, 3, seed=0, step=0, world_size=2)


def test_estimate_loss_uniform_model_is_log2_vocab():
    class Uniform(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, idx, doc_ids=None):
            return torch.zeros(*idx.shape, 16) + self.w  # (B, T, 16)

    stream = toy_stream(random_docs(seed=6, n_docs=30, max_len=10, vocab_size=16))
    bits = estimate_loss(Uniform(), stream, 6, n_batches=3, batch_size=4, seed=0)
    assert bits == pytest.approx(4.0, abs=1e-6)  # log2(16)


def test_estimate_loss_matches_a_naive_loop():
    stream = toy_stream(random_docs(seed=7, n_docs=30, max_len=10, vocab_size=16))
    model = TableModel(16, seed=1)
    model.train()
    bits = estimate_loss(model, stream, 6, n_batches=2, batch_size=3, seed=11)
    assert model.training  # mode restored
    total, count = 0.0, 0
    for step in range(2):
        x, y, _ = make_batch(stream, 6, 3, seed=11, step=step)
        for r in range(3):
            for t in range(6):
                if y[r, t] != IGNORE_INDEX:
                    logp = torch.log_softmax(model.table[x[r, t]].detach().double(), dim=-1)
                    total -= float(logp[y[r, t]])
                    count += 1
    assert bits == pytest.approx(total / count / math.log(2), rel=1e-6)
