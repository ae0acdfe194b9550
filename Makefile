# Everything installs itself into .venv; needs only Python >= 3.11 with pip.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install lock canary demo test check lint typecheck up clean bench faults

# Installs come from requirements-dev.lock (every package pinned with its hashes;
# `make lock` refreshes it and requirements.lock, the runtime-only lock the
# container image installs). pyproject.toml keeps the ranges for library users.
$(STAMP): pyproject.toml requirements-dev.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "rehabgate needs Python >= 3.11 (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

install: $(STAMP)

# Re-resolve both locks to the newest versions pyproject.toml's ranges allow.
# setuptools is locked too: the project is built without build isolation.
UV_COMPILE := $(BIN)/uv pip compile --quiet --upgrade --generate-hashes --universal --python-version 3.11
lock: $(STAMP)
	printf 'setuptools>=77\n' | $(UV_COMPILE) pyproject.toml - -o requirements.lock
	printf 'setuptools>=77\n' | $(UV_COMPILE) pyproject.toml - --extra dev -c requirements.lock -o requirements-dev.lock

# The drift canary: the newest versions the ranges allow, in .venv-canary, against
# the integration and cluster tests; on failure it names what moved past the lock.
canary:
	PYTHON=$(PYTHON) bash ops/canary.sh

demo: $(STAMP)
	$(BIN)/rehabgate demo

test: $(STAMP)
	$(BIN)/python -m pytest

# The fast tier for development (under a minute): ruff, then the unit and wiring
# tests (no service processes). `make test` still runs everything.
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q tests/unit tests/wiring

# Fault injection at full size (tests/faults): one JSON line per scenario, then FAULTS {...}.
faults: $(STAMP)
	$(BIN)/python -m tests.faults

lint: $(STAMP) typecheck
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy cannot follow setuptools' editable import hook for the mapped namespace,
# so it checks a symlinked rehabgate/ tree that mirrors the installed layout.
typecheck: $(STAMP)
	mkdir -p build/typecheck/rehabgate
	ln -sfn ../../../schemas build/typecheck/rehabgate/schemas
	ln -sfn ../../../services build/typecheck/rehabgate/services
	cd build/typecheck && ../../$(BIN)/mypy --config-file ../../pyproject.toml -p rehabgate

# Never part of `make test`: minutes long, and its numbers are machine-dependent.
# `make bench CLUSTER=1`: the same on a local 3-master Redis Cluster.
bench: $(STAMP)
	CLUSTER="$(CLUSTER)" $(BIN)/python -m bench

up: $(STAMP)
	$(BIN)/rehabgate up

clean:
	rm -rf $(VENV) .venv-canary .rehabgate build *.egg-info
