# The README's two set-up commands: `make lab` (tutorials) and `make test` (the suite).
# TORCH pins the CPU wheel these machines install from local disk; on your own
# machine override it, e.g. `make lab TORCH=torch` for the newest CUDA build.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: lab test install-lab install-test lint notebooks-sync crosscheck-torchgfn bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

install-lab: $(BIN)/python
	$(PIP) install --quiet "$(TORCH)" -e ".[notebooks,control]"

install-test: $(BIN)/python
	$(PIP) install --quiet "$(TORCH)" -e ".[notebooks,control,test,dev]"

# Jupyter refuses to run as root without --allow-root (containers, CI machines).
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: install-lab
	$(BIN)/jupyter lab $(ALLOW_ROOT) notebooks/

test: install-test
	$(BIN)/ruff check rtb_lab tests benchmarks
	$(BIN)/python -m pytest tests --ignore=tests/browser --durations=25
	RTB_LAB_FAST=1 $(BIN)/python -m pytest --nbval-lax --nbval-cell-timeout=900 -p no:cacheprovider --durations=10 notebooks/
	$(BIN)/python -m pytest tests/browser --durations=10

lint: install-test
	$(BIN)/ruff check rtb_lab tests benchmarks

# Live comparison with torchgfn, in a side venv (torchgfn pins numpy<2).
crosscheck-torchgfn:
	test -x /tmp/rtb-lab-tgfn/bin/python || $(PYTHON) -m venv /tmp/rtb-lab-tgfn
	/tmp/rtb-lab-tgfn/bin/pip install --quiet "$(TORCH)" torchgfn==2.4.1 pytest safetensors tqdm
	PYTHONPATH=. /tmp/rtb-lab-tgfn/bin/python -m pytest -q tests/test_rtb.py -k torchgfn

bench: install-test
	$(BIN)/python benchmarks/bench_toy2d.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
