"""`tokenbound calc`: a bound from summary numbers (mean loss, tokens, code bits), no model needed."""

from __future__ import annotations

import argparse
import json
import math

from tokenbound.errors import UserError

HELP = "compute a bound from summary numbers (mean loss, tokens, code bits)"

DESCRIPTION = """Compute a token-level bound from summary numbers (bits per token throughout).

  L = C + 2 log2 C bits (+1 unless 8 | C; 0 if C = 0)   D = (L + E) ln 2 nats   G = --grid-points
  every bound is capped at the trivial a + c (every loss lies in [a, a + c]), then labelled
  "trivial (capped at a + c)"
  c, a from --vocab V --alpha A:  a = -log2(1 - A + A/V),  c = log2(1 + (1 - A) V / A)
  (or given directly by --range c --offset a; --range 1 --offset 0 is a top-k error rate)

  paper      (needs --samples n; the published arithmetic, NOT a certificate), r = n/(n+M):
             mean + c [ sqrt((D - ln(r delta)) / (2M)) + sqrt(-ln((1 - r) delta) / (2n)) ]
  azuma      with --samples n (any n, also n >= M: positions are drawn with replacement, so
             n draws need not cover every token): delta1 = delta n/(n+M), delta2 = delta M/(n+M),
                       sampling term c sqrt(ln(G/delta2) / (2n));
             without --samples (every token scored): delta1 = delta, no sampling term.
             complexity term c sqrt((D + ln G + ln(1/delta1)) / (2M))
  bernstein  exact evaluation only (no --samples); needs --var v = mean over the M
             tokens of (l_i - h_i)^2 in bits^2, h_i the predictable center.
             K = D + ln G + ln(1000) + ln(1/delta);
             bound = mean + min over 1,000 lam in [1e-4, 0.999] of
                     psi(lam) v / (lam c) + c K / (lam M),   psi(lam) = -ln(1 - lam) - lam
"""

EPILOG = """examples:
  tokenbound calc --method azuma --mean 3.2 --tokens 4796184 --code-bits 128015 --vocab 256 --alpha 0.1
  tokenbound calc --method bernstein --mean 3.2 --var 2.9 --tokens 4796184 --code-bits 128015 --vocab 256 --alpha 0.01 --json
  tokenbound calc --cases cases.jsonl     # keys = the flags with underscores; one JSON line out per line in
                                          # (a bad line gives {"error": ...}; exit status 1 if any line failed)
"""

FIELDS = ("method", "mean", "tokens", "code_bits", "extra_bits", "samples", "vocab", "alpha",
          "range", "offset", "var", "grid_points", "delta")
DEFAULTS = {"extra_bits": 0, "grid_points": 1, "delta": 0.05}
METHODS = ("paper", "azuma", "bernstein")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--method", choices=METHODS, help="paper (published arithmetic), azuma, or bernstein")
    a("--mean", type=float, help="mean smoothed loss in bits/token, offset included")
    a("--tokens", type=float, metavar="M", help="number of scored training tokens M")
    a("--code-bits", type=float, metavar="C",
      help="payload bits C (made prefix-free: C + 2 log2 C, one bit more unless C is whole bytes)")
    a("--extra-bits", type=float, metavar="E", help="extra self-delimiting bits E (default 0)")
    a("--samples", type=float, metavar="N", help="sampled tokens/windows n (omit for exact evaluation)")
    a("--vocab", type=float, metavar="V", help="vocabulary size V (with --alpha)")
    a("--alpha", type=float, help="prediction smoothing alpha in (0, 1) (with --vocab)")
    a("--range", type=float, metavar="c", help="loss range c (instead of --vocab/--alpha)")
    a("--offset", type=float, metavar="a", help="loss offset a (with --range; default 0)")
    a("--var", type=float, metavar="v", help="bernstein: mean of (l_i - h_i)^2 in bits^2")
    a("--grid-points", type=float, metavar="G", help="hyperparameter candidates searched, paid ln G (default 1)")
    a("--delta", type=float, help="confidence budget delta in (0, 1) (default 0.05)")
    a("--json", action="store_true", help="print one JSON object instead of a table")
    a("--cases", metavar="FILE.jsonl", help="one JSON object of flags per line; one JSON result per line out")


def run(args: argparse.Namespace) -> int:
    if args.cases is not None:
        return _run_cases(args.cases)
    inputs = {k: getattr(args, k) for k in FIELDS if getattr(args, k) is not None}
    result = compute(inputs)
    if args.json:
        print(json.dumps(result))
    else:
        print(_table(result))
    return 0


