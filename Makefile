# The README's commands. Each creates .venv on a fresh machine and installs the package into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test demo clean

$(VENV)/.done-base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.done-test: $(VENV)/.done-base
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.done-base

test: $(VENV)/.done-test
	$(PY) -m pytest

demo: $(VENV)/.done-base
	$(VENV)/bin/hierhead demo

clean:
	rm -rf $(VENV) .pytest_cache
