# airflow-medic: the Airflow image (api-server, scheduler, dag-processor, triggerer, workers)
# and the GPU generation worker image.
#
#   docker build --target airflow    -t airflow-medic .            # every Airflow component
#   docker build --target llm-worker -t airflow-medic-llm-worker . # a worker serving the `llm` queue
#
# docker-compose.yaml builds and runs both. The medic package is installed (not editable) into
# the image's Airflow environment because the triggerer cannot import DAG-bundle code (Airflow
# ADR 0005): FailureEventTrigger must be importable as `medic.triggers.watchers`. The bundle (dags/,
# assets/, plugins/, include/) lives in AIRFLOW_HOME, which is on PYTHONPATH as in the Astro
# runtime, so DAG files can import `assets`.
#
# Python installs use the `uv` that the official image ships (the same resolver as `make
# install`); deploy/install-airflow-env.sh holds the airflow target's steps and
# deploy/check_image_steps.sh replays them outside Docker. No constraints file: the official
# constraints pin providers to the versions released with Airflow itself, and requirements.txt
# pins the newer providers this bundle is tested with; Airflow itself is pinned on every install
# (`apache-airflow==${AIRFLOW_VERSION}`), as the official image's documentation asks.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION} AS airflow

ENV AIRFLOW_HOME=/opt/airflow \
    PYTHONPATH=/opt/airflow \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    AIRFLOW__CORE__PARALLELISM=8 \
    AIRFLOW__MEDIC__CONN_ID=medic_db

# torch comes from PyTorch's CPU index: PyPI's Linux build is the CUDA one (several GB) and no
# Airflow component needs CUDA (embeddings run on CPU; a GPU is only for generation, below).
# Point this at a mirror, or at CUDA wheels (e.g. .../whl/cu130) for GPU embeddings.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
COPY --chown=airflow:0 requirements.txt pyproject.toml /opt/airflow/
COPY --chown=airflow:0 include/ /opt/airflow/include/
COPY --chown=airflow:0 deploy/install-airflow-env.sh deploy/airflow-init.sh /opt/airflow/deploy/
RUN TORCH_INDEX_URL="${TORCH_INDEX_URL}" \
    bash /opt/airflow/deploy/install-airflow-env.sh /opt/airflow "$(command -v python)"

COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 assets/ /opt/airflow/assets/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 tools/pyproject.toml /opt/airflow/tools/pyproject.toml
COPY --chown=airflow:0 tools/medic_dev/ /opt/airflow/tools/medic_dev/
# The demo_* DAGs (schedule=None, tagged medic-demo) fail on purpose when triggered; their task
# code is the development tools' (medic_dev.examples), installed only with them. Leave both out
# of a production image with --build-arg MEDIC_DEMO_DAGS=false.
ARG MEDIC_DEMO_DAGS=true
# /opt/airflow/auth: where docker-compose.yaml keeps the SimpleAuthManager passwords file (a
# volume that takes this directory's owner and mode when it is first created).
RUN if [ "${MEDIC_DEMO_DAGS}" = "true" ]; then uv pip install --python "$(command -v python)" --no-cache --no-deps /opt/airflow/tools; \
    else rm -f /opt/airflow/dags/demo_*.py; fi \
 && rm -rf /opt/airflow/tools \
 && mkdir -p -m 700 /opt/airflow/auth

# medic's schema is migrated by `medic migrate` (once per deployment and upgrade, like `airflow db
# migrate`); docker-compose.yaml's airflow-init runs deploy/airflow-init.sh, which does both.

# ---- the GPU generation worker ---------------------------------------------------------------
# The Airflow image plus a second Python environment, /opt/medic-llm, with vLLM and the CUDA
# torch it pins; Airflow's environment never imports it. Run it as a Celery worker serving only
# the `llm` queue (`airflow celery worker --queues llm`) on a host with an NVIDIA GPU, a driver
# recent enough for vLLM's CUDA wheels and the NVIDIA container toolkit. For the CPU backend use
# requirements-llm.txt instead (`make llm-env`), not this image.
FROM airflow AS llm-worker
USER root
# vLLM's Triton kernels are compiled on first model load: they need a C compiler and the libc
# headers at run time. /opt is root's: make the environment's directory the airflow user's.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && apt-get autoremove -yqq --purge \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o airflow -g 0 -m 775 /opt/medic-llm
USER airflow
COPY --chown=airflow:0 requirements-llm-gpu.txt /opt/airflow/
# medic itself goes in without dependencies: the generation side needs only medic.llm.
RUN python -m venv /opt/medic-llm \
 && uv pip install --python /opt/medic-llm/bin/python --no-cache -r /opt/airflow/requirements-llm-gpu.txt \
 && uv pip install --python /opt/medic-llm/bin/python --no-cache --no-deps /opt/airflow \
 && /opt/medic-llm/bin/python -c "import importlib.util as u, medic.llm.worker; assert u.find_spec('vllm')"
# Set deployment-wide (every component: the DAG's shape is parsed from them), not only here:
#   AIRFLOW__MEDIC__LLM_BACKEND=vllm  AIRFLOW__MEDIC__LLM_PYTHON=/opt/medic-llm/bin/python
#   AIRFLOW__MEDIC__LLM_MODEL=/models/<a local model directory mounted into this worker>
