# mlptools developer and user entry points. Everything runs inside .venv, created on demand.
.DELETE_ON_ERROR:
.PHONY: install ext test test-debug bench man demo lint clean

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?= -n 2

install: $(STAMP)

$(STAMP): pyproject.toml setup.py $(wildcard cython_ext/*.pyx cython_ext/*.pxd cython_ext/*.h)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip "setuptools>=77" "Cython>=3.0" wheel
	$(BIN)/python -m pip install --quiet -e '.[all]'
	touch $@

# rebuild the Cython kernels in place after editing cython_ext/
ext: $(STAMP)
	$(BIN)/python setup.py --quiet build_ext --inplace

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# the suite with bounds and initialisation checks compiled into the kernels
test-debug: install
	MLPTOOLS_CYTHON_DEBUG=1 $(BIN)/python setup.py --quiet build_ext --inplace --force
	$(BIN)/python -m pytest $(PYTEST_ARGS); status=$$?; \
	$(BIN)/python setup.py --quiet build_ext --inplace --force; exit $$status

bench: install
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

man: install
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || date +%s) \
	  $(BIN)/python tools/gen_man.py man

demo: install
	$(BIN)/python tools/demo.py

lint: install
	$(BIN)/ruff check mlptools tests tools benchmarks

clean:
	rm -rf build $(VENV) *.egg-info mlptools/_ext/*.so .pytest_cache .hypothesis
