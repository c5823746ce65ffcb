"""STIGMER_DATABASE_URL: which backend, where. Parsed once at start; a bad value is a ConfigError
naming the setting and the fix (the server exits 78), never a traceback."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from stigmer.errors import ConfigError

from .db import DB_FILE_NAME

__all__ = ["SETTING", "PostgresTarget", "SqliteTarget", "parse_database_url"]

SETTING = "STIGMER_DATABASE_URL / --database-url"
_EXAMPLES = "sqlite:///PATH/stigmer.db (the default, under the data dir) or postgresql://USER@HOST:PORT/DATABASE"


@dataclass(frozen=True)
class SqliteTarget:
    path: Path  # the database file


@dataclass(frozen=True)
class PostgresTarget:
    url: str  # as given (libpq understands it), password included


def parse_database_url(url: str | None, *, data_dir: Path) -> SqliteTarget | PostgresTarget:
    if url is None or not url.strip():
        return SqliteTarget(Path(data_dir) / DB_FILE_NAME)
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port  # parsed here: a bad port raises now, not inside the driver
    except ValueError as exc:
        raise ConfigError(f"{SETTING} is malformed ({exc}); use {_EXAMPLES}") from None
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        if parts.netloc or not parts.path or parts.path == "/":
            raise ConfigError(
                f"{SETTING}: a SQLite URL names a file, e.g. sqlite:////var/lib/stigmer/stigmer.db; got {text!r}"
            )
        return SqliteTarget(Path(parts.path))
    if scheme in ("postgresql", "postgres"):
        if not parts.hostname:
            raise ConfigError(f"{SETTING}: name the PostgreSQL host, e.g. postgresql://stigmer@127.0.0.1:5432/stigmer")
        if not parts.path.strip("/"):
            raise ConfigError(
                f"{SETTING}: name the database, e.g. postgresql://stigmer@{parts.hostname}:{port or 5432}/stigmer"
            )
        return PostgresTarget(text)
    shown = scheme or "(none)"
    raise ConfigError(f"{SETTING}: unknown scheme {shown!r}; use {_EXAMPLES}")
