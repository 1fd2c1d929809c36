# make demo / make test: each creates or reuses .venv and installs the package into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.radtransfer-installed
export TF_CPP_MIN_LOG_LEVEL ?= 1
export PYTHONUNBUFFERED := 1

.PHONY: install test test-slow demo bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

test-slow: $(STAMP)
	$(PY) -m pytest -m "slow"

demo: $(STAMP)
	$(VENV)/bin/radtransfer demo --out demo_output

bench: $(STAMP)
	$(PY) benchmarks/pipeline.py
	$(PY) benchmarks/training.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache demo_output
