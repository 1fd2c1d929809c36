# make demo / make test: each creates or reuses .venv and installs the package into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.radtransfer-installed
export PYTHONUNBUFFERED := 1

.PHONY: install lint test test-slow test-backends test-ray demo bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Style: ruff (pyflakes, pycodestyle, isort; 120 columns), configured in pyproject.toml.
LINTED := radtransfer tests examples benchmarks

lint: $(STAMP)
	$(PY) -m ruff check $(LINTED)
	$(PY) -m ruff format --check $(LINTED)

# Two processes, one test file each (module fixtures are built once). TEST_WORKERS=0 runs it in one process.
# Loops, grids, commands and the input-kind battery run on the test backbone (test_tiny); make test-slow keeps
# only what must build or train a real network at length (Grad-CAM localisation on DenseNet121,
# InceptionResNetV2's file loads and round trip) and the multi-worker cluster test.
TEST_WORKERS ?= 2
PYTEST_PARALLEL := -n $(TEST_WORKERS) --dist loadfile

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_PARALLEL) --durations=10

test-slow: $(STAMP)
	$(PY) -m pytest $(PYTEST_PARALLEL) -m "slow"

# The model side on JAX and PyTorch: the backend-independent tests under KERAS_BACKEND=jax, and the
# cross-backend equality and JAX data-parallel tests. PyTorch's CPU build is pinned (plain `torch` would
# pull a multi-GB CUDA build); transformers writes the Hugging Face checkpoint folders the foundation-model tests load
# (tests/models/test_foundation.py, which skips those two where it is missing).
BACKEND_TESTS := tests/models tests/training/test_strategies.py tests/training/test_llrd.py \
	tests/training/test_linear_probe.py tests/stats/test_auc.py tests/evaluation/test_levels.py \
	tests/evaluation/test_multilabel.py tests/data/test_multilabel_data.py tests/grid/test_resolution.py tests/test_backends.py

$(VENV)/.radtransfer-backends: $(STAMP)
	$(PY) -m pip install -q 'torch==2.13.0' 'jax>=0.4.34' 'transformers>=4.40'
	touch $@

# JAX compiles each operation of an eager call once per process: one compilation cache, started empty on each
# run and shared by every process of both steps, serves each compiled operation to the processes after the first
# (DenseNet121's first eager call in a fresh process: 40 s without it, 11 s from the cache).
JAX_CACHE := $(VENV)/jax-compilation-cache
test-backends: export JAX_COMPILATION_CACHE_DIR := $(abspath $(JAX_CACHE))
test-backends: export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS := 0
test-backends: export JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES := 0

test-backends: $(VENV)/.radtransfer-backends
	rm -rf $(JAX_CACHE)
	KERAS_BACKEND=jax $(PY) -m pytest $(PYTEST_PARALLEL) $(BACKEND_TESTS)
	$(PY) -m pytest $(PYTEST_PARALLEL) -m backends tests/test_backends.py tests/data/test_numpy_pipeline.py

# The grid on a local two-worker Ray cluster (the ray extra is installed only for this).
$(VENV)/.radtransfer-ray: $(STAMP)
	$(PY) -m pip install -q -e '.[ray]'
	touch $@

test-ray: $(VENV)/.radtransfer-ray
	$(PY) -m pytest -m ray tests/grid/test_grid_ray.py

demo: $(STAMP)
	$(VENV)/bin/radtransfer demo --out demo_output

bench: $(STAMP)
	$(PY) benchmarks/pipeline.py
	$(PY) benchmarks/training_overhead.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache demo_output
