# The front door. `make run` sets up and runs the main job; `make test` sets up and runs the tests.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# numba's compiled functions are cached on disk so only the first run pays for compiling.
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run test test-fast bench lint fmt clean-venv setup lock

# Everything is installed from requirements-lock.txt: every package of the tree (pip and setuptools
# included) at one version with its hashes, so nothing floats and nothing unverified gets in.
# requirements*.txt say what kit wants; `make lock` turns them into the lock (see README).
$(BIN)/kit: requirements-lock.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (kit needs Python 3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-lock.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(BIN)/kit

setup: $(BIN)/kit

run: $(BIN)/kit  ## simulator + daemon + dashboard on this machine
	$(BIN)/kit up

# Test files run on 3 processes (pytest-xdist, a file per process at a time: module fixtures and
# order within a file hold): most tests wait on real servers and subprocesses, not on the CPU.
TEST_PROCS ?= 3

test: $(BIN)/kit  ## everything, including PostgreSQL, Redis and the browser tests
	scripts/ensure-chromium
	$(BIN)/pytest -n $(TEST_PROCS) --dist loadfile

test-fast: $(BIN)/kit
	$(BIN)/pytest -n $(TEST_PROCS) --dist loadfile -m "not slow and not browser"

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

# Re-resolve requirements*.txt (newest versions they allow) into the lock, with every hash.
# Needs uv (e.g. `python3.11 -m venv /tmp/uv && /tmp/uv/bin/pip install uv==0.13.8`, then UV=/tmp/uv/bin/uv).
UV ?= uv
lock:
	$(UV) pip compile requirements-dev.txt --python-version 3.11.7 --python-platform linux --generate-hashes \
		--custom-compile-command "make lock" -o requirements-lock.txt
