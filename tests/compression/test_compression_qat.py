"""QAT is reproducible: the centroid gradient is a fixed-order float64 sum, whatever the threads."""

import numpy as np
import pytest
import torch

from tokenbound.compression import QuantConfig, encode, qat_finetune, quantize_
from tokenbound.compression.qat import codebook_lookup

models = pytest.importorskip("tokenbound.models")


class _threads:
    """Run a block with `n` intra-op threads (restored afterwards)."""

    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.old = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.old)


def test_codebook_lookup_gradient_is_the_float64_sum_in_index_order():
    # n above torch's grain size (32,768): the case where `c[s]`'s own backward goes parallel
    g = torch.Generator().manual_seed(0)
    n, L = 100_000, 17
    sym = torch.randint(0, L, (n,), generator=g)
    up = torch.randn(n, generator=g)
    want = np.bincount(sym.numpy(), weights=up.double().numpy(), minlength=L).astype(np.float32)
    grads = set()
    with _threads(2):
        for _ in range(8):
            c = torch.linspace(-1, 1, L).requires_grad_()
            out = codebook_lookup(c, sym)
            assert torch.equal(out, c.detach()[sym])
            (out * up).sum().backward()
            grads.add(c.grad.numpy().tobytes())
            assert np.array_equal(c.grad.numpy(), want)
    assert len(grads) == 1


def _batches(seed=0, vocab=64):
    g = torch.Generator().manual_seed(seed)
    while True:
        x = torch.randint(0, vocab, (4, 12), generator=g)
        yield x, (x + 1) % vocab


def _qat_message(threads: int) -> bytes:
    cfg = models.GPTConfig(vocab_size=64, context_len=16, n_layer=1, n_head=2, d_model=64)
    model = models.build_model(cfg)
    qstate = quantize_(model, QuantConfig(levels=7, method="kmeans"))
    assert qstate.quantized_parameters > 50_000  # above the grain size: threads would race
    with _threads(threads):
        q2 = qat_finetune(model, qstate, _batches(), steps=3, lr=0.05)
    return encode(model, cfg, q2)


def test_qat_message_is_the_same_on_repeated_runs_and_thread_counts():
    # before the fixed-order backward, two runs on 2 threads differed in about half the tries
    two = [_qat_message(2) for _ in range(2)]
    assert two[0] == two[1]
    assert _qat_message(1) == two[0]
