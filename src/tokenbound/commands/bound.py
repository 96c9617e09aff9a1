"""`tokenbound bound`: evaluation statistics + message length -> certified bounds."""

from __future__ import annotations

HELP = "turn evaluation stats + the message length into certified bounds (every family)"
DESCRIPTION = """Compute the bounds of every family from an evaluation directory (written by
`tokenbound evaluate`) and the model's message (its exact length C in bits; or --code-bits for a
model whose message is stored elsewhere: its exact length in bits). A GGUF model: `tokenbound
compress --gguf FILE --out M.tbm` writes its message (length: code_bits_certificate); evaluate
--model M.tbm and pass --message M.tbm. A .gguf file evaluated as it is has C = the whole file
(--message FILE.gguf; longer). Exact mode: azuma, empirical
Bernstein and betting token-level bounds (certified value = their minimum, with ln(#families),
ln(#alphas), ln(#centers) and each lambda grid paid; the grids the evaluation recorded),
top-1/10/100 error bounds (kl, azuma, bernstein), and the document-level bound. Sampled mode:
azuma and Bernstein with sampling terms (betting UCBs by default), plus the paper's arithmetic
shown beside them (not a certificate).
Every loss lies in [a, a + c], so a bound at or above a + c says nothing: it is printed as a + c,
labelled "trivial (capped at a + c)" (its terms, in --json, keep their uncapped values). Top-k
rows appear only for k below the vocabulary size."""
EPILOG = """examples:
  tokenbound bound runs/demo/eval_train --message runs/demo/model.tbm
  tokenbound compress --gguf SmolLM2-135M-Instruct.Q4_1.gguf --out smol.tbm
  tokenbound evaluate --model smol.tbm --data DATA/train --out EVAL ...
  tokenbound bound EVAL --message smol.tbm --json --out bound.json
  tokenbound bound EVAL --message model.tbm --csv > bounds.csv
"""
CSV_ROWS = ("certified", "candidate", "document", "top-K", "paper")
CSV_COLUMNS = ("bound", "family", "alpha", "center", "lam", "value", "empirical", "offset",
               "range", "complexity_term", "sampling_term", "delta", "code_bits", "m", "n",
               "random_guess", "vacuous", "certificate", "trivial")


def add_arguments(parser):
    parser.add_argument("eval_dir", help="evaluation directory (tokenbound evaluate --out)")
    g = parser.add_mutually_exclusive_group(required=True)
    g.add_argument("--message", help="the message file that was evaluated (its length is C)")
    g.add_argument("--code-bits", type=int, help="C in bits, when the model is described elsewhere")
    parser.add_argument("--extra-bits", type=int, default=0,
                        help="bits for choices made after seeing data not covered by the grids")
    parser.add_argument("--candidates", type=int, default=1,
                        help="other candidates compared on these results (checkpoints x "
                             "quantizations x strides): ln(N) in the union bound, and in sampled "
                             "mode in the sampling terms too")
    parser.add_argument("--estimator", choices=["betting", "maurer-pontil", "hoeffding"],
                        default=None, help="UCB estimator of the sampling terms (default "
                                           "betting); applies to sampled evaluations only")
    parser.add_argument("--delta", type=float, default=0.05, help="failure probability (0.05)")
    parser.add_argument("--base-independent", metavar="REASON", default=None,
                        help="your statement that the prior was fixed without looking at these "
                             "tokens: required for a fine-tuned model (its base is the prior) "
                             "and for a Hugging Face/GGUF model with --code-bits below its own "
                             "files' size; stored verbatim in the report")
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the full JSON result")
    fmt.add_argument("--csv", action="store_true",
                     help="print the bounds as CSV, one row per bound (" + ", ".join(CSV_ROWS)
                          + ") with the columns " + ", ".join(CSV_COLUMNS))
    parser.add_argument("--out", help="also write the JSON result to this file")


