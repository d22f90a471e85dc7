# The two commands of the README: `make demo` and `make test`. Each creates .venv when missing.
# Everything installs from the hash-locked requirements*.lock files (`make lock` refreshes them),
# so a fresh machine needs only Python >= 3.11 and make.
PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PIP     := $(BIN)/python -m pip
WORKERS ?= auto
PYTEST  := $(BIN)/python -m pytest -q -n $(WORKERS)

.PHONY: install dev demo test test-fast lint lock bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# The locked packages (hash-checked, no resolving), then the project itself on top, editable.
$(VENV)/.installed: $(BIN)/python requirements.lock pyproject.toml
	$(PIP) install --quiet --require-hashes --no-deps -r requirements.lock
	$(PIP) install --quiet --no-deps -e .
	$(PIP) check  # a dependency missing from the lock: run `make lock`
	@touch $@

$(VENV)/.dev: $(BIN)/python requirements-dev.lock pyproject.toml
	$(PIP) install --quiet --require-hashes --no-deps -r requirements-dev.lock
	$(PIP) install --quiet --no-deps -e .
	$(PIP) check  # a dependency missing from the lock: run `make lock`
	@touch $@ $(VENV)/.installed

# dev + the `bench` extra (vdirsyncer): what scripts/bench_*.py compare against.
$(VENV)/.bench: $(BIN)/python requirements-bench.lock pyproject.toml
	$(PIP) install --quiet --require-hashes --no-deps -r requirements-bench.lock
	$(PIP) install --quiet --no-deps -e .
	$(PIP) check  # a dependency missing from the lock: run `make lock`
	@touch $@ $(VENV)/.dev $(VENV)/.installed

install: $(VENV)/.installed

dev: $(VENV)/.dev

demo: install
	$(BIN)/callsheet demo --dir demo

# The whole suite, spread over the cores (WORKERS=0 runs it in one process).
test: dev
	$(PYTEST)

# Unit, scenario and contract tests: no DAV server, nothing marked slow.
test-fast: dev
	$(PYTEST) -m "not integration and not slow"

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/deptry .
	$(BIN)/deptry tests --exclude '(^|/)\.venv/' --ignore DEP002,DEP004

# Re-pin every package (runtime, and runtime + dev) with hashes, for every Python >= 3.11 and platform.
# Run after changing the dependencies in pyproject.toml, or to take upgrades: `make lock UPGRADE=1`.
LOCK := $(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes --quiet $(if $(UPGRADE),--upgrade)
lock: dev
	$(LOCK) -o requirements.lock
	$(LOCK) --group dev -o requirements-dev.lock
	$(LOCK) --group dev --extra bench -o requirements-bench.lock

# `make bench` (rules), `make bench BENCH=caldav ARGS="--years 1,10 --repeat 3"`, BENCH=vdir, BENCH=fleet.
BENCH ?= rules
bench: $(VENV)/.bench
	$(BIN)/python scripts/bench_$(BENCH).py $(ARGS)

clean:
	rm -rf $(VENV) demo .pytest_cache .hypothesis .mypy_cache .ruff_cache
