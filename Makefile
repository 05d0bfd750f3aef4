# Quick start: `make run` serves on 127.0.0.1:8000 (SQLite at ./waymark.db); `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-tools check lint typecheck bench bench-quick bench-tools bench-bus clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# the distribution was named "waymark" (an unrelated project's name on PyPI): remove it
	$(BIN)/pip uninstall --yes --quiet waymark 2>/dev/null || true
	rm -rf src/waymark.egg-info
	$(BIN)/pip install --quiet -e '.[server,test]'
	touch $(STAMP)

run: install
	WAYMARK_STORE=$${WAYMARK_STORE:-sqlite:///./waymark.db} $(BIN)/waymark serve --host 127.0.0.1 --port 8000

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

check: lint typecheck

test: check test-tools
	$(BIN)/pytest -q

# The web page's tests drive a headless Chromium, and the durability test traces the server's
# system calls with strace (Debian's packages).
test-tools:
	@command -v chromium >/dev/null || apt-get install -y -q chromium >/dev/null 2>&1 \
		|| (apt-get update -q && apt-get install -y -q chromium >/dev/null 2>&1) \
		|| echo "chromium is missing and apt-get could not install it: the page's browser tests will fail"
	@command -v strace >/dev/null || apt-get install -y -q strace >/dev/null 2>&1 \
		|| (apt-get update -q && apt-get install -y -q strace >/dev/null 2>&1) \
		|| echo "strace is missing and apt-get could not install it: the durability test will fail"

bench-tools:
	@command -v wrk >/dev/null || apt-get install -y wrk

bench: install bench-tools
	$(BIN)/python bench/run.py

bench-quick: install bench-tools
	$(BIN)/python bench/run.py --quick

# The bus path (HTTP -> JetStream -> collectors -> PostgreSQL) against raw COPY; needs NATS and PostgreSQL.
bench-bus: install
	$(BIN)/python bench/bus.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
