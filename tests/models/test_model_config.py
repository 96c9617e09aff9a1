"""GPTConfig: JSON round trip, validation naming the field, argparse helpers, model-info CLI."""

import argparse
import json
import pytest

from tokenbound.errors import UserError
from tokenbound.commands.flags import add_model_arguments, config_from_args
from tokenbound.models import GPTConfig, build_model
from tokenbound.models.counts import param_counts


def test_json_round_trip():
    cfg = GPTConfig(linear={"attn": "monarch"}, monarch_blocks=2, subspace_dim=100,
                    max_context=5, position="rope", seed=11)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert GPTConfig.from_dict(d) == cfg
    assert d["linear"] == {"attn": "monarch", "mlp": "dense", "head": "dense"}


@pytest.mark.parametrize("kw,field", [
    ({"d_model": 100, "n_head": 3}, "d_model"),
    ({"linear": {"mlp": "monarch"}, "monarch_blocks": 3}, "monarch_blocks"),
    ({"subspace_dim": 0}, "subspace_dim"),
    ({"n_layer": 0}, "n_layer"),
    ({"linear": {"attn": "butterfly"}}, "attn"),
    ({"linear": {"ffn": "dense"}}, "ffn"),
    ({"linear": {"head": "lora"}}, "tie-embeddings"),
    ({"position": "alibi"}, "position"),
    ({"dropout": 1.0}, "dropout"),
])
def test_bad_config_is_a_user_error_naming_the_field(kw, field):
    with pytest.raises(UserError, match=field):
        GPTConfig(**kw)


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(UserError, match="n_layers"):
        GPTConfig.from_dict({"n_layers": 2})


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    return parser.parse_args(argv)


def test_config_from_args_overrides_only_given_flags():
    base = GPTConfig(n_layer=2, seed=5)
    cfg = config_from_args(_parse(["--d-model", "64", "--arch", "lora", "--no-tie-embeddings",
                                   "--linear", "mlp=monarch", "--subspace-dim", "50"]), base)
    assert (cfg.n_layer, cfg.seed, cfg.d_model, cfg.subspace_dim) == (2, 5, 64, 50)
    assert cfg.tie_embeddings is False
    assert cfg.linear == {"attn": "lora", "mlp": "monarch", "head": "lora"}
    assert config_from_args(_parse([])) == GPTConfig()
    tied = config_from_args(_parse(["--arch", "kronecker"]))
    assert tied.linear == {"attn": "kronecker", "mlp": "kronecker", "head": "dense"}


def test_param_counts_by_part():
    cfg = GPTConfig(vocab_size=32, context_len=8, n_layer=2, n_head=2, d_model=16,
                    linear={"attn": "lora", "mlp": "dense"}, lora_rank=2, norm_affine=True)
    c = param_counts(build_model(cfg))
    # embeddings 32*16 + 8*16; attn per layer: LoRA qkv 2*(16+48) + proj 2*(16+16) trained,
    # W0 48*16 + 16*16 frozen; mlp per layer 2 * 16*64; norms (2 per layer + final) * 16
    assert c["parts"]["embeddings"] == {"trained": 640, "frozen": 0}
    assert c["parts"]["attn"] == {"trained": 2 * (128 + 64), "frozen": 2 * (768 + 256)}
    assert c["parts"]["mlp"] == {"trained": 2 * 2048, "frozen": 0}
    assert c["parts"]["norms"] == {"trained": 5 * 16, "frozen": 0}
    assert c["trained"] == 640 + 384 + 4096 + 80 == sum(
        t.numel() for t in build_model(cfg).trained_state().values())
    assert c["total"] == c["trained"] + c["frozen"]


def test_model_info_cli(capsys):
    from tokenbound.cli import main

    assert main(["model-info", "--json", "--n-layer", "1", "--d-model", "32"]) == 0
    counts = json.loads(capsys.readouterr().out)["counts"]
    # 256*32 token + 256*32 position embeddings + 12 * 32^2 per layer
    assert counts["trained"] == 2 * 256 * 32 + 12 * 32**2
    assert main(["model-info"]) == 0
    assert "851,968" in capsys.readouterr().out  # the 4 x 128 byte GPT of the prototype
    assert main(["model-info", "--d-model", "100", "--n-head", "3"]) == 2
    err = capsys.readouterr().err
    assert "d_model" in err and "Traceback" not in err
    assert main(["model-info", "--init-std", "-1"]) == 2
    assert "init_std" in capsys.readouterr().err
    # a 20-billion-parameter shape is counted without allocating it (built on the meta device)
    assert main(["model-info", "--json", "--n-layer", "100", "--d-model", "4096", "--n-head",
                 "32", "--vocab-size", "50000"]) == 0
    big = json.loads(capsys.readouterr().out)["counts"]
    assert big["trained"] == 50000 * 4096 + 256 * 4096 + 100 * 12 * 4096**2  # tied head


@pytest.mark.parametrize("linear", ["dense", "lora", "kronecker", "monarch"])
def test_meta_build_counts_like_the_real_one(linear):
    from tokenbound.models import GPTConfig, build_model
    from tokenbound.models.counts import param_counts

    cfg = GPTConfig(vocab_size=64, n_layer=2, d_model=32, n_head=2, monarch_blocks=4,
                    linear={"attn": linear, "mlp": linear})
    assert param_counts(build_model(cfg, device="meta")) == param_counts(build_model(cfg))
