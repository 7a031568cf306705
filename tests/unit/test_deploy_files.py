"""The deployment files agree with the Compose Specification, the Dockerfile and medic's settings.

No Docker engine runs where these tests run, so nothing is built or started here (the install
steps are replayed by deploy/check_image_steps.sh). What is checked is what would otherwise only
break on someone else's machine: a compose file Compose rejects, a build target or a copied file
that does not exist, a setting medic does not have, generation settings that differ between the
components that parse medic_diagnose, a worker serving the wrong queue, a secret written into a
file, a pool or connection that the code names and the deployment does not create.
"""

from __future__ import annotations

import json
import re
import shlex
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from medic.provider import DEFAULTS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
SCHEMA_FILE = ROOT / "tests" / "data" / "compose-spec.json"
# [medic] settings that decide medic_diagnose's shape or its generation step
#: the generation pool the shipped deployments name and create ([medic] llm_pool; default empty)
ASTRO_POOL = "medic_llm"
GENERATION_KEYS = ("LLM_BACKEND", "LLM_PYTHON", "LLM_MODEL", "LLM_QUEUE", "LLM_POOL", "MAX_GENERATIONS_PER_HOUR")

# Compose's interpolation: $$, ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?err}, ${NAME?err},
# ${NAME:+alt}, ${NAME+alt}, $NAME. Defaults and messages hold no nested braces in these files.
_INTERPOLATION = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$", re.S)


class Missing(LookupError):
    pass


def interpolate(value: Any, env: dict[str, str], required: set[str] | None = None) -> Any:
    """Resolve ``value`` as Compose would with ``env``; names of ``${X:?..}`` go into ``required``."""
    if isinstance(value, dict):
        return {key: interpolate(item, env, required) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env, required) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("named"):
            return env.get(match.group("named"), "")
        braced = _BRACED.match(match.group("braced"))
        if braced is None:
            raise ValueError(f"invalid interpolation ${{{match.group('braced')}}} in {value!r}")
        name, op, arg = braced.group("name", "op", "arg")
        current = env.get(name)
        unset_or_empty = not current if op and op.startswith(":") else current is None
        if op in (":?", "?"):
            if required is not None:
                required.add(name)
            if unset_or_empty:
                raise Missing(f"{name}: {arg}")
            return current
        if op in (":-", "-"):
            return arg if unset_or_empty else current
        if op in (":+", "+"):
            return "" if unset_or_empty else arg
        return current or ""

    return _INTERPOLATION.sub(substitute, value)


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def required_variables(document: Any) -> set[str]:
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str):
            for match in _INTERPOLATION.finditer(value):
                braced = match.group("braced") and _BRACED.match(match.group("braced"))
                if braced and braced.group("op") in (":?", "?"):
                    found.add(braced.group("name"))

    walk(document)
    return found


def resolved_compose() -> dict[str, Any]:
    """The compose file as Compose would run it, every required secret set to a placeholder."""
    document = load_compose()
    env = {name: f"<{name}>" for name in required_variables(document)}
    return interpolate(document, env)


def airflow_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run this repository's Airflow image (built from the Dockerfile)."""
    return {name: svc for name, svc in compose["services"].items() if "build" in svc}


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def command_words(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else list(command)


def served_queues(service: dict[str, Any]) -> list[str] | None:
    words = command_words(service)
    if words[:2] != ["celery", "worker"]:
        return None
    for flag in ("--queues", "-q"):
        if flag in words:
            return words[words.index(flag) + 1].split(",")
    return ["default"]  # Airflow's [operators] default_queue


# ---- the Dockerfile ---------------------------------------------------------------------------------
def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    logical, current = [], ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        logical.append(current)
        current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "") for text in logical]


def dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current = None
    for instruction, args in dockerfile_instructions():
        if instruction == "FROM":
            match = re.search(r"\s+AS\s+(\S+)\s*$", args, re.I)
            assert match, f"every stage is named: FROM {args}"
            current = match.group(1)
            stages[current] = [(instruction, args)]
        elif current is not None:
            stages[current].append((instruction, args))
    return stages


