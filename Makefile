# Two commands for a new user:  make run   and   make test
# Both create or reuse .venv and install the project (editable) with its dependencies.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH_STAMP := $(VENV)/.installed-torch
ARGS   ?=
PYTEST_ARGS ?=
# test files run in this many processes (pytest-xdist), each with its own broker: most tests wait
# on real-time streams, so two halve the suite's time on a 2-core machine
TEST_PROCESSES ?= 2
# Debian packages some tests use; installed only when running as root with apt (as CI does).
APT_PACKAGES := docker-compose prometheus-alertmanager prometheus chromium slurm-wlm

.PHONY: run test unit lint venv apt-test-deps clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

# the tests of a real PyTorch job: the optional extra `torch` (a CPU build from local disk where pip has one)
$(TORCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,torch]' \
	  || echo "warning: could not install torch; the PyTorch tests will skip"
	@touch $(TORCH_STAMP)

run: $(STAMP)
	$(BIN)/clusterpulse run $(ARGS)

apt-test-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian packages for tests:$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null) \
	    || echo "warning: could not install$$missing; the tests that need them will skip"; \
	else echo "not root with apt: tests needing$$missing will skip"; fi

test: $(STAMP) $(TORCH_STAMP) apt-test-deps
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) --dist loadfile $(PYTEST_ARGS)

# the unit tests alone (no process started, about 2 minutes): a quick check while editing
unit: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) --dist loadfile tests/unit $(PYTEST_ARGS)

# the quality gate CI runs before the tests: ruff's lint rules and its formatter, and mypy (pyproject.toml)
LINTED := pipeline producers tests bench examples
lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy pipeline producers

clean:
	rm -rf $(VENV) data .pytest_cache
