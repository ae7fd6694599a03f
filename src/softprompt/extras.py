"""Optional dependencies: which extra brings what, checked before any slow work.

`pip install softprompt` brings training, evaluation and the command line;
serving, the studio, the comparison and plots need more (pyproject.toml's
`[project.optional-dependencies]`, kept equal to EXTRAS by a test). A command
calls `require(...)` first thing, so a missing package costs one line naming
the extra to install, not a traceback after the model has loaded.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from types import MappingProxyType

from .errors import MissingExtraError

# extra -> {import name: pip name}
EXTRAS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "serve": {"fastapi": "fastapi", "uvicorn": "uvicorn", "prometheus_client": "prometheus-client"},
        "studio": {"fastapi": "fastapi", "uvicorn": "uvicorn", "prometheus_client": "prometheus-client"},
        "compare": {"peft": "peft", "matplotlib": "matplotlib"},
        "plots": {"matplotlib": "matplotlib"},
        "parquet": {"pyarrow": "pyarrow"},
    }
)


def missing(extra: str, modules: tuple[str, ...] | None = None) -> list[str]:
    """The pip names of `extra`'s packages (or only of `modules`) that are not installed."""
    wanted = EXTRAS[extra]
    return [wanted[m] for m in (modules or tuple(wanted)) if importlib.util.find_spec(m) is None]


def require(extra: str, purpose: str, modules: tuple[str, ...] | None = None) -> None:
    """Raise MissingExtraError naming `pip install 'softprompt[extra]'` if any package is missing.

    find_spec looks the packages up without importing them (importing fastapi or
    matplotlib costs time the check should not).
    """
    absent = missing(extra, modules)
    if absent:
        raise MissingExtraError(
            f"{purpose} needs {', '.join(absent)}, which {'is' if len(absent) == 1 else 'are'} not installed: "
            f"pip install 'softprompt[{extra}]'"
        )
