"""Model sources live in one module above evaluation (docs/ARCHITECTURE.md): evaluation scores
any (B, T) -> (B, T, V) callable and imports neither compression nor training; the package has
one Hugging Face causal-LM loader."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "tokenbound"


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_evaluation_imports_neither_compression_nor_training_nor_transformers():
    for path in sorted((SRC / "evaluation").glob("*.py")):
        bad = {m for m in _imports(path) if m.split(".")[:2] in (["tokenbound", "compression"],
                                                                 ["tokenbound", "training"],
                                                                 ["tokenbound", "sources"])
               or m.split(".")[0] == "transformers"}
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_one_hugging_face_model_loader():
    users = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                   if "AutoModelForCausalLM" in p.read_text())
    assert users == ["sources.py"]
