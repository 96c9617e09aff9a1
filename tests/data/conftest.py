"""Shared fixtures of the data tests."""

import pytest


def build_tiny_hf(path, specials=("<|endoftext|>",)):
    """A byte-level BPE trained on a few sentences (round-trips any text), saved to `path`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, show_progress=False,
                                  special_tokens=list(specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(["to be or not to be", "that is the question"] * 20, trainer)
    tk.save(str(path))
    return tk


@pytest.fixture
def tiny_hf():
    """Factory fixture: `tiny_hf(path, specials=...) -> tokenizers.Tokenizer` (also saved)."""
    return build_tiny_hf
