"""Typed results between the pipeline's steps, and the provenance of every results file."""

import json

from tokenbound import __version__
from tokenbound.experiments.report import write_results
from tokenbound.experiments.results import Certified, Compressed
from tokenbound.provenance import git_commit, package_info


def test_compressed_is_compress_json_and_back():
    c = Compressed(out="m.tbm", total_bits=80, bits_by_part={"header": 80},
                   prefix_free_bits=92.6, trained_parameters=4, quantized_parameters=4,
                   bits_per_parameter=20.0, sha256="ab", quant={"levels": 3}, hf="dir")
    d = c.to_dict()
    # unset optional keys are absent, the loss estimates are kept as null
    assert "run" not in d and "qat_steps" not in d and d["hf"] == "dir"
    assert d["loss_before"] is None and "loss_increase" in d
    assert Compressed.from_dict(json.loads(json.dumps(d)) | {"unknown": 1}) == c


def test_certified_omits_the_paper_in_exact_mode():
    c = Certified(mode="exact", vocab_size=4, alphas=[0.1], topk={}, eval_manifest={},
                  token={"best": {"value": 1.5}}, m=10, mean_bits=1.0)
    assert list(c.to_dict()) == ["mode", "vocab_size", "alphas", "topk", "eval_manifest",
                                 "token", "m", "n", "mean_bits"]
    assert c.best == {"value": 1.5} and Certified.from_dict(c.to_dict()) == c


def test_experiment_results_carry_version_and_commit(tmp_path):
    text = write_results("toy", {"title": "Toy", "columns": ["a"], "rows": [[1]]}, tmp_path,
                         {"command": "tokenbound experiment toy"})
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["provenance"]["tokenbound_version"] == __version__
    assert saved["provenance"]["git_commit"] == git_commit()
    assert saved["provenance"]["command"] == "tokenbound experiment toy"
    assert f"tokenbound {__version__}, commit {git_commit()}" in text
    assert (tmp_path / "results.md").read_text() == text


def test_training_config_records_the_same_provenance():
    from tokenbound.training.run import resolved_config

    class Stream:
        sha256, identity = "s", "i"

    from tokenbound.models import GPTConfig
    from tokenbound.training import TrainConfig

    cfg = TrainConfig(data="d", out="o", model=GPTConfig())
    assert resolved_config(cfg, Stream(), None)["provenance"] == package_info()
