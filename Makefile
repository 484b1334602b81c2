# One entry point for newcomers and CI: every target first makes sure the virtual environment is installed.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
EXTRAS ?= test,parity
PYTEST_ARGS ?= -m "not slow"

.PHONY: setup demo test test-all bench clean

$(VENV)/.installed-$(EXTRAS): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

setup: $(VENV)/.installed-$(EXTRAS)

demo: setup
	$(VENV)/bin/fractalad demo

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest

bench: setup
	$(PY) benchmarks/render.py
	$(PY) benchmarks/data.py
	$(PY) benchmarks/pretrain_input.py
	$(PY) benchmarks/detectors.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
