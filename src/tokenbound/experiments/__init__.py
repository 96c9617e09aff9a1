"""tokenbound.experiments: the pipeline's steps (`steps`: prepare, train, compress, evaluate,
certify), the recipe runner (`pipeline`, `recipes`), reports (`report`), and the paper's
experiments (`registry`, one `exp_*.py` each; `family` holds what the compression-family
experiments share)."""
