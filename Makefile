# The front door. `make run` sets up and runs the main job; `make test` sets up and runs the tests.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# numba's compiled functions are cached on disk so only the first run pays for compiling.
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run test test-fast bench lint fmt clean-venv setup

$(BIN)/kit: requirements.txt requirements-dev.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (kit needs Python 3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $(BIN)/kit

setup: $(BIN)/kit

run: $(BIN)/kit  ## simulator + daemon + dashboard on this machine
	$(BIN)/kit up

test: $(BIN)/kit  ## everything, including PostgreSQL, Redis and the browser tests
	scripts/ensure-chromium
	$(BIN)/pytest

test-fast: $(BIN)/kit
	$(BIN)/pytest -m "not slow and not browser"

bench: $(BIN)/kit
	$(BIN)/python -m bench

lint: $(BIN)/kit
	$(BIN)/ruff check kit apps tests bench
	$(BIN)/ruff format --check kit apps tests bench

fmt: $(BIN)/kit
	$(BIN)/ruff format kit apps tests bench
	$(BIN)/ruff check --fix kit apps tests bench

clean-venv:
	rm -rf $(VENV)
