"""The disjoint-split prior: a seeded split of the training documents (data/split.py), a base
trained on the prior part, a delta certified on the bound part only."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tokenbound.cli import main
from tokenbound.errors import UserError

sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
from training_helpers import TINY, write_toy_data  # noqa: E402


def test_split_is_seeded_disjoint_and_refuses_an_empty_part():
    from tokenbound.data.split import split_documents

    a = split_documents(10, 0.5, seed=0)
    assert a.sum() == 5 and np.array_equal(a, split_documents(10, 0.5, seed=0))
    assert not np.array_equal(a, split_documents(10, 0.5, seed=1))
    assert split_documents(7, 0.3, seed=2).sum() == 2  # round(2.1)
    for n, f in ((3, 0.1), (3, 0.9), (1, 0.5)):
        with pytest.raises(UserError, match="empty"):
            split_documents(n, f, seed=0)
    with pytest.raises(UserError, match="strictly between"):
        split_documents(10, 1.0, seed=0)


def test_write_split_keeps_documents_and_records_the_rule(tmp_path):
    from tokenbound.data import open_stream
    from tokenbound.data.split import write_split

    data = Path(write_toy_data(tmp_path / "data", n_train=20))
    prior, bound = write_split(data / "train", data, 0.25, seed=3)
    train = open_stream(str(data / "train"))
    docs = [tuple(train.tokens[train.doc_offsets[d]:train.doc_offsets[d + 1]])
            for d in range(train.n_docs)]

    def parts(s):
        return [tuple(s.tokens[s.doc_offsets[d]:s.doc_offsets[d + 1]]) for d in range(s.n_docs)]

    assert prior.n_docs == 5 and bound.n_docs == 15
    assert sorted(parts(prior) + parts(bound)) == sorted(docs)
    assert len(prior) + len(bound) == len(train)
    split = bound.meta["prior_split"]
    assert split["part"] == "bound" and split["prior_identity"] == prior.identity
    assert split["n_tokens"] == [len(prior), len(bound)] and split["of"] == train.identity
    again = write_split(data / "train", data, 0.25, seed=3)  # idempotent
    assert again[1].identity == bound.identity
    with pytest.raises(UserError, match="another split"):
        write_split(data / "train", data, 0.5, seed=3)
    with pytest.raises(UserError, match="empty"):
        write_split(data / "train", tmp_path / "x", 0.01, seed=3)
    assert not (tmp_path / "x").exists()


def test_split_prior_certifies_the_bound_part_without_a_statement(tmp_path, capsys):
    from tokenbound.data.split import write_split

    data = Path(write_toy_data(tmp_path / "data", n_train=24))
    write_split(data / "train", data, 0.5, seed=0)
    assert main(["train", "--data", str(data / "prior"), "--out", str(tmp_path / "base"),
                 *TINY]) == 0
    ft = ["--steps", "2", "--batch-size", "4", "--seq-len", "12", "--eval-batches", "0",
          "--ckpt-interval", "0", "--no-bf16", "--no-progress", "--device", "cpu"]
    assert main(["train", "--base", str(tmp_path / "base"), "--data", str(data), "--out",
                 str(tmp_path / "ft"), *ft]) == 0
    msg = tmp_path / "ft.tbm"
    assert main(["compress", str(tmp_path / "ft"), "--levels", "7", "--out", str(msg),
                 "--eval-batches", "0", "--json"]) == 0
    for part in ("bound", "prior"):
        assert main(["evaluate", "--model", str(msg), "--data", str(data / part), "--out",
                     str(tmp_path / f"ev-{part}"), "--batch-size", "4"]) == 0
    capsys.readouterr()
    out = tmp_path / "bound.json"
    assert main(["bound", str(tmp_path / "ev-bound"), "--message", str(msg), "--out",
                 str(out)]) == 0
    res = json.loads(out.read_text())
    split = json.loads((data / "bound" / "meta.json").read_text())["prior_split"]
    assert res["prior"]["kind"] == "split" and res["m"] == split["n_tokens"][1]
    assert res["prior"]["covers"]["n_tokens"] == split["n_tokens"][1]
    assert f"{split['n_tokens'][1]:,} tokens" in capsys.readouterr().out
    assert main(["bound", str(tmp_path / "ev-prior"), "--message", str(msg),
                 "--base-independent", "x"]) == 2
    assert "trained on the stream being bounded" in capsys.readouterr().err


def test_a_base_trained_on_the_whole_split_stream_is_no_prior_for_its_bound_part():
    from tokenbound.experiments.prior import prior_section

    split = {"part": "bound", "of": "ALL", "prior_identity": "PRIOR", "seed": 0,
             "prior_fraction": 0.5, "n_docs": [1, 1], "n_tokens": [5, 5]}
    model = {"kind": "message", "prior": {"kind": "run", "path": "b", "sha256": "s",
                                          "data_identity": "ALL"}}
    with pytest.raises(UserError, match="trained on the stream being bounded"):
        prior_section(model, 100, "trust me", stream_identity="BOUND", stream_split=split)
    model["prior"]["data_identity"] = "PRIOR"
    assert prior_section(model, 100, None, stream_identity="BOUND",
                         stream_split=split)["kind"] == "split"


def test_prepare_prior_split_flag(tmp_path, capsys):
    text = "\n\n".join(f"document number {i} " * 3 for i in range(12))
    (tmp_path / "c.txt").write_text(text)
    args = ["prepare", "--corpus", str(tmp_path / "c.txt"), "--out", str(tmp_path / "d"),
            "--doc-separator", "\\n\\n", "--heldout-fraction", "0", "--prior-split", "0.25",
            "--split-seed", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "prior" in out and "bound" in out
    meta = json.loads((tmp_path / "d/bound/meta.json").read_text())
    assert meta["prior_split"]["n_docs"] == [3, 9] and meta["prior_split"]["seed"] == 1
    assert main(args[:-4] + ["--prior-split", "0.01"]) == 2
    assert "leaves the prior part empty" in capsys.readouterr().err
