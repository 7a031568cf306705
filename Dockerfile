# airflow-medic: the Airflow image (scheduler, triggerer, dag-processor, api-server, workers).
#
# The medic package is installed into the image's environment because the triggerer cannot
# import DAG-bundle code (Airflow ADR 0005): FailureEventTrigger must be importable as
# `medic.triggers`. The bundle (dags/, assets/, plugins/, include/) lives in AIRFLOW_HOME,
# which is on PYTHONPATH as in the Astro runtime, so DAG files can import `assets`.
#
# Build: docker build -t airflow-medic .     (the GPU worker image arrives with the LLM work)
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}

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
