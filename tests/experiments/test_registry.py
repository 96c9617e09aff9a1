"""Registry, `tokenbound experiment` listing, and the markov experiment at a toy scale."""

import json
import subprocess
import sys

import pytest

from tokenbound.errors import UserError
from tokenbound.experiments import registry


def test_registry_names_and_modules():
    assert registry.list_experiments() == ["compression", "doc-vs-token", "quantization",
                                           "markov", "memorization", "pretrained", "sampling",
                                           "scaling", "finetune"]
    assert registry.EXPERIMENTS["doc-vs-token"] == "tokenbound.experiments.exp_doc_vs_token"
    mod = registry.load("markov")
    assert callable(mod.run) and isinstance(mod.HELP, str)


def test_unknown_and_every_registered_module_loads():
    with pytest.raises(UserError, match="unknown experiment"):
        registry.load("nope")
    for name in registry.list_experiments():  # no "not built yet" entries any more
        mod = registry.load(name)
        assert callable(mod.run) and isinstance(mod.HELP, str) and mod.HELP


def test_cli_lists_experiments():
    out = subprocess.run([sys.executable, "-m", "tokenbound", "experiment", "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for name in registry.list_experiments():
        assert name in out.stdout


def test_format_table():
    from tokenbound.experiments.report import format_table

    t = format_table(["a", "b"], [{"a": 1, "b": 0.5}, [2000, None]])
    assert t.splitlines() == ["| a | b |", "|---|---|", "| 1 | 0.5000 |", "| 2,000 | — |"]


def test_markov_experiment_toy(tmp_path):
    from tokenbound.experiments.report import render_results as render
    from tokenbound.experiments import exp_markov

    res = exp_markov.run(str(tmp_path), True, False, orders=[0, 1], no_gpt=True,
                         scale_override={"docs": 1})
    rows = res["rows"]
    assert [r["k"] for r in rows] == [0, 1]
    m = res["scale"]["m"]
    for r in rows:
        assert r["bound bits/byte"] >= r["train bits/byte"] - 1e-9
        assert r["code bits"] == 8 * (tmp_path / f"markov-k{r['k']}.bin").stat().st_size
    assert rows[1]["train bits/byte"] < rows[0]["train bits/byte"]  # more context fits better
    assert rows[1]["code bits"] > rows[0]["code bits"]  # ... and costs more
    assert (tmp_path / "markov.png").stat().st_size > 1000
    assert m > 0 and "Markov" in render("markov", json.loads(json.dumps(res)))


def test_command_writes_results(tmp_path, monkeypatch, capsys):
    import types

    from tokenbound.cli import main

    fake = types.ModuleType("tokenbound.experiments.exp_fake")
    fake.HELP = "a fake experiment"
    fake.add_arguments = lambda p: p.add_argument("--level", type=int, default=3)

    def run(out_dir, quick, progress, level=None, **_):
        (tmp_path / "out" / "p.png").write_bytes(b"png")
        return {"title": "Fake", "columns": ["x", "y"], "rows": [{"x": level, "y": quick}],
                "plots": ["p.png"], "notes": ["hello"]}

    fake.run = run
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    monkeypatch.setitem(registry.EXPERIMENTS, "fake", fake.__name__)
    out = tmp_path / "out"
    assert main(["experiment", "fake", "--out", str(out), "--quick", "--level", "7"]) == 0
    printed = capsys.readouterr().out
    assert "| 7 | yes |" in printed and "Machine:" in printed and "Date:" in printed
    res = json.loads((out / "results.json").read_text())
    assert res["rows"] == [{"x": 7, "y": True}] and "command" in res["provenance"]
    assert (out / "results.md").read_text().startswith("## Fake")
    assert main(["experiment"]) == 2  # no name: a one-line error, exit 2
