"""tokenbound: certified token-level generalization bounds for language models.

Implements Lotfi et al., "Unlocking Tokens as Data Points for Generalization Bounds on Larger
Language Models" (NeurIPS 2024) and the document-level method of Lotfi et al. (ICML 2024),
plus variance-adaptive (empirical Bernstein / betting) martingale bounds. See METHOD in the
project documentation for the mathematics.
"""

__version__ = "0.1.0"


def __getattr__(name):
    """`tokenbound.certify` (`tokenbound.api.certify`), imported on first use: `import
    tokenbound` stays light (no torch)."""
    if name == "certify":
        from tokenbound.api import certify

        return certify
    raise AttributeError(f"module 'tokenbound' has no attribute {name!r}")
