"""The layers of handler/ and monitor/ (ARCHITECTURE.md, "Layout"), held by their imports.

Imports are read with :mod:`ast` from the source files, so nothing is executed: every
``import`` and ``from ... import`` a module runs, at its top or inside a function (a
lazy import is still a dependency), but not those under ``if TYPE_CHECKING:`` (types
only, never run). A relative import is resolved against its package.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from handler.logs import LOGGER_NAME

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("handler", "monitor")
MAX_LINES = 450
"""No module over about 450 lines (the house rule of one job per module)."""
LAMBDA_ENTRY = "handler.app"
OFF_LAMBDA = "handler.cli"
ENTRY_POINTS = frozenset({"handler", "handler.__main__"})


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def _imported(node: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """The names an import statement brings in, as dotted paths (module or module.name)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[: len(package) - node.level + 1]
            base = ".".join([*package, base] if base else package)
        named = [f"{base}.{alias.name}" for alias in node.names]
        # ``from pkg import submodule`` needs the submodule; the package's ``__init__`` is a
        # dependency only when a name is taken from it
        if not all(name in MODULES for name in named):
            yield base
        yield from named


def _walk(node: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            yield from (i for c in child.orelse for i in _walk_one(c, module, is_package))
            continue
        yield from _walk_one(child, module, is_package)


def _walk_one(node: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    yield from _imported(node, module, is_package)
    yield from _walk(node, module, is_package)


def imports_of(module: str) -> set[str]:
    """The modules of handler/ and monitor/ that ``module`` imports (run-time imports)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = set(_walk(tree, module, path.name == "__init__.py"))
    return {name for name in found if name in MODULES and name != module}


GRAPH: dict[str, set[str]] = {module: imports_of(module) for module in MODULES}


def _parents(module: str) -> Iterator[str]:
    """The packages whose ``__init__`` runs before ``module`` does."""
    parts = module.split(".")
    for end in range(1, len(parts)):
        yield ".".join(parts[:end])


def transitive(module: str, graph: Mapping[str, set[str]]) -> set[str]:
    """Everything importing ``module`` runs: its imports, theirs, and every parent
    package's ``__init__`` on the way."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        for name in (*graph[current], *_parents(current)):
            if name not in seen and name in graph:
                seen.add(name)
                todo.append(name)
    return seen


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, 1972)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_parser_sees_lazy_relative_and_type_only_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import b\n"
        "if TYPE_CHECKING:\n"
        "    from handler import cli\n"
        "def f():\n"
        "    from handler.locations import s3\n"
    )
    found = set(_walk(ast.parse(source), "handler.archive.a", is_package=False))
    assert {"handler.archive.b", "handler.locations.s3"} <= found
    assert "handler.cli" not in found  # type-only: never run
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_layout_has_its_subpackages() -> None:
    for package in ("archive", "zipwriter", "locations", "cli"):
        init = ROOT / "handler" / package / "__init__.py"
        assert init.is_file(), f"handler/{package}/ is a package"
        assert "__all__" in init.read_text(encoding="utf-8"), f"handler/{package} has __all__"
    assert len(MODULES) > 50  # the walk found the tree


def test_no_import_cycle() -> None:
    assert cycles(GRAPH) == []


def test_the_lambda_path_imports_nothing_of_the_command_line() -> None:
    reached = transitive(LAMBDA_ENTRY, GRAPH)
    assert "handler.packaging" in reached and "monitor" in reached  # the walk follows
    off_lambda = sorted(m for m in reached if m == OFF_LAMBDA or m.startswith(f"{OFF_LAMBDA}."))
    assert off_lambda == []


def test_no_upward_import() -> None:
    """A module inside a subpackage never imports its own package's or the root's
    ``__init__`` (which imports it back); the shared vocabulary at handler's top never
    imports the command line (``python -m handler``, handler/__main__.py, is its door)."""
    upward = []
    for module, imported in GRAPH.items():
        for parent in _parents(module):
            if parent in imported:
                upward.append(f"{module} imports {parent}")
        top_level = MODULES[module].parent == ROOT / "handler" and module not in ENTRY_POINTS
        if top_level and any(i == OFF_LAMBDA or i.startswith(f"{OFF_LAMBDA}.") for i in imported):
            upward.append(f"{module} imports {OFF_LAMBDA}")
    assert upward == []


