# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SHARED ?= ../shared/openimages
DEMO_DIR ?= demo_out
PYTEST_ARGS ?=

.PHONY: demo test bench install clean

ORACLES := $(VENV)/oracles

$(STAMP): setup.py tests/oracles/requirements.txt tests/oracles/install.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel uv
	# uv installs the same pins as pip in well under half pip's time here (~1.5 min against ~4 from an
	# empty cache). --compile-bytecode as pip does: where PYTHONDONTWRITEBYTECODE is set (this machine
	# sets it), nothing is ever byte-compiled otherwise, and every process compiles TensorFlow again.
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -e '.[test,plots]'
	# The test oracles (TF Object Detection API, TF-slim) go into a folder of their own, without their
	# stale requirements; only tests/oracles/ scripts put it on their path.
	$(PY) tests/oracles/install.py $(ORACLES)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m oi_models.demo --out_dir=$(DEMO_DIR)

test: $(STAMP)
	OI_SHARED=$(SHARED) $(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder -q tests $(PYTEST_ARGS)

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_DIR) *.egg-info .pytest_cache
