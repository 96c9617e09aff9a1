"""Tiny bases for the fine-tuning tests: a Llama-style HF causal LM saved from a config object
with a character-level tokenizer.json (nothing is downloaded)."""

from pathlib import Path

TEXT = "\n\n".join(
    f"the {w} sat on the {v} and the {v} sat on the {w} {i}" for i, (w, v) in
    enumerate([("cat", "mat"), ("dog", "log"), ("hen", "pen"), ("fox", "box")] * 6))


def char_tokenizer(path: Path) -> Path:
    """A WordLevel tokenizer over characters (vocab < 64) with <|endoftext|>, saved to path."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    chars = sorted(set(TEXT))
    vocab = {"<|endoftext|>": 0, **{c: i + 1 for i, c in enumerate(chars)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.save(str(path))
    return path


def llama_dir(root: Path, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=True)
    LlamaForCausalLM(cfg).save_pretrained(str(root))
    char_tokenizer(root / "tokenizer.json")
    return root
