"""API keys: one from the environment or several named ones from a file, compared in
constant time."""

from __future__ import annotations

import hmac
from pathlib import Path

from tunelab.errors import ConfigError

MIN_KEY_CHARS = 8


class ApiKeys:
    """Named keys. A request is authenticated by ``Authorization: Bearer KEY``; the key's name
    says who sent it (so later routes can tell callers apart without seeing their keys)."""

    def __init__(self, keys: dict[str, str] | None = None) -> None:
        self.keys = dict(keys or {})

    def __bool__(self) -> bool:
        return bool(self.keys)

    def names(self) -> list[str]:
        return sorted(self.keys)

    def match(self, authorization: str | None) -> str | None:
        """The name of the key this ``Authorization`` header carries, or None."""
        if not authorization:
            return None
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        given_bytes = given.strip().encode("utf-8", "replace")
        found = None
        for name, key in self.keys.items():  # every key is compared, so timing says nothing about which
            if hmac.compare_digest(given_bytes, key.encode("utf-8")):
                found = name
        return found

    @classmethod
    def load(cls, key: str | None = None, keys_file: str | Path | None = None) -> "ApiKeys":
        """Keys from ``keys_file`` (``name:key`` per line) plus ``key`` (named ``default``)."""
        keys = read_keys_file(keys_file) if keys_file else {}
        if key:
            if "default" in keys:
                raise ConfigError(f"{keys_file}: names a key 'default', which is also the name of the key given "
                                  "by TUNELAB_API_KEY / --api-key; rename it")
            _check_key(key, "TUNELAB_API_KEY / --api-key")
            keys["default"] = key
        return cls(keys)


def read_keys_file(path: str | Path) -> dict[str, str]:
    """``name:key`` per line; blank lines and lines starting with ``#`` are skipped."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the API keys file ({exc})") from None
    keys: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, key = (part.strip() for part in line.partition(":"))
        where = f"{path}:{number}"
        if not sep or not name or not key:
            raise ConfigError(f"{where}: expected 'name:key'")
        if name in keys:
            raise ConfigError(f"{where}: the name '{name}' is used twice")
        _check_key(key, where)
        keys[name] = key
    if not keys:
        raise ConfigError(f"{path}: holds no keys (one 'name:key' per line)")
    return keys


def _check_key(key: str, where: str) -> None:
    if len(key) < MIN_KEY_CHARS or any(c.isspace() for c in key):
        raise ConfigError(f"{where}: an API key needs at least {MIN_KEY_CHARS} characters and no spaces")
