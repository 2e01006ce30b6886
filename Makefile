# The two entry points of README.md: `make demo` (a real search) and `make test`.
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.automl-installed

.PHONY: setup demo test lint bench

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/automl search --space search_spaces/fashion_mnist_cpu.toml --timeout 540 --time-budget 540

# Lint and types first, so that pytest's summary is the last line of the run. pytest runs two
# processes (one per core); the worker-pool tests stay in one of them (xdist group "pg-workers").
test: $(STAMP)
	bash scripts/ensure_postgres.sh
	$(BIN)/ruff check .
	$(BIN)/mypy automl workers tests
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy automl workers tests
