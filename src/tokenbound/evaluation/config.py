"""`EvalConfig`: the options of one evaluation, the flags of `tokenbound evaluate` and the
recipe's `evaluate:` section (one `tokenbound.configs.setting` per field)."""

from __future__ import annotations

from dataclasses import dataclass

from tokenbound.configs import Config, ConfigError, setting
from tokenbound.evaluation.fused import STATS
from tokenbound.evaluation.sampling import check_sample_size
from tokenbound.evaluation.sources import DTYPES
from tokenbound.evaluation.windows import check_policy

MODES = ("exact", "sampled")


@dataclass
class EvalConfig(Config):
    """Options of one evaluation (the identity fields are checked on resume); each field is a
    `tokenbound.configs.setting` whose help text is `tokenbound evaluate`'s."""

    context_len: int = setting(help="window length L (default: the model's maximum context "
                                    "on CUDA, min(that, 1024) on a CPU so that a run finishes; "
                                    "L is recorded in the manifest: fix it before scoring)",
                               flag="--context", cli={"metavar": "L"})
    # L: input tokens of a full window (<= the model's maximum context)
    stride: int | None = setting(None, "stride s in [1, L]: s = L block evaluation (default), "
                                       "s = 1 exact sliding context", cli={"metavar": "S"})
    mode: str = setting("exact", "exact: every window; sampled: windows of --samples drawn "
                                 "positions", cli={"choices": MODES})
    n_samples: int | None = setting(None, "positions drawn (sampled mode)", flag="--samples",
                                    cli={"metavar": "N"})
    # n: positions drawn with replacement (sampled mode only)
    seed: int = setting(0, "seed of the sampling stream (fix before training)")
    batch_size: int | str = setting(8, "windows per forward pass, or auto: the largest that "
                                       "fits in CUDA memory", cli={"metavar": "B"})
    # equal lengths only; "auto" doubles 1, 2, 4, ... up to the number of windows (8 on the CPU)
    device: str = setting("cpu", "cpu or cuda (default: cuda if available)")
    dtype: str = setting("fp32", "model weights dtype (the log-softmax is always fp32). bf16 "
                                 "rounds the decoded weights, so the certificate is for that "
                                 "rounded model: fix the dtype before scoring, or pay for trying "
                                 "both (bound --candidates 2)", cli={"choices": tuple(DTYPES)})
    shard_tokens: int = setting(65536, "input tokens per shard (resume granularity)",
                                cli={"metavar": "N"})
    # shard = max(1, shard_tokens // L) windows
    vocab_chunk: int | None = setting(None, "compute token statistics over vocabulary chunks "
                                            "of N (large vocabularies)", cli={"metavar": "N"})
    compile: bool = setting(False, "torch.compile the forward pass (GPUs)",
                            cli={"action": "store_true"})
    stats: str = setting("auto", "per-token statistics: fused reads each logits row once "
                                 "(Triton kernel on CUDA); auto = fused on CUDA, torch on CPU",
                         cli={"choices": STATS})
    # "torch" is `token_stats`; see `fused.stats_fn`

    def __post_init__(self):
        self.stride = self.context_len if self.stride is None else self.stride
        check_policy(self.context_len, self.stride)
        if self.mode not in MODES:
            raise ConfigError("mode", "{mode} must be one of {modes} (got {v!r})", modes=MODES,
                              v=self.mode)
        if self.mode == "sampled" and self.n_samples is None:
            raise ConfigError("mode", "{mode} sampled needs {n_samples} N (N >= 1)")
        if self.mode == "sampled" and int(self.n_samples) < 1:
            raise ConfigError("n_samples", "{n_samples} must be >= 1, got {v}", v=self.n_samples)
        if self.mode == "sampled":
            check_sample_size(self.n_samples)
        if self.mode == "exact" and self.n_samples:
            raise ConfigError("n_samples", "{n_samples} only applies to {mode} sampled; drop it "
                              "or add the mode")
        if self.batch_size != "auto" and (isinstance(self.batch_size, str)
                                          or int(self.batch_size) < 1):
            raise ConfigError("batch_size", "{batch_size} must be an integer >= 1 or auto "
                              "(got {v!r})", v=self.batch_size)
        if self.dtype not in DTYPES:
            raise ConfigError("dtype", "{dtype} {v!r}: use one of {kinds}", v=self.dtype,
                              kinds=", ".join(DTYPES))
        if self.stats not in STATS:
            raise ConfigError("stats", "{stats} must be one of {kinds} (got {v!r})", kinds=STATS,
                              v=self.stats)
        if int(self.seed) < 0:
            raise ConfigError("seed", "{seed} must be >= 0 (got {v})", v=self.seed)
        if int(self.shard_tokens) < 1:
            raise ConfigError("shard_tokens", "{shard_tokens} must be >= 1 (got {v}); the "
                              "default 65536 suits most runs", v=self.shard_tokens)
        if self.vocab_chunk is not None and int(self.vocab_chunk) < 1:
            raise ConfigError("vocab_chunk", "{vocab_chunk} must be >= 1 (got {v}); leave it "
                              "out to compute the statistics over the whole vocabulary",
                              v=self.vocab_chunk)

    @property
    def shard_windows(self) -> int:
        return max(1, int(self.shard_tokens) // int(self.context_len))
