# segstream — the two commands a newcomer types are `make demo` and `make test`.
# Both set up first (idempotent): .venv, Python deps, redis-server/prometheus via apt.

VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo test test-fast lint bench docs clean stack-down

$(STAMP): pyproject.toml scripts/setup.sh
	./scripts/setup.sh
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install everything (system packages too)

demo: setup      ## bring the local stack up and run the pipeline on synthetic events
	$(BIN)/segstream demo --keep-running

test: setup      ## the whole suite, slow end-to-end tests included (what CI runs)
	$(BIN)/pytest

test-fast: setup ## everything but the tests marked slow
	$(BIN)/pytest -m "not slow"

lint: setup      ## ruff + mypy + the import floors (import-linter, pyproject.toml)
	$(BIN)/ruff check segstream streaming training serving tests benchmarks
	$(BIN)/mypy -p segstream
	$(BIN)/lint-imports

bench: setup     ## run the benchmarks (results: docs/benchmarks.md)
	$(BIN)/python -m benchmarks.run

docs: setup      ## regenerate docs/configuration.md from the settings class
	$(BIN)/segstream config docs

stack-down:      ## stop the local stack started by `make demo`
	$(BIN)/segstream stack down

clean: stack-down
	rm -rf .segstream .pytest_cache .mypy_cache .ruff_cache
