"""Imports flow downward (docs/doctor.md, DESIGN.md): cli -> doctor/commands -> algos -> debug,
envs, nets, buffers, telemetry, maths. The instruments never import an algorithm, and nothing
imports back up the tree."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "dirtyrl"
# Package -> the packages it must never import (at module level or inside a function).
FORBIDDEN = {
    "debug": ("dirtyrl.algos", "dirtyrl.doctor", "dirtyrl.commands", "dirtyrl.cli"),
    "algos": ("dirtyrl.doctor", "dirtyrl.commands"),
    "envs": ("dirtyrl.algos", "dirtyrl.doctor", "dirtyrl.commands", "dirtyrl.debug"),
}


def imported_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_runs_back_up_the_tree(package):
    for path in sorted((SRC / package).glob("*.py")):
        for name in imported_modules(path):
            bad = [f for f in FORBIDDEN[package] if name == f or name.startswith(f + ".")]
            assert not bad, f"{path.relative_to(SRC)} imports {name}"


def test_the_doctor_and_the_algorithm_commands_live_outside_debug():
    assert not (SRC / "debug" / "doctor.py").exists()
    for name in ("graph.py", "play.py"):
        assert "dirtyrl.algos" not in (SRC / "debug" / name).read_text() if (SRC / "debug" / name).exists() else True
    assert (SRC / "doctor" / "__init__.py").exists() and (SRC / "commands" / "play.py").exists()
