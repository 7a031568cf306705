#!/usr/bin/env bash
# docker-compose.yaml's PostgreSQL (pgvector image): runs once, when the data volume is empty.
# One role and one database each for Airflow's metadata, medic (with the pgvector extension,
# which needs a superuser to create) and Marquez. Passwords come from the environment (.env).
# The image's entrypoint sources this file when it is not executable, so no `set -u` here.
set -eo pipefail
: "${AIRFLOW_DB_PASSWORD:?set AIRFLOW_DB_PASSWORD}"
: "${MEDIC_DB_PASSWORD:?set MEDIC_DB_PASSWORD}"
: "${MARQUEZ_DB_PASSWORD:?set MARQUEZ_DB_PASSWORD}"

psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    -v airflow_pw="$AIRFLOW_DB_PASSWORD" -v medic_pw="$MEDIC_DB_PASSWORD" -v marquez_pw="$MARQUEZ_DB_PASSWORD" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_pw';
CREATE DATABASE airflow OWNER airflow;
CREATE ROLE medic LOGIN PASSWORD :'medic_pw';
CREATE DATABASE medic OWNER medic;
CREATE ROLE marquez LOGIN PASSWORD :'marquez_pw';
CREATE DATABASE marquez OWNER marquez;
\connect medic
CREATE EXTENSION IF NOT EXISTS vector;
SQL
