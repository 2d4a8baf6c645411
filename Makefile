# Development tasks for immortus. `make test` is the one command to know: it builds the dev
# environment, installs the services the tests run against, then lints, type-checks and tests.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules

VENV := .venv
BIN := $(VENV)/bin
VENV_STAMP := $(VENV)/.installed
SYSTEM_DEPS_STAMP := .services/.system-deps

# uv builds every environment (pinned here; installed into .tools/ with any python3's pip).
UV_VERSION := 0.13.10
UV := .tools/uv-$(UV_VERSION)/bin/uv
export UV_NO_PYTHON_DOWNLOADS := 1

# The demo's own small environment: immortus with the `demo` extra only.
DEMO_VENV := .venv-demo
# The other supported Pythons: each runs the core, web and RQ tests (tests/compat.txt) in its
# own environment built from requirements/compat.txt, pinned by requirements/dev.txt.
COMPAT_VERSIONS := 11 13
COMPAT_TESTS = $(shell grep -v '^\s*\(#\|$$\)' tests/compat.txt)

# The directories that ruff and mypy check, less any that hold no Python file yet: mypy
# refuses an empty directory, and git does not even create one in a fresh clone.
PY_DIRS := $(foreach d,src tests bench devservices,$(if $(shell find $(d) -name '*.py' -print -quit 2>/dev/null),$(d)))

# Shell code printing the first Python >= 3.$(1): $$PYTHON if set, then python3.x on PATH (an
# inactive pyenv shim fails the version check and is passed over), then pyenv's versions.
FIND_PYTHON = \
	ok() { [[ -n $$1 ]] && "$$1" -c 'import sys; sys.exit(sys.version_info < (3, $(1)))' &>/dev/null; }; \
	for c in "$${PYTHON:-}" python3.14 python3.13 python3.12 python3.11 python3; do \
		p=$$(command -v "$$c" 2>/dev/null) && ok "$$p" && { echo "$$p"; exit 0; }; \
	done; \
	p=$$(PYENV_VERSION=3.12.1 pyenv which python3.12 2>/dev/null) && ok "$$p" && { echo "$$p"; exit 0; }; \
	for p in "$${PYENV_ROOT:-$$HOME/.pyenv}"/versions/3.1[1-9]*/bin/python3; do \
		ok "$$p" && { echo "$$p"; exit 0; }; \
	done; \
	exit 1

# Shell code printing Python 3.$(1) exactly: python3.$(1) on PATH, python3 if it is that
# version, or pyenv's; used for the other supported versions' test runs.
FIND_PYTHON_EXACTLY = \
	ok() { [[ -n $$1 ]] && "$$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, $(1)))' &>/dev/null; }; \
	for c in python3.$(1) python3; do \
		p=$$(command -v "$$c" 2>/dev/null) && ok "$$p" && { echo "$$p"; exit 0; }; \
	done; \
	for p in "$${PYENV_ROOT:-$$HOME/.pyenv}"/versions/3.$(1).*/bin/python3; do \
		ok "$$p" && { echo "$$p"; exit 0; }; \
	done; \
	exit 1

NO_PYTHON := immortus needs Python 3.12+ to build its dev environment (Django 6 needs it): \
install python3.12 (Debian/Ubuntu: apt-get install python3.12 python3.12-venv, where available), \
or `pyenv install 3.12`, or point PYTHON=/path/to/python3.12 at one.

.PHONY: venv system-deps lint typecheck test test-compat demo bench format clean

$(UV):
	python3 -m pip install --quiet --disable-pip-version-check --target $(@D)/.. uv==$(UV_VERSION)

# venv: the dev environment in .venv (pinned toolchain, then immortus editable with all extras).
venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml requirements/dev.txt | $(UV)
	@if ! $(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 12))' &>/dev/null; then \
		py=$$($(call FIND_PYTHON,12)) || { echo '$(NO_PYTHON)' >&2; exit 1; }; \
		echo "venv: creating $(VENV) with $$py ($$("$$py" --version))"; \
		rm -rf $(VENV); \
		$(UV) venv --quiet --python "$$py" $(VENV); \
	fi
	$(UV) pip install --quiet --python $(BIN)/python -r requirements/dev.txt -e '.[all]'
	@touch $@

