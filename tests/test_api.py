"""`tokenbound.certify` (issue 17): the README's example runs verbatim; the call gives the same
certificate as `evaluate` + `steps.certify` (the command line's path); mistakes are UserErrors."""

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import tokenbound
from tokenbound.bounds import Certification, grids
from tokenbound.errors import UserError

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    """The first ```python block of the README's "From Python" section, verbatim."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## From Python"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_readme_example_runs_and_certifies(capsys):
    ns: dict = {}
    exec(compile(readme_example(), str(README), "exec"), ns)
    cert, best, n_params = ns["cert"], ns["best"], ns["n_params"]
    assert isinstance(cert, Certification) and best is cert.best
    # untrained model, 390 tokens, C = 32 bits per trained number: capped at the smallest
    # trivial value a + c = log2(V / alpha) of the grid (alpha = 0.9)
    assert best.trivial and best.vacuous and best.certificate
    assert best.value == pytest.approx(math.log2(256 / max(grids.ALPHA_GRID)), rel=1e-12)
    assert best.m == 390 and best.code_bits == 32 * n_params > 0
    az = [c for c in cert.candidates if c.family == "azuma" and c.alpha == best.alpha][0]
    k = az.k_nats  # Azuma's term is c sqrt(K / 2m), uncapped in complexity_term
    assert az.complexity_term == pytest.approx(az.range * math.sqrt(k / (2 * 390)), rel=1e-9)
    assert cert.document is not None and cert.document.m == 3
    assert "trivial: True" in capsys.readouterr().out


class Bigram(torch.nn.Module):
    """A fast causal toy LM: logits_t = A[x_t] + B[x_{t-1}]."""

    def __init__(self, vocab=48):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = torch.nn.Parameter(torch.randn(vocab, vocab, generator=g) * 2)
        self.b = torch.nn.Parameter(torch.randn(vocab, vocab, generator=g))

    def forward(self, idx):
        out = self.a[idx]  # (B, T, V)
        return torch.cat([out[:, :1], out[:, 1:] + self.b[idx[:, :-1]]], 1)


def _bigram_case():
    """(model, stream-like record, V, eot): 3 documents of 30, 17, 41 tokens closed by 47."""
    from types import SimpleNamespace

    rng = np.random.default_rng(0)
    docs = [np.append(rng.integers(0, 47, n - 1), 47) for n in (30, 17, 41)]
    st = SimpleNamespace(tokens=np.concatenate(docs).astype(np.uint16), vocab_size=48,
                         doc_offsets=np.array([0, 30, 47, 88]), start_id=47, eot_id=47)
    return Bigram(), st, 48, 47


def test_same_certificate_as_the_command_line_path(tmp_path):
    from tokenbound.evaluation import EvalConfig, ModelSource, evaluate
    from tokenbound.experiments import steps

    model, st, V, eot = _bigram_case()
    cert = tokenbound.certify(model, st.tokens, doc_offsets=st.doc_offsets, eot_id=eot,
                              context_len=8, stride=5, code_bits=500, out_dir=tmp_path / "api")
    evaluate(ModelSource(model, V, None, {"kind": "test", "sha256": "x"}), st,
             str(tmp_path / "cli"), EvalConfig(context_len=8, stride=5))
    res = steps.certify(tmp_path / "cli", 500)
    want = Certification.from_dict(res.token)
    assert cert == want  # every candidate, term for term
    assert cert.best.m == 88 and cert.best.code_bits == 500
    # kept in out_dir: the stream written from the array and the evaluation
    assert (tmp_path / "api" / "stream" / "meta.json").is_file()
    assert (tmp_path / "api" / "eval" / "eval.json").is_file()


def test_hf_model_object_equals_its_callable():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=48, n_positions=16, n_embd=16, n_layer=1,
                                    n_head=2, attn_implementation="eager")).eval()
    tokens = np.random.default_rng(0).integers(0, 47, 60)
    kw = dict(doc_offsets=[0, 25, 60], start_id=47, code_bits=1000)
    a = tokenbound.certify(hf, tokens, **kw)  # context from the config (n_positions = 16)
    b = tokenbound.certify(lambda idx: hf(input_ids=idx).logits, tokens, context_len=16, **kw)
    assert a.best.value == b.best.value and a.best.m == 60
    assert a.candidates == b.candidates


def test_round_trip_of_a_certification():
    model, st, _, eot = _bigram_case()
    cert = tokenbound.certify(model, st.tokens, doc_offsets=st.doc_offsets, eot_id=eot,
                              context_len=8, code_bits=100)
    assert Certification.from_dict(cert.to_dict()) == cert


def test_mistakes_are_user_errors(tmp_path):
    model, st, _, eot = _bigram_case()
    kw = dict(doc_offsets=st.doc_offsets, eot_id=eot, context_len=8)
    with pytest.raises(UserError, match="code_bits=C"):
        tokenbound.certify(model, st.tokens, **kw)
    with pytest.raises(UserError, match="integer >= 0"):
        tokenbound.certify(model, st.tokens, code_bits=-1, **kw)
    with pytest.raises(UserError, match="start_id"):
        tokenbound.certify(model, st.tokens, code_bits=10, context_len=8)
    with pytest.raises(UserError, match="doc_offsets must run"):
        tokenbound.certify(model, st.tokens, code_bits=10, context_len=8, eot_id=eot,
                           doc_offsets=[0, 5])
    with pytest.raises(UserError, match="context_len"):
        tokenbound.certify(model, st.tokens, code_bits=10, doc_offsets=st.doc_offsets,
                           eot_id=eot)
    with pytest.raises(UserError, match="does not end with eot_id"):
        tokenbound.certify(model, st.tokens, code_bits=10, context_len=8, eot_id=eot,
                           doc_offsets=[0, 10, 88])
    with pytest.raises(UserError, match="a path, a Hugging Face model or a callable"):
        tokenbound.certify(42, st.tokens, code_bits=10, **kw)
    with pytest.raises(UserError, match="does not exist"):
        tokenbound.certify(tmp_path / "none.tbm", st.tokens, **kw)


def test_sampled_mode():
    model, st, _, eot = _bigram_case()
    cert = tokenbound.certify(model, st.tokens, doc_offsets=st.doc_offsets, eot_id=eot,
                              context_len=8, code_bits=100, mode="sampled", n_samples=50)
    assert cert.best.n == 50 and cert.best.m == 88 and cert.document is None
    assert {c.family for c in cert.candidates} == {"azuma", "bernstein"}
    assert all(c.sampling_term > 0 for c in cert.candidates)
