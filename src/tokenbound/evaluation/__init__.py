"""tokenbound.evaluation (being built)."""
