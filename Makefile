# airflow-medic: make demo (the main job) and make test (the whole suite) work on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
# A local CPU build of torch, where the machine has one: installed first, so that nothing pulls
# the registry's CUDA build (several GB) into an environment that has no GPU.
TORCH_WHEEL := $(firstword $(wildcard /opt/wheels/torch-2.13.0+cpu-*.whl))

.PHONY: install demo test test-fast lint format bench-latency stack-up stack-down clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check uv
	$(if $(TORCH_WHEEL),$(UV) pip install --python $(PY) $(TORCH_WHEEL))
	$(UV) pip install --python $(PY) -r requirements.txt -e ".[embedded,embeddings,dev]"
	@touch $@

demo: install
	$(VENV)/bin/medic demo

test: install lint
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q tests/unit tests/integration

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench-latency: install
	$(VENV)/bin/medic bench latency --failures 20

stack-up: install
	$(VENV)/bin/medic stack up

stack-down: install
	$(VENV)/bin/medic stack down

clean: stack-down
	rm -rf .medic