def _run_cases(path: str) -> int:
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise UserError(f"--cases: cannot read {path!r} ({exc.strerror})") from None
    failed = 0
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            case = json.loads(line)
            if not isinstance(case, dict):
                raise UserError("a case must be a JSON object of flags")
            out = compute(case)
        except (UserError, json.JSONDecodeError) as exc:
            failed += 1
            out = {"error": f"line {lineno}: {exc}"}
        print(json.dumps(out))
    return 1 if failed else 0


def _num(inputs: dict, key: str, *, integer: bool = False, lo: float | None = None,
         open_unit: bool = False, default=None):
    """Read flag `key` as a number and check its domain; errors name the flag."""
    flag = "--" + key.replace("_", "-")
    value = inputs.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{flag} must be a finite number, got {value!r}")
    if integer and not float(value).is_integer():
        raise UserError(f"{flag} must be an integer, got {value!r}")
    if lo is not None and value < lo:
        raise UserError(f"{flag} must be >= {lo:g}, got {value!r}")
    if open_unit and not 0.0 < value < 1.0:
        raise UserError(f"{flag} must lie strictly between 0 and 1, got {value!r}")
    return int(value) if integer else float(value)


def _parse(inputs: dict) -> dict:
    unknown = sorted(set(inputs) - set(FIELDS))
    if unknown:
        raise UserError(f"unknown key(s) {', '.join(unknown)}: use the flag names with underscores")
    method = inputs.get("method")
    if method not in METHODS:
        raise UserError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    p = {"method": method}
    for key in ("mean", "tokens", "code_bits"):
        if inputs.get(key) is None:
            raise UserError(f"--{key.replace('_', '-')} is required")
    p["mean"] = _num(inputs, "mean")
    p["tokens"] = _num(inputs, "tokens", integer=True, lo=1)
    p["code_bits"] = _num(inputs, "code_bits", integer=True, lo=0)
    p["extra_bits"] = _num(inputs, "extra_bits", integer=True, lo=0, default=0)
    p["samples"] = _num(inputs, "samples", integer=True, lo=1)
    p["grid_points"] = _num(inputs, "grid_points", integer=True, lo=1, default=1)
    p["delta"] = _num(inputs, "delta", open_unit=True, default=0.05)
    p["var"] = _num(inputs, "var", lo=0)
    p.update(_range(inputs))
    if not p["offset"] - 1e-12 <= p["mean"] <= p["offset"] + p["range"] + 1e-12:
        raise UserError(f"--mean {p['mean']} lies outside [offset, offset + range] = "
                        f"[{p['offset']:.6g}, {p['offset'] + p['range']:.6g}]")
    return p


def _range(inputs: dict) -> dict:
    """c, a and the random-guess reference from --vocab/--alpha or --range/--offset."""
    from tokenbound.bounds import smoothing

    by_vocab = inputs.get("vocab") is not None or inputs.get("alpha") is not None
    by_range = inputs.get("range") is not None or inputs.get("offset") is not None
    if by_vocab == by_range:
        raise UserError("give either --vocab V --alpha A or --range c [--offset a], not both/neither")
    if by_vocab:
        vocab = _num(inputs, "vocab", integer=True, lo=2)
        alpha = _num(inputs, "alpha", open_unit=True)
        if vocab is None or alpha is None:
            raise UserError("--vocab and --alpha go together: give both")
        offset, rng = smoothing(vocab, alpha)
        return {"vocab": vocab, "alpha": alpha, "range": rng, "offset": offset,
                "random_guess": math.log2(vocab)}
    rng = _num(inputs, "range")
    if rng is None or rng <= 0:
        raise UserError("--range must be a positive number of bits (e.g. --range 1 for top-k)")
    offset = _num(inputs, "offset", lo=0, default=0.0)
    return {"vocab": None, "alpha": None, "range": rng, "offset": offset, "random_guess": None}


