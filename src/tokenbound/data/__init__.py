"""tokenbound.data (being built)."""
