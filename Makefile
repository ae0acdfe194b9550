# Everything installs itself into .venv; needs only Python >= 3.11 with pip.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint typecheck up clean bench faults

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "rehabgate needs Python >= 3.11 (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/rehabgate demo

test: $(STAMP)
	$(BIN)/python -m pytest

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
	rm -rf $(VENV) .rehabgate build *.egg-info
