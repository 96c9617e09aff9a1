"""Subcommand implementations (one module each; see tokenbound.cli)."""
