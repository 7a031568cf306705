"""The shape of the runtime package, read from its source (ast), not by importing it.

- The runtime package (include/medic) never imports the development tools (medic_dev).
- No import cycle among runtime modules, counting the imports that run when a module loads.
- The heavy modules ruff bans at module level (TID253) are imported only inside functions, in
  the runtime package and in the files every Airflow process loads (the plugin, the DAG files).
- What each kind of process loads stays light: the ``medic`` command loads no Airflow (it must
  point Airflow at a stack first), the listener (in every task process) no database client or
  OpenLineage until it writes, and the generation environment (no Airflow installed) no Airflow.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
RUNTIME = REPO / "include"
TOOLS = REPO / "tools"
#: Required in ruff's ban list whatever else it holds: the model stacks and the web framework.
MUST_BE_BANNED = {"torch", "sentence_transformers", "vllm", "fastapi", "xgrammar", "llama_cpp"}
#: A module that is the heavy thing itself: the incidents view is the FastAPI app.
HEAVY_ON_PURPOSE = {"medic.view.app": {"fastapi"}}


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Module name -> file, for every module of ``package`` under ``root``."""
    found = {}
    for path in sorted((root / package.replace(".", "/")).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def load_time_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements that run when the module loads: everything outside function bodies
    (class bodies, ``try`` and ``if`` blocks included) except ``if TYPE_CHECKING:`` blocks."""
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))


def all_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node


def imported_names(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """Every dotted name an import statement loads: ``from a.b import c`` loads ``a.b`` and, when
    ``c`` is a module, ``a.b.c``; both are listed (callers keep the names they know)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:  # relative: resolved against this module's package
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, node.module] if node.module else anchor)
    else:
        base = node.module or ""
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def with_parents(name: str) -> list[str]:
    """Importing ``a.b.c`` runs ``a`` and ``a.b`` first."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of ``files`` it imports when it loads."""
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets: set[str] = set()
        for node in load_time_imports(tree):
            for name in imported_names(node, module, path.name == "__init__.py"):
                targets.update(n for n in with_parents(name) if n in files)
        targets.discard(module)
        graph[module] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path (first module repeated at the end), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def closure(graph: dict[str, set[str]], roots: set[str]) -> set[str]:
    seen, pending = set(), list(roots)
    while pending:
        module = pending.pop()
        if module not in seen:
            seen.add(module)
            pending.extend(graph.get(module, ()))
    return seen


