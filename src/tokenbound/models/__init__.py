"""tokenbound.models (being built)."""
