"""tokenbound.data: corpora -> token streams (flat token array on disk + meta.json).

Public API (docs/ARCHITECTURE.md):

    open_stream(dir, *, verify=False) -> TokenStream
    write_stream(dir, docs, meta, *, overwrite=False) -> TokenStream   # atomic
    tokenizer_from_spec(spec, *, eot=None) -> Tokenizer
    load_corpus(name_or_path, ..., tokenizer=None) -> Corpus   # tokenizer: to read a .bin file
    prepare_corpus(corpus, tok, out, request, ...)
    prepare(corpus, tok, out, ...) -> [SplitSummary]     # `tokenbound prepare` and the pipeline

Conventions (METHOD sections 1 and 3): documents concatenated in a fixed order; with an
end-of-text token every document ends with it (scored); `start_id` is fed before each document
as context only. Never imports torch.
"""

from tokenbound.data.corpora import Corpus, hash_heldout, load_corpus, split_scenes
from tokenbound.data.files import Document, TokenDocument
from tokenbound.data.prepare import SplitSummary, make_request, prepare, prepare_corpus
from tokenbound.data.stream import TokenStream, dtype_for_vocab, is_stream, open_stream
from tokenbound.data.tokenizer import Tokenizer, tokenizer_from_spec
from tokenbound.data.write import write_stream

__all__ = ["Corpus", "Document", "SplitSummary", "TokenDocument", "TokenStream", "Tokenizer",
           "dtype_for_vocab", "hash_heldout", "is_stream", "load_corpus", "make_request",
           "open_stream", "prepare", "prepare_corpus", "split_scenes", "tokenizer_from_spec",
           "write_stream"]
