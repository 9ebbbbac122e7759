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


def test_every_console_file_is_package_data() -> None:
    """The web console's files ship in the wheel (a new subfolder needs its pattern)."""
    import fnmatch

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["server"]
    console = ROOT / "server" / "console"
    files = [p.relative_to(ROOT / "server").as_posix() for p in console.rglob("*") if p.is_file()]
    assert "console/index.html" in files

    def covers(pattern: str, path: str) -> bool:  # as setuptools globs: "*" stops at "/"
        parts, wanted = path.split("/"), pattern.split("/")
        return len(parts) == len(wanted) and all(map(fnmatch.fnmatch, parts, wanted))

    missing = [f for f in files if not any(covers(pattern, f) for pattern in patterns)]
    assert not missing, f"add these to [tool.setuptools.package-data] server: {missing}"
