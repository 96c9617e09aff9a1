"""Tokenizer specs: bytes, chars:, hf: (a tiny tokenizer.json built here), gguf: (slow)."""

import numpy as np
import pytest

from tokenbound.data import tokenizer_from_spec
from tokenbound.data.tokenizer import escape, unescape
from tokenbound.errors import UserError

TEXT = "To be, or not to be: café — 日本\n  tabs\tand  spaces\n"


def test_bytes():
    tok = tokenizer_from_spec("bytes")
    ids = tok.encode("hé\n")
    assert ids.tolist() == [104, 0xC3, 0xA9, 10]  # UTF-8 of é is C3 A9
    assert tok.decode(ids) == "hé\n"
    assert (tok.vocab_size, tok.eot_id, tok.start_id, tok.spec) == (256, None, 10, "bytes")
    assert tok.encode_document("ab", "d").tolist() == [97, 98]  # no EOT appended
    assert tok.decode([0xC3]) == "\ufffd"  # invalid UTF-8 from a sampler does not crash


def test_chars_ids_escapes_and_start():
    tok = tokenizer_from_spec("chars:ACGT")
    assert tok.encode("GATTACA").tolist() == [2, 0, 3, 3, 0, 1, 0]
    assert tok.decode([2, 0, 3]) == "GAT"
    # end-of-text and start are symbols of their own, after the alphabet (no real symbol is
    # context-only, and the closing EOT makes the bound independent of the layout)
    assert (tok.vocab_size, tok.eot_id, tok.start_id) == (6, 4, 5)
    assert tok.encode_document("GAT", "d").tolist() == [2, 0, 3, 4]
    assert tok.decode([5, 2, 0, 3, 4]) == "GAT"  # start and EOT decode to nothing
    with pytest.raises(ValueError, match="outside"):
        tok.decode([6])
    nl = tokenizer_from_spec("chars:ab\\n")
    assert (nl.vocab_size, nl.eot_id, nl.start_id) == (5, 3, 4)  # a newline is a plain symbol
    assert tokenizer_from_spec(nl.spec).encode("ba\n").tolist() == [1, 0, 2]
    assert unescape(escape("a\\b\n\t")) == "a\\b\n\t"


def test_chars_errors_name_character_and_document():
    tok = tokenizer_from_spec("chars:ACGT")
    with pytest.raises(UserError, match=r"document seq7: character 'N' \(U\+004E\)"):
        tok.encode_document("ACNG", "seq7")
    with pytest.raises(UserError, match="repeats"):
        tokenizer_from_spec("chars:ACGA")
    with pytest.raises(UserError, match="empty alphabet"):
        tokenizer_from_spec("chars:")


def test_hf_tokenizer_round_trip_and_eot(tmp_path, tiny_hf):
    tk = tiny_hf(tmp_path / "tokenizer.json")
    tok = tokenizer_from_spec(f"hf:{tmp_path / 'tokenizer.json'}")
    assert tok.eot_id == tk.token_to_id("<|endoftext|>") == tok.start_id
    assert tok.vocab_size == tk.get_vocab_size(with_added_tokens=True)
    ids = tok.encode(TEXT)
    assert ids.tolist() == tk.encode(TEXT, add_special_tokens=False).ids
    assert tok.decode(ids) == TEXT
    doc = tok.encode_document("to be", "d")
    assert doc[-1] == tok.eot_id and doc[:-1].tolist() == tk.encode("to be").ids
    batched = tok.encode_many(["to be", TEXT])
    assert [b.tolist() for b in batched] == [tok.encode("to be").tolist(), ids.tolist()]
    # a directory works too, and the spec rebuilds the same tokenizer
    assert tokenizer_from_spec(f"hf:{tmp_path}").encode(TEXT).tolist() == ids.tolist()
    assert tokenizer_from_spec(tok.spec).eot_id == tok.eot_id


def test_hf_eot_override_and_absent(tmp_path, tiny_hf):
    tk = tiny_hf(tmp_path / "t.json", specials=("<pad>", "</s>", "<s>"))
    auto = tokenizer_from_spec(f"hf:{tmp_path / 't.json'}")
    assert auto.eot_id == tk.token_to_id("</s>")
    forced = tokenizer_from_spec(f"hf:{tmp_path / 't.json'}", eot="<pad>")
    assert forced.eot_id == tk.token_to_id("<pad>") and forced.spec.endswith("#eot=<pad>")
    assert tokenizer_from_spec(forced.spec).eot_id == forced.eot_id
    with pytest.raises(UserError, match="not a token"):
        tokenizer_from_spec(f"hf:{tmp_path / 't.json'}", eot="<nope>")
    tk_n = tiny_hf(tmp_path / "n.json", specials=("<pad>", "<s>"))
    none = tokenizer_from_spec(f"hf:{tmp_path / 'n.json'}")
    assert none.eot_id is None and none.start_id == tk_n.token_to_id("<s>") == 1
    assert none.encode_document("to be", "d").tolist() == none.encode("to be").tolist()


@pytest.mark.parametrize("spec, match", [
    ("words", "unknown tokenizer spec"),
    ("hf:/nonexistent/tokenizer.json", "not found"),
    ("gguf:/nonexistent/x.gguf", "not found"),
])
def test_bad_specs(spec, match):
    with pytest.raises(UserError, match=match):
        tokenizer_from_spec(spec)


def test_unloadable_tokenizer_file(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(UserError, match="cannot load tokenizer"):
        tokenizer_from_spec(f"hf:{tmp_path / 'tokenizer.json'}")
    with pytest.raises(UserError, match="--eot only applies"):
        tokenizer_from_spec("bytes", eot="</s>")


@pytest.mark.slow
def test_gguf_smollm2_known_encoding():
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    try:
        tok = tokenizer_from_spec("gguf:smollm2")
    except UserError as exc:
        pytest.skip(str(exc))
    # ids from the environment notes (transformers AutoTokenizer on the same GGUF file)
    assert tok.encode("To be, or not")[:5].tolist() == [2068, 325, 28, 355, 441]
    assert tok.vocab_size == 49152
    assert tok.eot_id == 0 == tok.start_id  # <|endoftext|> is id 0 in SmolLM2
    assert tok.decode(tok.encode(TEXT)) == TEXT
