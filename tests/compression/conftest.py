"""A tiny stand-in model family ("toy") registered as a compression builder.

It has the contract of `tokenbound.models` (trained_state / load_trained_state, frozen tensors
regenerated from the config's seed), so the message format is tested independently of the
real GPT; tests with the real GPT run when `tokenbound.models` provides it.
"""

from dataclasses import asdict, dataclass

import pytest
import torch
from torch import nn

from tokenbound.compression import Builder, register_builder


@dataclass
class ToyConfig:
    vocab_size: int = 11
    width: int = 8
    seed: int = 0

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**d)


class ToyLM(nn.Module):
    """ids (B, T) -> logits (B, T, V): embed, frozen seeded mixing, norm, trained head."""

    def __init__(self, cfg: ToyConfig):
        super().__init__()
        g = torch.Generator().manual_seed(cfg.seed)
        self.emb = nn.Embedding(cfg.vocab_size, cfg.width)
        self.frozen = nn.Parameter(torch.randn(cfg.width, cfg.width, generator=g),
                                   requires_grad=False)
        self.norm = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, cfg.vocab_size, bias=False)
        with torch.no_grad():
            self.emb.weight.copy_(torch.randn(self.emb.weight.shape, generator=g))
            self.head.weight.copy_(torch.randn(self.head.weight.shape, generator=g) * 0.3)

    def forward(self, idx):
        h = self.emb(idx) @ self.frozen  # (B, T, W)
        return self.head(self.norm(h))   # (B, T, V)

    def trained_state(self):
        return {"emb.weight": self.emb.weight, "norm.weight": self.norm.weight,
                "norm.bias": self.norm.bias, "head.weight": self.head.weight}

    def load_trained_state(self, d):
        own = self.trained_state()
        assert list(d) == list(own) and all(d[k].shape == own[k].shape for k in d)
        with torch.no_grad():
            for k, v in d.items():
                own[k].copy_(v)


def _build(d):
    cfg = ToyConfig.from_dict(d)
    return ToyLM(cfg).eval(), cfg


register_builder(Builder(
    name="toy", owns=lambda m: isinstance(m, ToyLM), describe=lambda m, c: c.to_dict(),
    build=_build, trained_state=lambda m: m.trained_state(),
    load_trained_state=lambda m, d: m.load_trained_state(d)))


@pytest.fixture
def toy():
    cfg = ToyConfig()
    model = ToyLM(cfg)
    with torch.no_grad():  # "training" moved the trained tensors away from the init
        model.norm.weight.add_(0.01 * torch.arange(cfg.width))
        model.emb.weight.mul_(1.5)
    return model, cfg


def _forge(msg: bytes, edit) -> bytes:
    """`msg` with its JSON header replaced by `edit(header)`, CRC recomputed (a valid frame)."""
    import json
    import zlib

    from tokenbound.compression.wire import Reader, varint

    r = Reader(msg, pos=5)
    hlen = r.varint("header length")
    start = r.pos
    header = json.loads(zlib.decompress(msg[start:start + hlen]))
    edit(header)
    hj = zlib.compress(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
    body = msg[:5] + varint(len(hj)) + hj + msg[start + hlen:-4]
    return body + zlib.crc32(body).to_bytes(4, "little")


@pytest.fixture
def forge():
    return _forge
