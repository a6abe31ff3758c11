"""Print pip constraints that pin every runtime dependency of pyproject.toml to its declared floor.

``.ci/lowest`` installs the package with these constraints and runs the unit tests, so that each
``>=`` floor in pyproject.toml is a version that was installed and tested together with the other
floors. Every runtime requirement must have a floor; torch is the one exception, pinned to the
CPU build instead (any other torch release means gigabytes of CUDA wheels on this machine).

Usage (Python 3.11+, for tomllib): ``python .ci/lowest_pins.py [pyproject.toml] > constraints.txt``
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

RUNTIME_EXTRAS = ("local", "langchain", "llamaindex", "cli")
"""The extras a user installs (``dev`` is the project's own tooling and is not pinned)."""

TORCH_PIN = "torch==2.13.0"
"""Not the declared floor: the only torch that installs here without CUDA wheels (see .ci/install)."""

REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*(?P<spec>[^;]*)(?P<marker>;.*)?$")


def floors(pyproject: dict) -> list[str]:
    """``name==floor`` for each runtime requirement; raises ``SystemExit`` for one without a floor."""
    project = pyproject["project"]
    requirements = list(project["dependencies"])
    for extra in RUNTIME_EXTRAS:
        requirements += project["optional-dependencies"].get(extra, [])
    pins: dict[str, str] = {}
    for requirement in requirements:
        match = REQUIREMENT.match(requirement.strip())
        if match is None:
            raise SystemExit(f"cannot read the requirement {requirement!r}")
        name = match["name"].lower().replace("_", "-")
        if name == project["name"]:
            continue  # an extra that includes other extras
        if name == "torch":
            pins[name] = TORCH_PIN
            continue
        floor = re.search(r">=\s*([^,\s]+)", match["spec"])
        if floor is None:
            raise SystemExit(f"{requirement!r} has no '>=' floor: declare the lowest version that works")
        # An environment marker stays on the pin: a floor for Python 3.10 only must not bind 3.11.
        pins[name] = f"{name}=={floor[1]}{match['marker'] or ''}"
    return sorted(pins.values())


def main() -> None:
    """Print the constraints for the pyproject.toml given (default: the one next to .ci/)."""
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "pyproject.toml"
    print("\n".join(floors(tomllib.loads(path.read_text(encoding="utf-8")))))


if __name__ == "__main__":
    main()
