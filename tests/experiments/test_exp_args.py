"""The experiments' numeric flags: a bad value is one UserError naming the experiment's own
flag, raised before any data is prepared or model trained."""

import subprocess
import sys

import pytest

from tokenbound.errors import UserError
from tokenbound.experiments import exp_markov, exp_memorization, exp_sampling, exp_scaling

CASES = [  # (module, keyword arguments of run, the message must match, flags it must not name)
    (exp_scaling, {"widths": [32, 30]}, r"^--widths 30: every width \(d_model\) must be a "
                                        r"positive multiple of 4", ("--n-head", "--d-model")),
    (exp_scaling, {"widths": [-4]}, r"^--widths -4: ", ()),
    (exp_sampling, {"samples": 0}, r"^--samples 0: use 10 or more", ("--mode",)),
    (exp_sampling, {"samples": 9}, r"^--samples 9: use 10 or more", ("--mode",)),
    (exp_memorization, {"steps": 0}, r"^--steps 0: training needs at least 1 step", ()),
    (exp_memorization, {"steps": -5}, r"^--steps -5: ", ()),
    (exp_markov, {"orders": [0, -1]}, r"^--orders 0 -1: an order k is the number of previous "
                                      r"tokens seen, 0 or more", ()),
]


@pytest.mark.parametrize("mod, kwargs, message, foreign", CASES,
                         ids=[f"{m.__name__.split('.')[-1]}-{k}" for m, k, _, _ in CASES])
def test_bad_flag_values_are_refused_before_any_work(tmp_path, mod, kwargs, message, foreign):
    out, work = tmp_path / "out", tmp_path / "work"
    out.mkdir()
    extra = {"work": str(work)} if "work" in mod.run.__code__.co_varnames else {}
    with pytest.raises(UserError, match=message) as err:
        mod.run(str(out), True, False, **kwargs, **extra)
    for flag in foreign:
        assert flag not in str(err.value)
    assert not any(out.iterdir()) and not work.exists()


def test_the_cli_names_the_experiments_flag(tmp_path):
    r = subprocess.run([sys.executable, "-m", "tokenbound", "experiment", "scaling", "--widths",
                        "30", "--work", str(tmp_path / "w"), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--widths 30" in r.stderr and "--n-head" not in r.stderr
    assert not (tmp_path / "o" / "results.json").exists()
