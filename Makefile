# Two commands for a fresh machine (Python 3.11+):
#   make run    set up .venv and run the hub (embedded PostgreSQL and broker, demo data)
#   make test   set up .venv and run the tests
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint format setup setup-run
run: setup-run
	$(BIN)/ieum serve

# Two workers, each taking whole files (a file's fixtures start servers once); more
# workers than cores only slows the timing-sensitive drills down.
TEST_WORKERS ?= 2
test: setup
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The hub needs only its own dependencies; the test tools (Playwright, mypy, …) come with
# `make test` and the other developer targets.
setup: $(VENV)/.installed
setup-run: $(VENV)/.installed-run

$(VENV)/.created:
	@test -n "$(PYTHON)" || { echo "Ieum needs Python 3.11 or newer (none found on PATH)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@touch $@

$(VENV)/.installed-run: pyproject.toml $(VENV)/.created
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.created
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.installed-run