def banned_at_module_level() -> set[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    return set(config["tool"]["ruff"]["lint"]["flake8-tidy-imports"]["banned-module-level-imports"])


def is_under(name: str, modules: set[str]) -> str | None:
    return next((m for m in modules if name == m or name.startswith(m + ".")), None)


RUNTIME_FILES = module_files(RUNTIME, "medic")


def parsed(files: dict[str, Path]) -> dict[str, ast.Module]:
    return {module: ast.parse(path.read_text(), filename=str(path)) for module, path in files.items()}


def test_the_runtime_package_was_read() -> None:
    assert {"medic.config", "medic.capture.listener", "medic.view.app", "medic.lineage.events"} <= set(RUNTIME_FILES)
    assert len(RUNTIME_FILES) >= 30


def test_the_runtime_package_never_imports_the_development_tools() -> None:
    offenders = [
        f"{module}:{node.lineno} imports {name}"
        for module, tree in parsed(RUNTIME_FILES).items()
        for node in all_imports(tree)
        for name in imported_names(node, module, RUNTIME_FILES[module].name == "__init__.py")
        if name == "medic_dev" or name.startswith("medic_dev.")
    ]
    assert offenders == []


def test_no_import_cycle_among_runtime_modules() -> None:
    graph = import_graph(RUNTIME_FILES)
    assert sum(len(targets) for targets in graph.values()) >= 40, "the graph lost its edges: the reader is broken"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle_through_a_from_import_of_a_module(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text("import os\n\n\ndef f():\n    from pkg import c\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n")
    files = module_files(tmp_path, "pkg")
    assert find_cycle(import_graph(files)) is None  # a function's import and a typing-only one do not count
    (package / "sub" / "b.py").write_text("try:\n    from pkg import c\nexcept ImportError:\n    pass\n")
    (package / "c.py").write_text("class C:\n    from pkg.a import x\n")
    assert find_cycle(import_graph(files)) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]


def test_heavy_modules_are_imported_only_inside_functions() -> None:
    banned = banned_at_module_level()
    assert banned >= MUST_BE_BANNED
    loaded_everywhere = {
        f"{kind}.{path.stem}": path for kind in ("plugins", "dags") for path in sorted((REPO / kind).glob("*.py"))
    }
    files = {**RUNTIME_FILES, **loaded_everywhere}
    offenders = []
    for module, tree in parsed(files).items():
        for node in load_time_imports(tree):
            for name in imported_names(node, module, files[module].name == "__init__.py")[:1]:
                heavy = is_under(name, banned)
                if heavy and heavy not in HEAVY_ON_PURPOSE.get(module, set()):
                    offenders.append(f"{module}:{node.lineno} imports {name} when it loads")
            if isinstance(node, ast.ImportFrom):  # `from medic.view import app` loads medic.view.app
                base = imported_names(node, module, files[module].name == "__init__.py")
                offenders += [f"{module}:{node.lineno} imports {n} when it loads" for n in base[1:] if n in banned]
    assert offenders == []


def _closure_imports(roots: set[str], files: dict[str, Path]) -> dict[str, list[str]]:
    """For each module the roots load (first-party, at load time), the names it imports then."""
    graph = import_graph(files)
    loaded = closure(graph, roots)
    trees = parsed({m: files[m] for m in loaded})
    names: dict[str, list[str]] = {}
    for module, tree in trees.items():
        names[module] = []
        for node in load_time_imports(tree):
            base, *members = imported_names(node, module, files[module].name == "__init__.py")
            names[module] += [base, *(m for m in members if m in files)]  # `from medic import db`: medic.db
    return names


def _loading(imports: dict[str, list[str]], prefixes: set[str]) -> list[str]:
    return sorted(
        f"{module} imports {name}" for module, names in imports.items() for name in names if is_under(name, prefixes)
    )


def test_the_medic_command_loads_no_airflow() -> None:
    """The command imports Airflow only once an installed tool has pointed it at its stack."""
    files = {**RUNTIME_FILES, **module_files(TOOLS, "medic_dev")}
    imports = _closure_imports({"medic.cli", "medic_dev.cli"}, files)
    assert {"medic.db", "medic.lineage.events", "medic_dev.stack", "medic_dev.examples"} <= set(imports)
    assert _loading(imports, {"airflow"}) == []


def test_the_listener_loads_no_database_client_until_it_writes() -> None:
    """The plugin's success hook loads the listener in every task process that finishes."""
    imports = _closure_imports({"medic.capture.listener"}, RUNTIME_FILES)
    assert "medic.capture.records" in imports
    assert _loading(imports, {"psycopg", "openlineage", "medic.db", "medic.verify"}) == []


def test_the_generation_environment_loads_no_airflow() -> None:
    """medic.llm runs in an interpreter without Airflow or psycopg installed."""
    llm = {module for module in RUNTIME_FILES if module.startswith("medic.llm")}
    imports = _closure_imports(llm, RUNTIME_FILES)
    assert len(imports) >= 3
    assert _loading(imports, {"airflow", "psycopg"}) == []


def test_parsing_the_dag_files_loads_no_lineage_client() -> None:
    """The dag-processor parses medic's DAG files again and again: OpenLineage's client loads when
    an event is built, in a task, not with every parse."""
    dags = {f"dags.{path.stem}": path for path in sorted((REPO / "dags").glob("medic_*.py"))}
    files = {**RUNTIME_FILES, **module_files(REPO, "assets"), **dags}
    imports = _closure_imports(set(dags), files)
    assert {"medic.remediate.operators", "medic.triggers.watchers"} <= set(imports)
    assert _loading(imports, {"openlineage", "medic.lineage", "airflow_client"}) == []
