"""Optional packages (the 'train' and 'cluster' extras): whether each one imports, and the one line that says
what to install when one does not. A package that is installed but broken (an import that raises OSError on a
missing shared library, say) is told apart from one that is not installed."""

from __future__ import annotations

import importlib

from .errors import ConfigError, first_line


def import_problem(package: str) -> str | None:
    """None when PACKAGE imports; else why not, in a few words."""
    try:
        importlib.import_module(package)
    except ModuleNotFoundError as exc:
        if not exc.name or exc.name.split(".")[0] == package.split(".")[0]:
            return "not installed"
        return f"installed but does not import ({type(exc).__name__}: {first_line(exc)})"
    except Exception as exc:  # noqa: BLE001 - whatever a broken install raises on import
        return f"installed but does not import ({type(exc).__name__}: {first_line(exc)})"
    return None


def missing(packages: tuple[str, ...] | list[str]) -> list[str]:
    """The PACKAGES that do not import."""
    return [p for p in packages if import_problem(p)]


def require(packages: tuple[str, ...] | list[str], purpose: str, extra: str) -> None:
    """ConfigError (exit 2) naming the first package of PACKAGES that does not import, and how to mend it."""
    for package in packages:
        problem = import_problem(package)
        if problem == "not installed":
            absent = [p for p in packages if import_problem(p) == "not installed"]
            raise ConfigError(f"{purpose} needs {', '.join(absent)}: pip install 'rat-monitor[{extra}]'")
        if problem:
            raise ConfigError(f"{purpose} needs {package}, which is {problem}: reinstall it "
                              f"(pip install --force-reinstall 'rat-monitor[{extra}]')")
