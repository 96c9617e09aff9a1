"""tokenbound.training (being built)."""
