"""The package's import graph (issue 15): no cycle, and the layer rules of ``docs/design.md``.

A cycle is a design knot, and the import that closes it ends up hidden inside a function. Imports inside functions
count too (deferring one for a cold start is fine; deferring one to dodge a cycle or a layer is not); only those
under ``TYPE_CHECKING`` (types, never run) do not.

The layers, from the top: ``api`` (and the entry points beside it) → ``services`` → ``db``, ``oauth``, ``crypto``
→ the domain (``models``, ``errors``, ``config``…). Dependencies point down only, and the database's own
vocabulary stays in ``db/``: no module above it imports a database driver or SQLAlchemy's exceptions, so that
what a database failure means is decided once, where it arises (``db/engine.py``, ``db/target.py``).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "layers" / "common" / "connvault"

ENTRY_POINTS = ("connvault.api", "connvault.admin", "connvault.custom_resource")
"""The top floor: what handlers and operators call. Nothing below imports it."""
COMPOSITION_ROOT = ("connvault.wiring",)
"""The process's collaborators, which services take as defaults; nothing below services reaches for it."""
SERVICES = ("connvault.services",)
DB = ("connvault.db",)
ADAPTERS = ("connvault.db", "connvault.oauth", "connvault.crypto")
DRIVERS = ("pg8000", "sqlalchemy.exc")
"""What only ``db/`` speaks: the driver, and SQLAlchemy's wrappers of its errors."""
SPEAKS_THE_DRIVER = ("connvault.db", "connvault.migrations")
"""``db/``, and the migration runner: it runs as the schema owner over a plain driver connection of its own."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, *, types_too: bool = False) -> set[str]:
    """Every module ``path`` imports, at import time or later (a ``from a import b`` counts as ``a`` and ``a.b``);
    with ``types_too``, those under ``TYPE_CHECKING`` as well."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in tree.body:
        if not types_too and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for child in ast.walk(node):
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.add(child.module)
                found.update(f"{child.module}.{alias.name}" for alias in child.names)
    return found


@cache
def modules() -> dict[str, set[str]]:
    return {module_name(path): imports(path) for path in PACKAGE.rglob("*.py")}


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def offences(importers: tuple[str, ...] | None, forbidden: tuple[str, ...], *, exempt: tuple[str, ...] = ()) -> list:
    """``(module, import)`` pairs where a module within ``importers`` (None: any not ``exempt``) imports one of
    ``forbidden``."""
    return sorted(
        (name, target)
        for name, targets in modules().items()
        if (within(name, importers) if importers is not None else not within(name, exempt))
        for target in targets
        if within(target, forbidden) and not within(name, forbidden)
    )


def test_the_package_imports_itself_without_a_cycle() -> None:
    known = set(modules())
    graph = {name: (targets & known) - {name} for name, targets in modules().items()}
    cycles: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(name: str, stack: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target, [*stack, target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])

    assert cycles == []


BELOW_SERVICES = (
    *ADAPTERS,
    "connvault.models",
    "connvault.connection_status",
    "connvault.once",
    "connvault.errors",
    "connvault.redacted",
    "connvault.clock",
    "connvault.config",
    "connvault.retry",
    "connvault.observability",
)


@pytest.mark.parametrize(
    ("importers", "forbidden"),
    [
        pytest.param(BELOW_SERVICES, (*ENTRY_POINTS, *COMPOSITION_ROOT, *SERVICES), id="nothing-below-reaches-up"),
        pytest.param(SERVICES, ENTRY_POINTS, id="services-know-no-api"),
        pytest.param(SERVICES, ("aws_lambda_powertools.event_handler",), id="services-know-no-http-resolver"),
        pytest.param(("connvault.db",), ("connvault.oauth",), id="repositories-make-no-provider-calls"),
    ],
)
def test_dependencies_point_down(importers: tuple[str, ...], forbidden: tuple[str, ...]) -> None:
    assert offences(importers, forbidden) == []


def test_the_api_reaches_the_database_only_to_hand_a_unit_of_work_to_a_service() -> None:
    # Types count here too: a response model built from a repository's own class ties the contract to storage.
    api = {module_name(path): imports(path, types_too=True) for path in (PACKAGE / "api").rglob("*.py")}
    reached = sorted((name, target) for name, targets in api.items() for target in targets if within(target, DB))
    assert [pair for pair in reached if not within(pair[1], ("connvault.db.uow",))] == []


def test_no_module_above_db_imports_a_database_driver_or_its_errors() -> None:
    assert offences(None, DRIVERS, exempt=SPEAKS_THE_DRIVER) == []


def test_services_build_no_statement_and_name_no_envelope_field() -> None:
    # Statements are the repositories' and envelopes are sealed and opened in db/ (issue 15): a service that
    # imports SQLAlchemy, even for a type, or the field an envelope is bound to has taken a repository's job.
    services = {module_name(path): imports(path, types_too=True) for path in (PACKAGE / "services").rglob("*.py")}
    taken = sorted(
        (name, target)
        for name, targets in services.items()
        for target in targets
        if within(target, ("sqlalchemy",)) or target.rpartition(".")[2].endswith("_FIELD")
    )
    assert taken == []


def test_the_rules_see_the_imports_they_judge() -> None:
    # Guards the walk itself: a rule that saw no imports would pass for the wrong reason.
    assert "connvault.db.uow" in modules()["connvault.services.tokens"] or any(
        within(target, ("connvault.db",)) for target in modules()["connvault.services.tokens"]
    )
    assert any(within(target, DRIVERS) for target in modules()["connvault.db.native"])