def run(args) -> int:
    import json
    import sys
    from pathlib import Path

    from tokenbound.errors import UserError
    from tokenbound.experiments import steps
    from tokenbound.fileio import file_sha256

    if not 0 < args.delta < 1:
        raise UserError(f"--delta must lie in (0, 1), got {args.delta}")
    if args.code_bits is not None and args.code_bits < 0:
        raise UserError(f"--code-bits must be >= 0, got {args.code_bits}")
    if not (Path(args.eval_dir) / "eval.json").is_file():
        raise UserError(f"{args.eval_dir}: no eval.json; run `tokenbound evaluate --out "
                        f"{args.eval_dir}` first (or let it finish)")
    code_bits = args.code_bits
    ev = steps.read_json(Path(args.eval_dir) / "eval.json") or {}
    model = ev.get("manifest", {}).get("model", {})
    model = model if isinstance(model, dict) else {}
    if code_bits is not None:
        size = model.get("message_bytes")
        if size and code_bits < 8 * size:
            raise UserError(f"{args.eval_dir} scored a message of {size:,} bytes, so C is at least "
                            f"{8 * size:,} bits; pass --message {model.get('path', 'FILE')} "
                            f"instead of --code-bits {code_bits}")
    if args.message:
        p = Path(args.message)
        if not p.is_file():
            raise UserError(f"--message {args.message}: no such file")
        code_bits = 8 * p.stat().st_size
        if p.suffix == ".gguf":
            print(f"note: C = the whole GGUF file ({code_bits:,} bits); `tokenbound compress "
                  f"--gguf {p} --out M.tbm` writes its shorter message (evaluate --model M.tbm "
                  "and pass --message M.tbm)", file=sys.stderr)
        want = model.get("sha256")
        if want and want != file_sha256(p):
            raise UserError(f"--message {args.message} is not the model that was evaluated in "
                            f"{args.eval_dir} (sha256 differs); evaluate this message first")
    from tokenbound.experiments.prior import prior_section

    prior = prior_section(model, code_bits, args.base_independent,
                          stream_identity=ev.get("manifest", {}).get("stream_identity"),
                          n_tokens=ev.get("manifest", {}).get("n_tokens"),
                          stream_split=ev.get("manifest", {}).get("prior_split"))
    estimator = args.estimator or "betting"
    res = steps.certify(args.eval_dir, code_bits, delta=args.delta, extra_bits=args.extra_bits,
                        extra_candidates=args.candidates,
                        estimator=estimator.replace("maurer-pontil", "maurer_pontil")).to_dict()
    res["prior"] = prior
    if args.estimator is not None and res["mode"] != "sampled":
        print(f"warning: --estimator {args.estimator} is ignored: {args.eval_dir} is an exact "
              "evaluation (no sampling term)", file=sys.stderr)
    if args.out:
        steps.atomic_json(args.out, res)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    if args.csv:
        _print_csv(res, sys.stdout)
        return 0
    _print(res, code_bits)
    return 0


def _print(res: dict, code_bits: int) -> None:
    from tokenbound.bounds import best_per_family, value_label

    best = res["token"]["best"]
    print(f"certified bound: {value_label(best['value'], best.get('trivial', False))} "
          f"bits/token ({best['family']}, alpha = "
          f"{best['alpha']}, delta = {best['delta']}; "
          f"{'VACUOUS' if best['vacuous'] else 'non-vacuous'}; random guess "
          f"{best['random_guess']:.3f})")
    print(f"  empirical {best['empirical']:.4f} + complexity {best['complexity_term']:.4f} + "
          f"sampling {best['sampling_term']:.4f}   (C = {code_bits:,} bits, m = {res['m']:,})")
    for f, c in best_per_family(res["token"]["candidates"]).items():
        print(f"  {f:10s} {value_label(c['value'], c.get('trivial', False))}  (alpha "
              f"{c['alpha']}, center {c['center']})")
    from tokenbound.experiments.prior import format_prior

    for line in format_prior(res["prior"]):
        print(f"  {line}")
    if res.get("eval_manifest", {}).get("dtype", "fp32") != "fp32":
        print(f"  (scored in {res['eval_manifest']['dtype']}: the bound holds for the decoded "
              f"model with its weights rounded to {res['eval_manifest']['dtype']})")
    if res.get("paper"):
        paper = res["paper"]
        print(f"  paper      {value_label(paper['value'], paper.get('trivial', False))}  (not a "
              "certificate)")
    if res["mode"] == "sampled":  # res["topk"] lists the k evaluated; no top-k bounds here
        est = best.get("extras", {}).get("estimator", "betting")
        print(f"  sampled: n = {res['n']:,} draws ({est} UCBs); top-k error and "
              "document-level bounds need evaluate --mode exact")
        return
    for k, t in res["topk"].items():
        b = t["best"]
        print(f"top-{k} error bound {value_label(b['value'], b.get('trivial', False))} "
              f"({b['family']}; empirical {b['empirical']:.4f})")
    doc = res["token"].get("document")
    if doc:
        print(f"document-level bound {value_label(doc['value'], doc.get('trivial', False))} "
              f"(N = {doc['m']:,} documents, i.i.d. assumed)")


def _csv_rows(res: dict) -> list[tuple[str, dict]]:
    """(bound, BoundResult dict) of every bound in `steps.certify`'s result: the certified
    token-level bound, every candidate it was the minimum of, the document-level bound, the
    top-k bounds, the paper's arithmetic (not a certificate)."""
    rows = [("certified", res["token"]["best"])]
    rows += [("candidate", c) for c in res["token"]["candidates"]]
    if res["token"].get("document"):
        rows.append(("document", res["token"]["document"]))
    if res["mode"] == "exact":
        rows += [(f"top-{k}", t["best"]) for k, t in res["topk"].items()]
    if res.get("paper"):
        rows.append(("paper", res["paper"]))
    return rows


def _print_csv(res: dict, out) -> None:
    """`_csv_rows` as CSV with the header CSV_COLUMNS (empty cells for None)."""
    import csv

    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for name, r in _csv_rows(res):
        w.writerow([name] + ["" if r.get(c) is None else r.get(c) for c in CSV_COLUMNS[1:]])
