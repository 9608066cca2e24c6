# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
VALIDATOR := node_modules/gltf-validator/package.json
DEMO_OUT ?= demo_out

.PHONY: demo test lint lock clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	# The C++ CPU kernels (kernels/csrc), built once into ~/.cache/dreamsmith; without a compiler the
	# PyTorch references run instead.
	$(PY) -m dreamsmith.kernels.cpu_build || true
	touch $(STAMP)

# The Khronos glTF validator is used by the tests when node/npm are present.
$(VALIDATOR):
	@if command -v npm >/dev/null 2>&1; then \
		npm install --no-audit --no-fund --no-save --silent gltf-validator@2.0.0-dev.3.10 || echo "gltf-validator not installed; its tests will be skipped"; \
	else echo "npm not found; gltf-validator tests will be skipped"; fi

demo: $(STAMP)
	$(PY) scripts/demo.py --out $(DEMO_OUT)

test: $(STAMP) $(VALIDATOR)
	$(PY) -m ruff check .
	$(PY) -m pytest -q --durations=12

lint: $(STAMP)
	$(PY) -m ruff check .

# Regenerate engine.lock (the engine environment's pins, shipped in the extension) after changing
# constraints.txt or protocol.DEPENDENCIES; needs PyPI.
lock: $(STAMP)
	$(PY) scripts/lock_engine.py

clean:
	rm -rf $(VENV) node_modules dist $(DEMO_OUT)
