#!/usr/bin/env bash
# The Airflow image's Python install (Dockerfile, target `airflow`), kept in one script so that
# deploy/check_image_steps.sh replays exactly these steps outside Docker.
#
#   install-airflow-env.sh SRC PYTHON
#
# SRC: the copied project (requirements.txt, pyproject.toml, include/); PYTHON: the interpreter
# of the environment to install into (in the image: Airflow's own venv, /home/airflow/.local).
# Environment: AIRFLOW_VERSION (required; the official image sets it), UV (default: uv, which the
# official image ships), TORCH_INDEX_URL (default: PyTorch's CPU index), TORCH_SOURCE (optional:
# a local torch wheel used instead of TORCH_INDEX_URL, e.g. where that index is unreachable).
set -euo pipefail

src=${1:?usage: install-airflow-env.sh SRC PYTHON}
python=${2:?usage: install-airflow-env.sh SRC PYTHON}
: "${AIRFLOW_VERSION:?AIRFLOW_VERSION must be set (the official Airflow image sets it)}"
uv=${UV:-uv}

torch_pin=$(grep -E '^torch==' "$src/requirements.txt" | head -n 1 | tr -d '[:space:]')
if [ -z "$torch_pin" ]; then
    echo "install-airflow-env: requirements.txt has no torch== pin" >&2
    exit 1
fi

# 1. torch, CPU build, without dependencies (step 2 resolves those from PyPI). PyPI's Linux
#    x86_64 torch is the CUDA build: several GB of nvidia-* wheels that no Airflow component
#    uses (embeddings run on CPU in medic_diagnose's tasks; generation has its own environment,
#    the llm-worker target). `torch==X` in requirements.txt is satisfied by `X+cpu`, so step 2
#    keeps it.
if [ -n "${TORCH_SOURCE:-}" ]; then
    "$uv" pip install --python "$python" --no-cache --no-deps "$TORCH_SOURCE"
else
    "$uv" pip install --python "$python" --no-cache --no-deps \
        --index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}" "$torch_pin"
fi

# 2. Airflow pinned to the image's own version (as the official image's docs ask of every later
#    install, so nothing up- or downgrades it), the bundle's requirements and the medic package,
#    installed (not editable): the triggerer imports medic.triggers from site-packages.
"$uv" pip install --python "$python" --no-cache \
    "apache-airflow==${AIRFLOW_VERSION}" -r "$src/requirements.txt" "$src"

# 3. Fail the build, not the first task, when the environment is inconsistent or medic's
#    trigger cannot be imported outside the bundle.
"$uv" pip check --python "$python"
(cd / && env -u PYTHONPATH "$python" -c \
    "import medic.triggers.watchers, medic.capture.listener, medic.migrate; assert medic.migrate.available()")