def test_monitor_imports_nothing_of_handler() -> None:
    leaks = {
        module: sorted(i for i in imported if i == "handler" or i.startswith("handler."))
        for module, imported in GRAPH.items()
        if module.split(".")[0] == "monitor"
    }
    assert {m: i for m, i in leaks.items() if i} == {}


def _line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def _too_long(package: str) -> dict[str, int]:
    return {
        module: lines
        for module, path in MODULES.items()
        if module.split(".")[0] == package and (lines := _line_count(path)) > MAX_LINES
    }


def test_no_handler_module_is_over_450_lines() -> None:
    longest = max(_line_count(p) for m, p in MODULES.items() if m.startswith("handler"))
    assert _too_long("handler") == {}
    assert longest <= MAX_LINES


def test_no_monitor_module_is_over_450_lines() -> None:
    assert _too_long("monitor") == {}


def _error_classes() -> dict[str, tuple[str, ...]]:
    """Every class under handler/ and monitor/ that derives from TmpwardenError: name ->
    its bases as written (the parent first, then the built-in it refines)."""
    classes: dict[str, tuple[str, ...]] = {}
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                classes[node.name] = tuple(ast.unparse(base) for base in node.bases)
    errors: dict[str, tuple[str, ...]] = {}
    changed = True
    while changed:
        changed = False
        for name, bases in classes.items():
            if name not in errors and bases and bases[0] in {"TmpwardenError", *errors}:
                errors[name] = bases
                changed = True
    return errors


def _documented_tree(text: str) -> dict[str, tuple[str, ...]]:
    """name -> (parent, built-ins...) from the drawn tree (indentation gives the parent)."""
    tree: dict[str, tuple[str, ...]] = {}
    parents: list[tuple[int, str]] = []
    for line in text.splitlines():
        stripped = line.lstrip(" │├└─")
        if not stripped or stripped.startswith(("The root", "When")):
            continue
        depth = len(line) - len(stripped)
        name, _, rest = stripped.partition("(")
        builtins = tuple(b.strip() for b in rest.rstrip(")").split(",") if b.strip())
        while parents and parents[-1][0] >= depth:
            parents.pop()
        if parents:
            tree[name] = (parents[-1][1], *builtins)
        parents.append((depth, name))
    return tree


def _errors_docstring_tree() -> str:
    doc = ast.get_docstring(ast.parse((ROOT / "handler/errors.py").read_text(encoding="utf-8")))
    assert doc is not None
    block = doc.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    return "\n".join(line.removeprefix("    ") for line in block.splitlines())


def test_the_exception_tree_on_one_page_is_the_code_s() -> None:
    drawn = _errors_docstring_tree()
    assert _documented_tree(drawn) == _error_classes()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Errors\n", 1)[1].split("\n## ", 1)[0]
    assert f"```\n{drawn}\n```" in section  # README.md's "Errors" shows the same tree


def _logger_names(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and ast.unparse(node.func) == "logging.getLogger"
            and node.args
        ):
            yield ast.unparse(node.args[0])


def test_every_logger_is_under_the_tmpwarden_tree() -> None:
    """handler/logs.py sends "tmpwarden" and its children to stdout as JSON; a logger
    named after its module ("handler.storage") would escape that format."""
    assert LOGGER_NAME == "tmpwarden"
    outside = []
    for module, path in MODULES.items():
        package = module.split(".")[0]
        for name in _logger_names(path):
            if name == "LOGGER_NAME" and module == "handler.logs":
                continue
            if not name.strip("'\"").startswith(f"tmpwarden.{package}"):
                outside.append(f"{module}: getLogger({name})")
    assert outside == []


RAW_SIZES = re.compile(
    r"\b1024\s*\*\s*1024\b|\b1\s*<<\s*[1-4]0\b|\b(?:1048576|8388608|1073741824)\b"
)


def test_handler_spells_sizes_in_units() -> None:
    """Sizes are ``n * MiB`` (monitor/units.py), never ``1 << 20`` or ``1024 * 1024``."""
    raw = [
        f"{module}:{number}: {line.strip()}"
        for module, path in MODULES.items()
        if module.split(".")[0] == "handler"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if RAW_SIZES.search(line)
    ]
    assert raw == []
