"""tokenbound.compression (being built)."""
