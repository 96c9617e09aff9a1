"""tokenbound.experiments (being built)."""
