PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python examples/quickstart.py

# pytest exits 5 when it collects no test: that must fail, and it does (any non-zero exit fails make).
test: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python -m pytest -q

test-fast: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python -m pytest -q -m "not slow"

# PyTorch, for the side-by-side WGAN-GP benchmark, lives in its own environment.
BENCH_TORCH := .bench/torch/bin/python

$(BENCH_TORCH):
	$(PY) -m venv .bench/torch
	$(BENCH_TORCH) -m pip install --quiet torch==2.13.0 numpy

bench: $(STAMP) $(BENCH_TORCH)
	$(BIN)/python benchmarks/counterfactual.py
	$(BIN)/python benchmarks/identification.py
	$(BIN)/python benchmarks/adversarial.py
	$(BIN)/python benchmarks/modular_dcm.py --json benchmarks/results/modular_dcm-$$(date +%F)-cpu.json
	$(BIN)/python benchmarks/avici.py --json benchmarks/results/avici-$$(date +%F)-cpu.json

lint: $(STAMP)
	$(BIN)/ruff check probcausal tests examples benchmarks
	$(BIN)/ruff format --check probcausal tests examples benchmarks

clean:
	rm -rf $(VENV) .bench .pytest_cache build *.egg-info
