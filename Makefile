# airflow-medic: make demo (the main job) and make test (the whole suite) work on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
# A local CPU build of torch, where the machine has one: installed first, so that nothing pulls
# the registry's CUDA build (several GB) into an environment that has no GPU.
TORCH_WHEEL := $(firstword $(wildcard /opt/wheels/torch-2.13.0+cpu-*.whl))

.PHONY: install llm-env demo test test-fast lint format bench-latency bench-llm stack-up stack-down clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml tools/pyproject.toml requirements.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check uv
	$(if $(TORCH_WHEEL),$(UV) pip install --python $(PY) $(TORCH_WHEEL))
	$(UV) pip install --python $(PY) -r requirements.txt -e ".[embeddings,celery,dev]" -e tools
	@touch $@

# The generation environment ([medic] llm_python): its own interpreter, never imported by Airflow.
LLM_VENV ?= .venv-llm
llm-env: $(LLM_VENV)/.installed

$(LLM_VENV)/.installed: requirements-llm.txt requirements-llm-overrides.txt pyproject.toml $(VENV)/.installed
	@test -x $(LLM_VENV)/bin/python || python3 -m venv $(LLM_VENV)
	$(if $(TORCH_WHEEL),$(UV) pip install --python $(LLM_VENV)/bin/python $(TORCH_WHEEL))
	$(UV) pip install --python $(LLM_VENV)/bin/python -r requirements-llm.txt --override requirements-llm-overrides.txt
	$(UV) pip install --python $(LLM_VENV)/bin/python --no-deps -e . -e tools
	@touch $@

demo: install
	$(VENV)/bin/medic demo

test: install llm-env lint
	$(PY) -m pytest -q

test-fast: install llm-env
	$(PY) -m pytest -q tests/unit tests/integration

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench-latency: install
	$(VENV)/bin/medic bench latency --failures 20

bench-llm: install llm-env
	$(VENV)/bin/medic bench llm --batch 16

stack-up: install
	$(VENV)/bin/medic stack up

stack-down: install
	$(VENV)/bin/medic stack down

clean: stack-down
	rm -rf .medic $(LLM_VENV)
