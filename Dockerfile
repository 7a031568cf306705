# airflow-medic: the Airflow image (scheduler, triggerer, dag-processor, api-server, workers).
#
# The medic package is installed into the image's environment because the triggerer cannot
# import DAG-bundle code (Airflow ADR 0005): FailureEventTrigger must be importable as
# `medic.triggers`. The bundle (dags/, assets/, plugins/, include/) lives in AIRFLOW_HOME,
# which is on PYTHONPATH as in the Astro runtime, so DAG files can import `assets`.
#
# Two images from this file:
#   docker build --target airflow    -t airflow-medic .            # every Airflow component
#   docker build --target llm-worker -t airflow-medic-llm-worker . # a worker serving the `llm` queue
# The llm-worker is the Airflow image plus a second Python environment (/opt/medic-llm) with
# vLLM and its own pinned torch/transformers; Airflow's environment never imports it. Run that
# image as a worker on the `llm` queue (Celery: `airflow celery worker --queues llm`) on a
# machine with a GPU. For the CPU backend, use requirements-llm.txt instead (not a GPU image).
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION} AS airflow

ENV AIRFLOW_HOME=/opt/airflow \
    PYTHONPATH=/opt/airflow \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    AIRFLOW__CORE__PARALLELISM=8 \
    AIRFLOW__MEDIC__CONN_ID=medic_db

COPY --chown=airflow:0 requirements.txt pyproject.toml README.md /opt/airflow/
COPY --chown=airflow:0 include/ /opt/airflow/include/
RUN pip install --no-cache-dir -r /opt/airflow/requirements.txt /opt/airflow

COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 assets/ /opt/airflow/assets/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 airflow_settings.yaml /opt/airflow/

# medic's schema is migrated by `medic migrate` (run it once per deployment, like `airflow db migrate`).

# ---- the GPU generation worker ---------------------------------------------------------------
FROM airflow AS llm-worker
COPY --chown=airflow:0 requirements-llm-gpu.txt /opt/airflow/
RUN python -m venv /opt/medic-llm \
 && /opt/medic-llm/bin/pip install --no-cache-dir -r /opt/airflow/requirements-llm-gpu.txt \
 && /opt/medic-llm/bin/pip install --no-cache-dir --no-deps /opt/airflow
# Set deployment-wide (every component: the DAG's shape is parsed from them), not only here:
#   AIRFLOW__MEDIC__LLM_BACKEND=vllm  AIRFLOW__MEDIC__LLM_PYTHON=/opt/medic-llm/bin/python
#   AIRFLOW__MEDIC__LLM_MODEL=/models/<a local model directory mounted into this worker>
