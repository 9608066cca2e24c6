# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
VALIDATOR := node_modules/gltf-validator/package.json
DEMO_OUT ?= demo_out

.PHONY: demo test test-fast syscheck lint typecheck lock clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) scripts/check_system.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	# The C++ CPU kernels (kernels/csrc), built once into ~/.cache/dreamsmith; without a compiler the
	# PyTorch references run instead.
	$(PY) -m dreamsmith.kernels.cpu_build || true
	touch $(STAMP)

# Python 3.11, and the system libraries bpy loads: one plain message (what to install) instead of failing tests.
syscheck: $(STAMP)
	@$(PY) scripts/check_system.py --bpy

# The Khronos glTF validator checks the tests' GLBs when node/npm are present (the jobs run either way).
$(VALIDATOR):
	@if command -v npm >/dev/null 2>&1; then \
		npm install --no-audit --no-fund --no-save --silent gltf-validator@2.0.0-dev.3.10 || echo "gltf-validator not installed; its tests will be skipped"; \
	else echo "npm not found; GLBs will not be checked by the Khronos validator"; fi

demo: syscheck
	$(PY) scripts/demo.py --out $(DEMO_OUT)

# Test workers (pytest-xdist), each with one torch thread: on this project's 2-core CI machine two workers finish
# the suite in about two thirds of one process's time (docs/benchmarks.md); more where there are more cores. Each
# worker takes the next test when it is free (--dist load, one at a time), and the long tests come first
# (tests/conftest.py, from tests/durations.json: refresh it with scripts/test_durations.py). PYTEST_ARGS: more
# options, e.g. PYTEST_ARGS=--durations=0.
TEST_WORKERS ?= 2
PYTEST_ARGS ?=
PYTEST := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist load --maxschedchunk 1

# Every tier (fast, slow, blender; gpu tests skip without a GPU). CI runs this.
test: syscheck $(VALIDATOR)
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PYTEST) --durations=12 $(PYTEST_ARGS)

# The inner loop: the fast tier only.
test-fast: syscheck
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PYTEST) -m "not slow and not blender and not gpu" $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

# The stages and guidance against the Protocols of core/stages/interfaces.py (files: pyproject's [tool.mypy]).
typecheck: $(STAMP)
	$(PY) -m mypy

# Regenerate engine.lock (the engine environment's pins, shipped in the extension) after changing
# constraints.txt or protocol.DEPENDENCIES; needs PyPI.
lock: $(STAMP)
	$(PY) scripts/lock_engine.py

clean:
	rm -rf $(VENV) node_modules dist $(DEMO_OUT)
