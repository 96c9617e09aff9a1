"""Fixtures of the fine-tuning tests: a tiny Llama base directory and a stream prepared with its
tokenizer (`finetune_helpers`)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from finetune_helpers import TEXT, llama_dir  # noqa: E402


@pytest.fixture(scope="session")
def hf_base(tmp_path_factory):
    return llama_dir(tmp_path_factory.mktemp("llama") / "base")


@pytest.fixture(scope="session")
def hf_data(tmp_path_factory, hf_base):
    from tokenbound.experiments import steps

    root = tmp_path_factory.mktemp("ftdata")
    (root / "corpus.txt").write_text(TEXT)
    steps.prepare(str(root / "corpus.txt"), f"hf:{hf_base}/tokenizer.json", root / "data",
                  heldout_fraction=0.2, doc_separator="\\n\\n")
    return root / "data"
