"""The agents core stays pure: no trio, no I/O library, nothing of the runtime around it."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).parents[2] / "agents" / "_core"

# Libraries that do I/O or concurrency; the core must not need any of them.
FORBIDDEN = {"trio", "trio_asyncio", "asyncio", "anyio", "httpx", "quart", "hypercorn", "aiosqlite"}
# Of agents itself, the core may only use the error tree.
ALLOWED_PARENTS = {"_errors"}


def imports(path: Path) -> list[tuple[int, str]]:
    """(level, module) of every import in *path*: level 0 absolute, 1 ``.x``, 2 ``..x``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(0, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.level, node.module or ""))
    return found


def test_the_core_imports_no_runtime_library() -> None:
    modules = sorted(CORE.glob("*.py"))
    assert len(modules) >= 8, modules
    for path in modules:
        for level, module in imports(path):
            if level == 0:
                assert module.split(".")[0] not in FORBIDDEN, f"{path.name} imports {module}"
            if level == 2:
                assert module in ALLOWED_PARENTS, f"{path.name} imports agents.{module}"
            assert level <= 2, f"{path.name} reaches outside agents"


def test_the_check_would_catch_a_trio_import(tmp_path: Path) -> None:
    bad = tmp_path / "_bad.py"
    bad.write_text("import trio\nfrom .._supervisor import Supervisor\n")
    assert imports(bad) == [(0, "trio"), (2, "_supervisor")]
