"""tokenbound.bounds (being built)."""