def compute(inputs: dict) -> dict:
    """The calc result as a JSON-able dict (terms, inputs, derived quantities).

    Every term comes from `tokenbound.bounds` (the functions `certify_exact`, `certify_sampled`
    and `paper_bound` use); this module only parses the flags and lays out the result.
    """
    from tokenbound.bounds import LN2_NATS, is_vacuous, prefix_free_bits, trivial_cap

    p = _parse(inputs)
    pf = prefix_free_bits(p["code_bits"])
    out = dict(p, prefix_free_bits=pf, d_nats=(pf + p["extra_bits"]) * LN2_NATS, lam=None,
               sampling_term=0.0, certificate=True, empirical=p["mean"])
    out.update({"paper": _paper, "azuma": _azuma, "bernstein": _bernstein}[p["method"]](p))
    out["bound"], out["trivial"] = trivial_cap(
        out["mean"] + out["complexity_term"] + out["sampling_term"], out["offset"], out["range"])
    out["vacuous"] = is_vacuous(out["bound"], out["random_guess"], out["offset"], out["range"])
    return out


def _paper(p: dict) -> dict:
    """The published arithmetic (`bounds.paper_bound`); not a certificate."""
    from tokenbound.bounds import paper_bound

    if p["samples"] is None:
        raise UserError("--method paper needs --samples n (the published formula has a sampling term)")
    if p["grid_points"] != 1:
        raise UserError("--grid-points does not apply to --method paper (its arithmetic pays no grid)")
    res = paper_bound(p["mean"], p["offset"], p["range"], p["tokens"], p["samples"],
                      p["code_bits"], p["extra_bits"], p["delta"])
    return dict(complexity_term=res.complexity_term, sampling_term=res.sampling_term,
                certificate=False, delta_1=res.delta_split["delta_1"],
                delta_2=res.delta_split["delta_2"])


def _azuma(p: dict) -> dict:
    """Azuma (METHOD 2.2) with, given --samples n, the Hoeffding sampling term (METHOD 2.5) for
    every n: positions are drawn with replacement, so n >= M draws need not cover every token."""
    from tokenbound.bounds import azuma_term, complexity_nats, hoeffding_term, split_delta

    c, m, n, g = p["range"], p["tokens"], p["samples"], p["grid_points"]
    split = split_delta(p["delta"], m, n)
    k, _ = complexity_nats(p["code_bits"], p["extra_bits"], split["delta_1"], {"points": g})
    out = dict(split, k_nats=k, complexity_term=azuma_term(c, k, m))
    if n is not None:
        out["sampling_term"] = hoeffding_term(c, n, split["delta_2"], g)
    return out


def _bernstein(p: dict) -> dict:
    """Empirical Bernstein, Fan form (METHOD 2.4), exact evaluation only."""
    from tokenbound.bounds import complexity_nats, fan_term, grids, split_delta

    c = p["range"]
    if p["var"] is None:
        raise UserError("--method bernstein needs --var v (mean of (l_i - h_i)^2 in bits^2)")
    if p["samples"] is not None:
        raise UserError("--method bernstein is for exact evaluation (every token scored): drop "
                        "--samples, or use --method azuma for a sample")
    if p["var"] > c * c * (1 + 1e-12):
        raise UserError(f"--var {p['var']} exceeds range^2 = {c * c:.6g}: it cannot be right")
    lams = grids.BERNSTEIN_LAMBDAS
    split = split_delta(p["delta"], p["tokens"])
    k, _ = complexity_nats(p["code_bits"], p["extra_bits"], split["delta_1"],
                           {"points": p["grid_points"], "lambda": len(lams)})
    term, lam = fan_term(p["var"], c, k, p["tokens"], lams)
    return dict(split, k_nats=k, complexity_term=term, lam=lam)


def _table(r: dict) -> str:
    from tokenbound.bounds import value_label

    rows = [("method", r["method"] + ("" if r["certificate"] else "  (NOT a certificate)")),
            ("empirical mean (bits)", f"{r['empirical']:.6f}"),
            ("complexity term", f"{r['complexity_term']:.6f}"),
            ("sampling term", f"{r['sampling_term']:.6f}"),
            ("bound (bits/token)", value_label(r["bound"], r["trivial"], 6)
             + ("  VACUOUS" if r["vacuous"] else "")),
            ("range c / offset a", f"{r['range']:.6f} / {r['offset']:.6f}"),
            ("code bits C -> L", f"{r['code_bits']:,} -> {r['prefix_free_bits']:,.1f}"),
            ("tokens M / samples n", f"{r['tokens']:,} / {r['samples'] if r['samples'] else '-'}"),
            ("delta", f"{r['delta']:g} (delta_1 = {r['delta_1']:.4g})")]
    if r["lam"] is not None:
        rows.append(("lambda", f"{r['lam']:.6g}"))
    if r["random_guess"] is not None:
        rows.append(("random guess (log2 V)", f"{r['random_guess']:.6f}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
