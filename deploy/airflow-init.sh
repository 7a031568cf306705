#!/usr/bin/env bash
# docker-compose.yaml's `airflow-init`: runs before every other Airflow service starts (they wait
# for it to complete) and on each `docker compose up`; every step is idempotent.
#   1. Airflow's metadata schema   (airflow db migrate)
#   2. medic's schema in medic_db  (medic migrate; the database and its `vector` extension come
#                                   from deploy/postgres/init-databases.sh)
#   3. the pool of the generation task ([medic] llm_pool, MEDIC_LLM_POOL_SLOTS slots)
#   4. the SimpleAuthManager users' passwords file: every user named in
#      AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS gets the password in AIRFLOW_PASSWORD_<NAME>
#      (upper case, `-` as `_`: admin -> AIRFLOW_PASSWORD_ADMIN, medic-service ->
#      AIRFLOW_PASSWORD_MEDIC_SERVICE), written with mode 600; change one in .env and run
#      `docker compose up airflow-init` again to rotate it.
# deploy/check_image_steps.sh runs this same script against a local PostgreSQL.
set -euo pipefail

echo "airflow-init: Airflow $(airflow version)"
airflow db migrate
medic migrate

pool=${AIRFLOW__MEDIC__LLM_POOL-medic_llm}
# default_pool is Airflow's own, sized for everything: never shrink it to medic's slots
if [ -n "$pool" ] && [ "$pool" != "default_pool" ]; then
    airflow pools set "$pool" "${MEDIC_LLM_POOL_SLOTS:-1}" \
        "medic: model generation (medic_diagnose.generate_diagnoses), one batch per slot"
fi

python - <<'PY'
import json
import os
import re

path = os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
users = [entry.split(":")[0].strip() for entry in os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",")]
passwords, missing = {}, []
for user in filter(None, users):
    variable = "AIRFLOW_PASSWORD_" + re.sub(r"[^A-Za-z0-9]", "_", user).upper()
    if os.environ.get(variable):
        passwords[user] = os.environ[variable]
    else:
        missing.append(variable)
if missing:
    raise SystemExit(f"airflow-init: set {', '.join(missing)} (see deploy/.env.example)")
os.makedirs(os.path.dirname(path), exist_ok=True)
fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as handle:
    json.dump(passwords, handle)
os.replace(path + ".tmp", path)
print(f"airflow-init: passwords of {', '.join(passwords)} written to {path}")
PY
echo "airflow-init: done"
