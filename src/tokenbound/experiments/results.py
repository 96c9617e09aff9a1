"""Typed results handed from one pipeline step to the next (`steps` returns them, `pipeline`
passes them on, `report` renders them).

Each result that a step also writes to disk has `to_dict()` (exactly the JSON of its file:
compress.json, bound.json) and `from_dict()` (reading that file back, unknown keys ignored).
The nested dicts that remain are other packages' own formats, named where they are typed:
`BoundResult.to_dict()` (bounds), eval.json's manifest/totals (evaluation), train.json
(training).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tokenbound.configs import known


@dataclass(frozen=True)
class PreparedSplit:
    """One split written (or found) by the prepare step."""

    n_tokens: int
    n_docs: int
    n_bytes: int   # UTF-8 bytes of its documents' text
    sha256: str    # of the token bytes
    skipped: bool  # an identical stream existed: nothing was written


@dataclass
class Compressed:
    """A message and its exact size: what the compress step returns and compress.json holds.

    `total_bits` is C = 8 * len(message); losses are bits per token on the run's training
    data (fixed seeded windows, `steps.LOSS_SEED`), None when not estimated.
    """

    out: str
    total_bits: int
    bits_by_part: dict           # part -> bits
    prefix_free_bits: float      # C + 2 log2 C
    trained_parameters: int
    quantized_parameters: int
    bits_per_parameter: float
    sha256: str                  # of the message file
    quant: dict                  # QuantConfig.to_dict()
    run: str | None = None       # the training run quantized, or
    hf: str | None = None        # the Hugging Face directory quantized
    loss_before: float | None = None
    loss_after: float | None = None
    loss_increase: float | None = None
    qat_steps: int | None = None         # set for a training run (0: no QAT)
    qat_lr: float | None = None          # set when qat_steps > 0
    qat_optimizer: str | None = None
    train_sha256: str | None = None      # pipeline: sha256 of the trained weights used
    recipe_compress: dict | None = None  # pipeline: the recipe's `compress:` section
    seconds: float | None = None         # pipeline: the step's time
    loss_sample: dict | None = None      # per-group PTQ (experiments/ptq.py): the loss sample
    random_guess_bits_per_token: float | None = None  # log2 V, beside the losses
    warnings: list | None = None         # quantization costs more than a bound can afford

    _KEPT_WHEN_NONE = ("loss_before", "loss_after", "loss_increase")

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items()
                if v is not None or k in self._KEPT_WHEN_NONE}

    @classmethod
    def from_dict(cls, d: dict) -> "Compressed":
        return cls(**known(cls, d))


@dataclass
class Evaluated:
    """A finished evaluation directory: the parts of its eval.json that later steps read."""

    dir: str
    manifest: dict        # what was scored (engine.py's manifest)
    totals: dict          # n_tokens, n_windows, mean_bits, mean_loss_bits (per alpha), ...
    timing: dict          # seconds, tokens_per_s, tokens_scored_this_run
    sample: dict | None = None  # sampled mode: n_draws, per-draw means

    @classmethod
    def from_eval_json(cls, eval_dir, d: dict) -> "Evaluated":
        return cls(dir=str(eval_dir), manifest=d["manifest"], totals=d.get("totals", {}),
                   timing=d.get("timing", {}), sample=d.get("sample"))

    @property
    def model_sha256(self) -> str | None:
        """sha256 of the model that was scored (None when the manifest does not state it)."""
        model = self.manifest.get("model")
        return model.get("sha256") if isinstance(model, dict) else None


@dataclass
class Certified:
    """Every bound of one evaluation and message length: the certify step's result, bound.json.

    `token` is the token-level `BoundResult.to_dict()` (best, candidates, document); `topk`
    maps k to its certificate in exact mode (in sampled mode it lists the k evaluated);
    `paper` (sampled mode only) is the published arithmetic, not a certificate.
    """

    mode: str              # "exact" or "sampled"
    vocab_size: int
    alphas: list
    topk: Any
    eval_manifest: dict
    token: dict
    paper: dict | None = None
    m: int = 0             # tokens in the training stream
    n: int | None = None   # draws (sampled mode)
    mean_bits: float | None = None  # unsmoothed mean loss over all tokens (exact mode)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None or k != "paper"}

    @classmethod
    def from_dict(cls, d: dict) -> "Certified":
        return cls(**known(cls, d))

    @property
    def best(self) -> dict:
        """The certified token-level bound (`BoundResult.to_dict()["best"]`)."""
        return self.token["best"]


@dataclass
class RunResults:
    """Everything `tokenbound run` produced, in step order; `report.build_report` renders it."""

    prepared: dict[str, PreparedSplit]
    trained: dict | None          # train.json (None for an `hf:` model)
    compressed: Compressed
    evaluated: Evaluated
    heldout: Evaluated | None
    heldout_status: str           # "measured", or why the held-out loss is not
    certified: Certified
    timings: dict                 # step -> seconds, total, this_run
    steps_reused: list[str] = field(default_factory=list)
