PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench bench-seeds bench-all lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python examples/quickstart.py

# pytest exits 5 when it collects no test: that must fail, and it does (any non-zero exit fails make).
# pytest-xdist: one worker per core (PYTEST_WORKERS=0 runs the tests in this
# process); the workers share the session's persistent compilation cache. Tests
# that share a trained fixture carry one `xdist_group` and run on one worker,
# which trains it once.
PYTEST_WORKERS ?= auto
PYTEST := MPLBACKEND=Agg $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup

test: $(STAMP)
	$(PYTEST)

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

# The anchors of the side-by-side suite, each in its own environment (pinned).
# PyTorch 2.13.0 installs from the machine's local CPU wheel.
BENCH_ENVS := .bench/chirho/.installed .bench/dowhy/.installed .bench/y0/.installed

.bench/chirho/.installed:
	$(PY) -m venv .bench/chirho
	.bench/chirho/bin/python -m pip install --quiet torch==2.13.0 chirho==0.3.0 pyro-ppl==1.9.2
	touch $@

.bench/dowhy/.installed:
	$(PY) -m venv .bench/dowhy
	.bench/dowhy/bin/python -m pip install --quiet dowhy==0.14
	touch $@

.bench/y0/.installed:
	$(PY) -m venv .bench/y0
	.bench/y0/bin/python -m pip install --quiet y0==0.2.11
	touch $@

# PyTorch, for the side-by-side WGAN-GP benchmark, lives in its own environment.
BENCH_TORCH := .bench/torch/bin/python

$(BENCH_TORCH):
	$(PY) -m venv .bench/torch
	$(BENCH_TORCH) -m pip install --quiet torch==2.13.0 numpy

# probcausal against ChiRho, DoWhy-gcm, y0 and a hand-written JAX floor:
# writes benchmarks/results/<date>.json and docs/benchmarks.md.
bench: $(STAMP) $(BENCH_ENVS)
	$(BIN)/python benchmarks/compare.py

# The seed systems' own benchmarks (training and inference speed).
bench-seeds: $(STAMP) $(BENCH_TORCH)
	$(BIN)/python benchmarks/adversarial.py
	$(BIN)/python benchmarks/modular_dcm.py --json benchmarks/results/modular_dcm-$$(date +%F)-cpu.json
	$(BIN)/python benchmarks/avici.py --json benchmarks/results/avici-$$(date +%F)-cpu.json
	$(BIN)/python benchmarks/biols.py --json benchmarks/results/biols-$$(date +%F)-cpu.json

bench-all: bench bench-seeds

lint: $(STAMP)
	$(BIN)/ruff check probcausal tests examples benchmarks
	$(BIN)/ruff format --check probcausal tests examples benchmarks

clean:
	rm -rf $(VENV) .bench .pytest_cache build *.egg-info
