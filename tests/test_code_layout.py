"""The shape of the code: stages in folders, each wholly below or above the chat adapters, no import circle.

``bot_bridge/chat`` (message types, outbound HTTP), ``hearing`` (audio, voice
activity, models) and ``remembering`` (results, the store) sit below
``adapters/``: they never import an adapter, nor anything that acts on
messages. ``acting`` (the worker, replies, alerts) sits above them. The
service, the web app and the CLI compose everything. Imports are read from
the source (those only for type checkers excluded), functions' own imports
included, since a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BELOW_ADAPTERS = ("bot_bridge.chat", "bot_bridge.hearing", "bot_bridge.remembering")
ABOVE_ADAPTERS = ("bot_bridge.acting", "bot_bridge.service", "bot_bridge.web", "bot_bridge.cli", "bot_bridge.server")


def modules() -> dict[str, Path]:
    found = {}
    for package in ("bot_bridge", "adapters"):
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports when it runs (not those under ``if TYPE_CHECKING:``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    type_checking = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                     and getattr(block.test, "id", None) == "TYPE_CHECKING" for node in ast.walk(block)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):  # a parent package is no dependency
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _in(name: str, prefixes) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


@pytest.mark.parametrize("layer", BELOW_ADAPTERS)
def test_the_stages_below_the_adapters_never_reach_them_or_what_acts(layer):
    imports = graph()
    for name in (module for module in imports if _in(module, (layer,))):
        reached = reachable(imports, name)
        wrong = sorted(target for target in reached if _in(target, ("adapters", *ABOVE_ADAPTERS)))
        assert not wrong, f"{name} reaches {wrong}"


def test_adapters_use_only_what_lies_below_them():
    imports = graph()
    for name in (module for module in imports if _in(module, ("adapters",))):
        wrong = sorted(target for target in reachable(imports, name)
                       if _in(target, ABOVE_ADAPTERS + ("bot_bridge.hearing", "bot_bridge.remembering")))
        assert not wrong, f"{name} reaches {wrong}"


def test_no_module_imports_itself_through_others():
    imports = graph()
    circles = sorted(name for name in imports if name in reachable(imports, name) and not name.endswith("__init__"))
    assert not circles, f"import circles through: {circles}"
