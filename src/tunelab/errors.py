"""Errors meant for people: each says what went wrong, where, and what to do.

The CLI prints ``error: <message>`` and exits with ``exit_code`` (2 for bad input or usage),
never a traceback. The HTTP server maps the same kinds onto status codes.
"""

from __future__ import annotations


class TunelabError(Exception):
    """Base class for every error tunelab raises on purpose."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class DataError(TunelabError):
    """A data file is missing, unreadable or malformed."""


class ConfigError(TunelabError):
    """A config file, --set override or option is invalid."""


class ModelError(TunelabError):
    """A model cannot be found, downloaded or loaded."""


class RunError(TunelabError):
    """A run directory is not one, or lacks what the command needs (e.g. a checkpoint)."""


def one_of(kind: str, name: str, valid: list[str] | tuple[str, ...]) -> str:
    """'unknown method 'x' (valid: a, b, c)' — the message every registry uses."""
    return f"unknown {kind} '{name}' (valid: {', '.join(sorted(valid))})"


class MissingExtra(TunelabError):
    """An optional part of tunelab is used without the packages of its extra."""


def require_extra(extra: str, feature: str, *modules: str) -> None:
    """Raise MissingExtra naming the pip command when any of ``modules`` is not installed, so
    `pip install tunelab` without the extra fails in one line instead of an ImportError."""
    from importlib.util import find_spec

    missing = [m for m in modules if find_spec(m) is None]
    if missing:
        raise MissingExtra(f"{feature} needs {', '.join(missing)}, which is not installed",
                           hint=f"pip install 'tunelab[{extra}]'")
