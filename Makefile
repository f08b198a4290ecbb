# Two commands for a newcomer: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PKG_FILES := requirements-dev.txt $(wildcard shared/pyproject.toml services/*/pyproject.toml)

export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run test lint unit services bench bench-store fuzz chaos clean install

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: install Python 3.11 or run 'make PYTHON=python3.12 …'" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python $(PKG_FILES)
	PYTHONWARNINGS=ignore $(BIN)/pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

install: $(STAMP)

## The whole system in one process: in-memory broker, SQLite under $(DATA_DIR), sandbox provider.
run: $(STAMP)
	$(BIN)/python -m payments_embedded

## Each service as its own process over RabbitMQ (BROKER_URL) and one event store (EVENTSTORE_URI).
services: $(STAMP)
	bash scripts/services.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(filter-out %.egg-info,$(wildcard shared/payments_shared services/*/payments_*)) tests bench

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

## Lint, then every test suite (unit, contract, black-box, integration).
test: $(STAMP) lint
	$(BIN)/pytest -q -p no:cacheprovider

bench-store: $(STAMP)
	$(BIN)/python -m bench.store
	$(BIN)/python -m bench.store_growth

bench: $(STAMP)
	bash bench/run.sh

fuzz: $(STAMP)
	FUZZ_EXAMPLES=2000 $(BIN)/pytest -q --timeout 1800 tests/blackbox/test_fuzz.py  # ~36,000 requests: past the 300 s default

chaos: $(STAMP)
	CHAOS_SCALE=5 $(BIN)/pytest -q -m slow tests/integration
	CHAOS_SCALE=5 $(BIN)/python -m bench.chaos

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
