"""Every public namespace says exactly what it exports (``__all__``), and agents' stays small."""

from __future__ import annotations

import importlib
import types

import pytest

PUBLIC = [
    "sessions",
    "agents",
    "agents.events",
    "agents.commands",
    "agents.model",
    "agents.mcp",
    "agents.testing",
    "server",
    "server.chat",
    "server.acp",
    "server.client",
]


@pytest.mark.parametrize("name", PUBLIC)
def test_all_lists_exactly_the_public_names(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(set(exported)) == len(exported), "duplicates in __all__"
    for item in exported:
        assert hasattr(module, item), f"{name}.__all__ names missing {item!r}"
    public = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and not isinstance(value, types.ModuleType)
        and attr not in ("annotations", "TYPE_CHECKING")
    }
    assert public == set(exported), f"{name}: public but not exported: {public - set(exported)}"


def test_the_agents_namespace_stays_small() -> None:
    import agents

    assert len(agents.__all__) < 30, agents.__all__