def copy_instructions() -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY that copies from the build context."""
    copies = []
    for instruction, args in dockerfile_instructions():
        if instruction not in ("COPY", "ADD"):
            continue
        words = shlex.split(args)
        if any(word.startswith("--from") for word in words):
            continue
        paths = [word for word in words if not word.startswith("--")]
        copies.append((paths[:-1], paths[-1]))
    return copies


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_the_vendored_schema_is_the_compose_specification_and_rejects_a_wrong_file() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["title"] == "Compose Specification"
    validator = jsonschema.Draft201909Validator(schema)
    broken = {"services": {"api-server": {"image": "x", "port": ["8080:8080"]}}}
    assert not validator.is_valid(broken)  # a misspelt key is caught, so the check below means something


def test_docker_compose_yaml_is_valid_compose() -> None:
    validator = jsonschema.Draft201909Validator(json.loads(SCHEMA_FILE.read_text()))
    for document in (load_compose(), resolved_compose()):
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
        assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_marquez_overlay_is_valid_compose_too() -> None:
    validator = jsonschema.Draft201909Validator(json.loads(SCHEMA_FILE.read_text()))
    overlay = load_compose(ROOT / "docker-compose.marquez.yaml")
    # the top-level `name` (Compose v2) postdates the vendored 2021 schema
    assert isinstance(overlay.pop("name"), str)
    errors = list(validator.iter_errors(overlay))
    assert not errors, [e.message for e in errors]


def test_every_interpolation_is_well_formed_and_every_secret_is_required() -> None:
    compose = load_compose()
    with pytest.raises(Missing):
        interpolate(compose, {})  # nothing starts without its secrets
    required = required_variables(compose)
    assert {"POSTGRES_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "MEDIC_SERVICE_PASSWORD"} <= required
    # ... and deploy/.env.example names each of them, and nothing the compose file never reads
    example = (ROOT / "deploy" / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", example, re.M))
    used = {m.group("named") or _BRACED.match(m.group("braced")).group("name") for m in _iter_refs(compose)}
    used.add("COMPOSE_PROJECT_NAME")  # read by Compose itself
    assert required <= listed, required - listed
    assert listed <= used, listed - used
    for name in required:  # required values are empty in the example: nobody runs its values
        assert re.search(rf"^{name}=$", example, re.M), name


def _iter_refs(value: Any):
    if isinstance(value, dict):
        for item in value.values():
            yield from _iter_refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _iter_refs(item)
    elif isinstance(value, str):
        yield from (m for m in _INTERPOLATION.finditer(value) if not m.group("escaped"))


_SECRET_KEY = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|_KEY$", re.I)
_REQUIRED_REF = re.compile(r"^\$\{[A-Z][A-Z0-9_]*:\?[^}]*\}$")


def test_no_literal_secret_in_the_compose_file() -> None:
    compose = load_compose()
    checked = 0
    for name, service in compose["services"].items():
        for key, value in environment(service).items():
            if key.endswith("_FILE"):  # a path to a secret (written by airflow-init), not one
                assert value.startswith("/"), f"{name}: {key}"
            elif _SECRET_KEY.search(key):
                assert _REQUIRED_REF.match(value), f"{name}: {key} must come from the environment"
                checked += 1
            for password in re.findall(r"://[^:/@\s]+:([^@\s]*)@", value):  # user:password@ in URLs
                assert _REQUIRED_REF.match(password), f"{name}: {key} has a password in its URL"
                checked += 1
            if key.startswith("AIRFLOW_CONN_") and value.startswith("{"):
                conn = json.loads(interpolate(value, {n: "x" for n in required_variables(value)}))
                if "password" in conn:
                    assert _REQUIRED_REF.match(json.loads(value)["password"]), f"{name}: {key}"
                    checked += 1
    assert checked >= 10


def test_build_targets_are_dockerfile_stages_and_copied_files_exist() -> None:
    stages = dockerfile_stages()
    assert set(stages) == {"airflow", "llm-worker"}
    compose = load_compose()
    targets = {svc["build"]["target"] for svc in airflow_services(compose).values()}
    assert targets == {"airflow", "llm-worker"}
    assert targets <= set(stages)
    ignored = dockerignore_patterns()
    for sources, _ in copy_instructions():
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            top = source.rstrip("/")
            assert not any(fnmatch(top, pattern) for pattern in ignored), f"COPY {source} is in .dockerignore"
    # the compose file's bind mounts exist too
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), volume


def test_the_airflow_image_installs_through_the_replayed_script_and_pins_airflow() -> None:
    stage = dockerfile_stages()["airflow"]
    runs = " ".join(args for instruction, args in stage if instruction == "RUN")
    assert "deploy/install-airflow-env.sh" in runs  # the steps deploy/check_image_steps.sh replays
    script = (ROOT / "deploy" / "install-airflow-env.sh").read_text()
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in script
    version = re.search(r"^ARG AIRFLOW_VERSION=(\S+)$", (ROOT / "Dockerfile").read_text(), re.M).group(1)
    requirements = (ROOT / "requirements.txt").read_text()
    assert f"apache-airflow=={version}\n" in requirements
    # CeleryExecutor in the compose file: the provider is a pinned requirement, not whatever the
    # base image happens to ship
    assert re.search(r"^apache-airflow-providers-celery==", requirements, re.M)
    # every script the compose file runs in the image is copied into it
    copied = {f"{dest.rstrip('/')}/{Path(src).name}" for sources, dest in copy_instructions() for src in sources}
    init = resolved_compose()["services"]["airflow-init"]
    assert command_words(init)[-1] in copied


def test_the_llm_worker_serves_only_llm_and_no_other_worker_does() -> None:
    compose = resolved_compose()
    services = airflow_services(compose)
    queue = environment(next(iter(services.values())))["AIRFLOW__MEDIC__LLM_QUEUE"]
    assert queue == DEFAULTS["llm_queue"] == "llm"
    workers = {name: served_queues(svc) for name, svc in services.items() if served_queues(svc) is not None}
    assert {"worker", "llm-worker"} <= set(workers)
    for name, queues in workers.items():
        if name.startswith("llm-"):
            assert queues == [queue], (name, queues)
        else:
            assert queue not in queues, (name, queues)
    gpu = services["llm-worker"]
    assert gpu["build"]["target"] == "llm-worker"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)
    assert "gpu" in gpu.get("profiles", [])  # `docker compose up` works on machines without one
    # the interpreter medic is told to use is the environment the llm-worker stage creates
    llm_python = environment(gpu)["AIRFLOW__MEDIC__LLM_PYTHON"]
    stage_runs = " ".join(a for i, a in dockerfile_stages()["llm-worker"] if i == "RUN")
    venv = re.search(r"python -m venv (\S+)", stage_runs).group(1)
    assert llm_python == f"{venv}/bin/python"


def test_every_airflow_component_gets_the_same_airflow_and_generation_settings() -> None:
    services = airflow_services(resolved_compose())
    assert {"airflow-init", "api-server", "scheduler", "dag-processor", "triggerer", "worker", "llm-worker"} <= set(
        services
    )
    reference = {k: v for k, v in environment(services["scheduler"]).items() if k.startswith("AIRFLOW")}
    for key in GENERATION_KEYS:
        assert f"AIRFLOW__MEDIC__{key}" in reference, key
    for name, service in services.items():
        airflow_env = {k: v for k, v in environment(service).items() if k.startswith("AIRFLOW_")}
        shared = {k: v for k, v in airflow_env.items() if not k.startswith("AIRFLOW_PASSWORD_")}
        assert shared == reference, f"{name} differs: {set(shared.items()) ^ set(reference.items())}"


def test_every_medic_setting_named_in_the_deployment_exists() -> None:
    texts = [
        COMPOSE_FILE.read_text(),
        (ROOT / "Dockerfile").read_text(),
        (ROOT / "deploy" / ".env.example").read_text(),
    ]
    keys = {key.lower() for text in texts for key in re.findall(r"AIRFLOW__MEDIC__([A-Z0-9_]+)", text)}
    assert keys, "the deployment sets medic's settings"
    assert keys <= set(DEFAULTS), keys - set(DEFAULTS)


def test_components_find_each_other_and_the_databases_exist() -> None:
    compose = resolved_compose()
    services = compose["services"]
    env = environment(services["scheduler"])
    init_sql = (ROOT / "deploy" / "postgres" / "init-databases.sh").read_text()
    databases = dict(re.findall(r"CREATE DATABASE (\w+) OWNER (\w+);", init_sql))
    assert {"airflow", "medic", "marquez"} <= set(databases)
    assert re.search(r"\\connect medic\s+CREATE EXTENSION IF NOT EXISTS vector;", init_sql)
    # the api-server's name in the Execution API URL and in medic's REST connection
    api = re.match(r"http://([\w-]+):8080/execution/$", env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]).group(1)
    assert command_words(services[api]) == ["api-server"]
    conn = json.loads(env["AIRFLOW_CONN_MEDIC_AIRFLOW_API"])
    assert conn["host"] == api and conn["port"] == 8080
    users = dict(u.split(":") for u in env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(","))
    assert users[conn["login"]] == "user"  # least privilege: may clear task instances
    init_env = environment(services["airflow-init"])
    for user in users:  # airflow-init writes a password for every user
        assert init_env["AIRFLOW_PASSWORD_" + re.sub(r"[^A-Za-z0-9]", "_", user).upper()]
    # medic's database: a service, a database the init script creates, owned by the connection's login
    medic_db = json.loads(env["AIRFLOW_CONN_MEDIC_DB"])
    assert medic_db["host"] in services and databases[medic_db["schema"]] == medic_db["login"]
    metadata = re.match(
        r"postgresql\+psycopg://(\w+):[^@]+@([\w-]+):5432/(\w+)$", env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    )
    user, host, database = metadata.groups()
    assert host in services and databases[database] == user
    # lineage: medic's scrubbing wrapper around HTTP to the Marquez API service
    transport = json.loads(env["AIRFLOW__OPENLINEAGE__TRANSPORT"])
    assert transport["type"] == "medic.lineage.transport.ScrubbingTransport"
    host, port = re.match(r"http://([\w-]+):(\d+)$", transport["transport"]["url"]).groups()
    marquez = services[host]
    config = yaml.safe_load((ROOT / marquez["volumes"][0].split(":")[0]).read_text())
    assert int(port) == config["server"]["applicationConnectors"][0]["port"]
    placeholders = set(re.findall(r"\$\{(\w+)\}", json.dumps(config)))
    assert placeholders <= set(environment(marquez)), placeholders - set(environment(marquez))
    assert environment(marquez)["POSTGRES_HOST"] in services
    assert databases[environment(marquez)["POSTGRES_DB"]] == environment(marquez)["POSTGRES_USER"]


def test_the_init_service_prepares_what_the_others_wait_for() -> None:
    compose = load_compose()
    services = compose["services"]
    script = (ROOT / "deploy" / "airflow-init.sh").read_text()
    for step in ("airflow db migrate", "medic migrate", "airflow pools set"):
        assert step in script, step
    pool = environment(services["scheduler"])["AIRFLOW__MEDIC__LLM_POOL"]
    assert pool == ASTRO_POOL  # named explicitly (the default is default_pool) and created here
    for name in ("api-server", "scheduler", "dag-processor", "triggerer", "worker", "llm-worker"):
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        assert "healthcheck" in services[name], name
    auth_file = environment(services["scheduler"])["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    for name in ("airflow-init", "api-server"):  # written by one, read (and locked) by the other
        mounts = {v.split(":")[1]: v.split(":")[0] for v in services[name]["volumes"]}
        assert mounts.get(str(Path(auth_file).parent)) == "airflow-auth", name


def test_the_astro_settings_create_the_connections_and_pool_medic_names() -> None:
    settings = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())["airflow"]
    conn_ids = {conn["conn_id"] for conn in settings["connections"]}
    assert {DEFAULTS["conn_id"], DEFAULTS["api_conn_id"]} <= conn_ids
    for conn in settings["connections"]:
        assert not conn.get("conn_password"), f"{conn['conn_id']}: no passwords in this file"
    api = next(c for c in settings["connections"] if c["conn_id"] == DEFAULTS["api_conn_id"])
    assert (api["conn_type"], api["conn_port"]) == ("http", 8080)
    pools = {pool["pool_name"]: pool for pool in settings["pools"]}
    assert ASTRO_POOL in pools
    pool = pools[ASTRO_POOL]
    assert set(pool) == {"pool_name", "pool_slot", "pool_description"}  # the Astro CLI's keys
    assert isinstance(pool["pool_slot"], int) and pool["pool_slot"] >= 1
    assert isinstance(settings["variables"], list)
