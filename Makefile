# One command per habit; CI (.ci/run) calls `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# System packages first (as root on Debian): both virtualenvs below need python3-venv.
SYSTEM := .system-deps
# The SAM CLI pins its own cfn-lint and boto versions: it gets a virtualenv of its own.
SAM_VENV := .venv-sam
SAM_VERSION := 1.170.0
SAM := $(SAM_VENV)/bin/sam

# Independent set-up and checks run side by side on CI's two cores.
MAKEFLAGS += --jobs=2 --output-sync=target

.PHONY: install lint test demo bench soak clean

$(SYSTEM): scripts/system-deps
	./scripts/system-deps $(PYTHON)
	touch $(SYSTEM)

$(STAMP): pyproject.toml scripts/bootstrap $(SYSTEM)
	./scripts/bootstrap $(PYTHON) $(VENV)
	touch $(STAMP)

$(SAM): $(SYSTEM)
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --disable-pip-version-check aws-sam-cli==$(SAM_VERSION)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m deploy.sync --check

# tests/deploy runs `sam validate --lint` with it (offline) beside cfn-lint.
test: lint $(SAM)
	$(BIN)/pytest

demo: install
	$(BIN)/python -m demo

bench: install
	$(BIN)/python -m benchmarks.run

# 2,000 warm lambda_handler calls in one process: RSS slope, threads, fds, /tmp.
soak: install
	$(BIN)/python -m tests.soak --calls 2000

clean:
	rm -rf $(VENV) $(SAM_VENV) $(SYSTEM) .mypy_cache .pytest_cache .ruff_cache .hypothesis build *.egg-info .aws-sam
