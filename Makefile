# appendq developer commands. Everything runs from the project's own virtualenv (.venv).
#   make test     the test suite (what CI runs)      make check   lint, format check, types
#   make test-fast  the fast lane (under a minute)   make mutate  mutation testing of the policies
#   make run      the whole thing locally            make bench   throughput benchmark
#   make chaos    fault-injection runs               make lock    refresh constraints.txt

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed.stamp

.PHONY: venv test test-fast mutate check run bench chaos lock clean distclean

venv: $(STAMP)

# Re-installs when the dependencies or their pins change; otherwise does nothing. The `embedded`
# extra (PostgreSQL and redis-server as PyPI wheels) lets `make run` and `make test` work on a
# machine without Redis or PostgreSQL; where they answer, they are used instead.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,embedded]'
	@touch $@

# Three pytest-xdist workers: most tests wait on processes, ticks and sockets, not on the CPU, so
# three overlap well on two cores (four made timing tests flakier). Each worker has its own
# databases and Redis prefixes.
test: venv
	$(BIN)/pytest -q -n 3

# The pure policies, table-driven, and the quick integration tests (tests/conftest.py FAST_MODULES).
test-fast: venv
	$(BIN)/pytest -q -m fast

# Mutants of settle, the backoff, classification, reconciliation, the rate limiter and dedupe
# (their Lua too), each run against its fast tests in a copy of the tree; fails below 90 % killed.
mutate: venv
	$(BIN)/python tools/mutate.py

check: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

run: venv
	$(BIN)/appendq up

bench: venv
	$(BIN)/python -m bench

chaos: venv
	$(BIN)/python -m bench.chaos

# The lock: exact versions of everything in the venv except appendq itself. To upgrade:
# `.venv/bin/pip install -U -e '.[dev,embedded]'` (or a single package), then `make lock`.
lock:
	@test -x $(BIN)/pip || { echo "no $(VENV): run make venv first"; exit 1; }
	@{ \
	  echo "# The lock: exact versions installed by 'make venv' (pip install -c constraints.txt)."; \
	  echo "# Regenerate with 'make lock' (pip freeze --exclude-editable of .venv); to upgrade,"; \
	  echo "# '.venv/bin/pip install -U -e \".[dev,embedded]\"' first. Do not edit by hand."; \
	  $(BIN)/pip freeze --exclude-editable --exclude appendq; \
	} > constraints.txt.tmp
	@mv constraints.txt.tmp constraints.txt
	@echo "constraints.txt: $$(grep -vc '^#' constraints.txt) pins"

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist *.egg-info .appendq
	rm -f celerybeat-schedule*
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