# .venv-py3XX: a supported Python other than the dev one, with what tests/compat.txt needs.
.venv-py3%/.installed: pyproject.toml requirements/compat.txt requirements/dev.txt | $(UV)
	@py=$$($(call FIND_PYTHON_EXACTLY,$*)) || { echo "Python 3.$* is not installed (pyenv install 3.$*)" >&2; exit 1; }; \
		rm -rf $(@D); $(UV) venv --quiet --python "$$py" $(@D)
	$(UV) pip install --quiet --python $(@D)/bin/python -r requirements/compat.txt -c requirements/dev.txt -e .
	@touch $@

# system-deps: redis-server, PostgreSQL, chromium and wrk; re-checked cheaply every run.
system-deps:
	@bash scripts/install-system-deps.sh --check || rm -f $(SYSTEM_DEPS_STAMP)
	@$(MAKE) --no-print-directory --silent $(SYSTEM_DEPS_STAMP)

$(SYSTEM_DEPS_STAMP): scripts/install-system-deps.sh
	bash scripts/install-system-deps.sh
	@mkdir -p $(@D) && touch $@

# lint: ruff's lint rules and formatting check.
lint: venv
	$(BIN)/ruff check $(PY_DIRS)
	$(BIN)/ruff format --check $(PY_DIRS)

# typecheck: mypy, strict (settings in pyproject.toml).
typecheck: venv
	$(BIN)/mypy $(PY_DIRS)

# How many processes run the tests (pytest-xdist; each test file stays on one process, so its
# servers and workers start once). Most tests wait on servers, workers and browsers, so two
# processes halve the suite on two cores. TEST_PROCESSES=0 runs it in this process alone.
TEST_PROCESSES ?= 2
# Files are handed out in the suite's own order (the browser tests last: see tests/browser/conftest.py),
# not largest first as pytest-xdist would.
PYTEST_PARALLEL = $(if $(filter 0,$(TEST_PROCESSES)),,-n $(TEST_PROCESSES) --dist loadfile --no-loadscope-reorder)

# test: everything CI checks: lint, type checks, the test suite (extra args: PYTEST_ARGS=...),
# then the core, web and RQ tests on the other supported Pythons.
test: venv system-deps lint typecheck
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) --durations=25 $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory test-compat

# test-compat: tests/compat.txt's tests on Python 3.11 and 3.13 (the suite runs on 3.12).
test-compat: system-deps $(foreach v,$(COMPAT_VERSIONS),.venv-py3$(v)/.installed)
	@for v in $(COMPAT_VERSIONS); do \
		echo "== Python 3.$$v: $(COMPAT_TESTS)"; \
		.venv-py3$$v/bin/python -m pytest -q -p no:cacheprovider $(PYTEST_PARALLEL) $(COMPAT_TESTS) || exit 1; \
	done

# demo: the web demo on http://127.0.0.1:8000 (sample jobs on a real Huey queue; Ctrl-C stops it),
# from its own small environment (immortus[demo] only: seconds to build).
demo: $(DEMO_VENV)/.installed
	$(DEMO_VENV)/bin/immortus demo

$(DEMO_VENV)/.installed: pyproject.toml | $(UV)
	@py=$$($(call FIND_PYTHON,11)) || { echo 'immortus needs Python 3.11+' >&2; exit 1; }; \
		rm -rf $(@D); $(UV) venv --quiet --python "$$py" $(@D)
	$(UV) pip install --quiet --python $(@D)/bin/python -c requirements/dev.txt -e '.[demo]'
	@touch $@

# bench: every benchmark under bench/, one after another, each printing its table of medians and
# side-by-side ratios; all figures land in bench/results/latest.json. Quick by default;
# BENCH_FULL=1 runs the large sizes; BENCH_ONLY=name,name runs some (see bench/all.py).
bench: venv system-deps
	$(BIN)/python -m bench.all $(if $(BENCH_FULL),--full) $(if $(BENCH_ONLY),--only $(BENCH_ONLY))

# format: reformat, and apply ruff's safe fixes.
format: venv
	$(BIN)/ruff format $(PY_DIRS)
	$(BIN)/ruff check --fix $(PY_DIRS)

# clean: remove the dev environment, caches and the services stamp.
clean:
	rm -rf $(VENV) $(DEMO_VENV) .venv-py3* .tools .services .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find . -name __pycache__ -type d -not -path './.git/*' -prune -exec rm -rf {} +
