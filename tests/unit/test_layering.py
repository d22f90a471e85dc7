"""The pure core stays pure: rules, attendance, placement, render and reconcile import only the model,
each other and the standard library, and never read the clock (docs/design.md "Layers").

The imports are read from the source with `ast`, so an import inside a function counts too.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ("rules", "attendance", "placement", "render", "reconcile")
ALLOWED_LOCAL = {"worker.model", *(f"worker.{name}" for name in CORE)}
CLOCK_READS = {("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today")}
CLOCK_READS |= {("time", name) for name in ("time", "time_ns", "monotonic", "localtime", "gmtime")}


def imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, module) for every import in the source, absolute or relative, at any depth."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            # relative imports are inside worker/; `from worker import x` names the module worker.x
            module = f"worker.{node.module}" if node.level and node.module else node.module or "worker"
            if module == "worker":
                found += [(node.lineno, f"worker.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, module))
    return found


def disallowed_imports(source: str, allowed_local: set[str]) -> list[str]:
    """Every import that is neither the standard library nor one of `allowed_local`, as `line: module`."""
    bad = []
    for line, module in imported_modules(source):
        top = module.split(".")[0]
        if top == "__future__" or top in sys.stdlib_module_names:
            continue
        if module in allowed_local:
            continue
        bad.append(f"{line}: {module}")
    return bad


def clock_reads(source: str) -> list[str]:
    """Every `datetime.now()`-style call (the clock read inside the module), as `line: call`."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
            if (name, node.func.attr) in CLOCK_READS:
                bad.append(f"{node.lineno}: {name}.{node.func.attr}()")
    return bad


@pytest.mark.parametrize("name", CORE)
def test_core_module_imports_only_the_model_its_peers_and_the_stdlib(name: str) -> None:
    """A pure-core module imports nothing but worker.model, the other core modules and the standard library."""
    source = (ROOT / "worker" / f"{name}.py").read_text(encoding="utf-8")
    assert disallowed_imports(source, ALLOWED_LOCAL) == []


def test_model_imports_only_the_stdlib() -> None:
    """worker.model, which the core builds on, imports only the standard library."""
    source = (ROOT / "worker" / "model.py").read_text(encoding="utf-8")
    assert disallowed_imports(source, set()) == []


@pytest.mark.parametrize("name", CORE)
def test_core_module_never_reads_the_clock(name: str) -> None:
    """`now` is passed in: no pure-core module calls datetime.now(), date.today(), time.time() and the like."""
    source = (ROOT / "worker" / f"{name}.py").read_text(encoding="utf-8")
    assert clock_reads(source) == []


def test_the_checks_catch_what_they_look_for() -> None:
    """A third-party import, an I/O module of ours, a relative import and a clock read are all reported."""
    source = (
        "from __future__ import annotations\n"
        "import json\n"
        "from worker.model import Reason\n"
        "from worker import rules\n"
        "import structlog\n"
        "def f():\n"
        "    from worker.state import State\n"
        "    from .config import Settings\n"
        "    from . import runner\n"
        "    return datetime.now(UTC), time.monotonic(), dt.datetime.now()\n"
    )
    assert disallowed_imports(source, ALLOWED_LOCAL) == [
        "5: structlog",
        "7: worker.state",
        "8: worker.config",
        "9: worker.runner",
    ]
    assert clock_reads(source) == ["10: datetime.now()", "10: time.monotonic()", "10: datetime.now()"]


def test_commands_never_import_the_command_line() -> None:
    """worker/commands.py and the steps of a pass import no `worker.cli` (the CLI imports them, not back)."""
    for name in ("commands", "runner", "sync", "planning", "apply", "health", "output"):
        source = (ROOT / "worker" / f"{name}.py").read_text(encoding="utf-8")
        assert [m for _, m in imported_modules(source) if m == "worker.cli"] == [], name


def test_connectors_never_import_the_worker_steps() -> None:
    """Connectors see the model, errors, identity and config, never the runner or its steps."""
    steps = {f"worker.{n}" for n in ("runner", "sync", "planning", "apply", "health", "commands", "cli")}
    for path in (ROOT / "connectors").rglob("*.py"):
        found = [m for _, m in imported_modules(path.read_text(encoding="utf-8")) if m in steps]
        assert found == [], path
