"""Every package of the source tree is installed (a subpackage left out of pyproject's
``packages`` list works in the editable checkout and breaks ``pip install .``)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_every_package_is_listed_for_installation() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("server", "agents", "sessions")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert found == listed
