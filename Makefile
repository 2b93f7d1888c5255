# make run: set up .venv and run the toy search end to end.  make test: set up .venv and run the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch 2.14.1 / torchvision 0.29.1 are on local disk on the project machines; override TORCH_SPEC elsewhere,
# e.g. make test TORCH_SPEC="torch torchvision"
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
ALGOS ?= darts

.PHONY: run test lint bench clean

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[dev,export,ray]"
	touch $@

run: $(VENV)/.installed
	$(PY) scripts/main.py --algos $(ALGOS)

test: $(VENV)/.installed
	$(PY) -m pytest -x -p no:cacheprovider -n 2 tests  # two workers, one torch thread each (tests/conftest.py)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) build *.egg-info
