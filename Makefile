# streamvisor: every target creates .venv from nothing when it is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test lint demo bench bench-instructions clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

# ruff (style and likely bugs) and mypy (strict; see pyproject.toml for the modules not yet strict).
lint: $(STAMP)
	$(VENV)/bin/ruff check actors supervisors streamvisor tests examples
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: $(STAMP)
	$(VENV)/bin/streamvisor run examples/iot_cloud.py --duration 20

bench: $(STAMP)
	$(PY) -m tests.benchmarks $(BENCH_ARGS)

# Instructions per message under valgrind: repeatable whatever the load on the machine.
bench-instructions: $(STAMP)
	$(PY) -m tests.benchmarks.instructions $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
