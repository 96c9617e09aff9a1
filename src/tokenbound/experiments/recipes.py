"""The recipes shipped inside the package (`tokenbound/recipes/*.yaml`)."""

from __future__ import annotations

from pathlib import Path

from tokenbound.errors import UserError

RECIPE_DIR = Path(__file__).resolve().parent.parent / "recipes"


def shipped() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def recipe_path(name_or_path: str) -> Path:
    """A path to a recipe file, or the name of a shipped one (`demo`, `demo-quick`, ...)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped_p = RECIPE_DIR / f"{name_or_path}.yaml"
    if shipped_p.is_file():
        return shipped_p
    raise UserError(f"recipe {name_or_path!r}: no such file, and not a shipped recipe "
                    f"({', '.join(shipped())})")
