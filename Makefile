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

bench: $(STAMP)
	$(BIN)/python benchmarks/counterfactual.py
	$(BIN)/python benchmarks/identification.py

lint: $(STAMP)
	$(BIN)/ruff check probcausal tests examples benchmarks
	$(BIN)/ruff format --check probcausal tests examples benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
