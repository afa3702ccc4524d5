"""Connections to the annotation DB, every one bounded in time.

Without limits a database that stops answering holds whoever asked: a new connection waits for
the kernel's TCP timeouts (minutes), an established one up to ~15 min, a lock forever. Every
psycopg and ADBC connection of the project is opened here, with:

- `connect_timeout`: a host that refuses, or accepts and says nothing, fails in seconds;
- TCP keepalives and `tcp_user_timeout`: a peer that vanished (network partition, dead host)
  under an open connection is noticed within about half a minute, not the kernel's 15 min;
- `statement_timeout` and `lock_timeout` (server side), chosen per use by `Timeouts`: a few
  seconds for a sensor's probes, minutes for an extract, a bounded wait for the live lock.

A setting the DSN already names wins over these defaults. A connection that cannot be opened
raises `DatabaseUnreachable`, whose message names the host, port and database (never the
password) and the driver's first line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

DEFAULT_CONNECT_TIMEOUT_SECONDS = 10
# An idle connection is probed after 10 s, then every 5 s; 3 unanswered probes drop it
# (10 + 3 * 5 = 25 s). Data sent and not acknowledged for 30 s drops it too.
KEEPALIVES: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}


@dataclass(frozen=True)
class Timeouts:
    """How long one use of the database may wait: to connect, per statement, for a lock.

    Seconds; None leaves the server's default (no limit, unless the role or database sets one).
    """

    connect: float = DEFAULT_CONNECT_TIMEOUT_SECONDS
    statement: float | None = None
    lock: float | None = None


class DatabaseUnreachable(ConnectionError):
    """The annotation DB could not be reached; the message says where and why, in one line."""


class InvalidDsn(ValueError):
    """The DSN is not one PostgreSQL reads; the message says where it is set and the form
    expected, in one line, and never quotes the DSN (it may hold a password)."""


DSN_FORM = "postgresql://user@host:5432/db (or key=value pairs: host=... dbname=...)"


def check_dsn(dsn: str) -> None:
    """`InvalidDsn` unless `dsn` is a PostgreSQL URL or libpq key=value pairs."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    scheme, url, _ = dsn.partition("://")
    if url and scheme.lower() not in ("postgresql", "postgres"):
        why = f"a {scheme}:// URL"
    else:
        try:
            conninfo_to_dict(dsn)
            return
        except ProgrammingError:
            why = "not a postgresql:// URL nor key=value pairs"
    raise InvalidDsn(
        f"the annotation DB's DSN (--dsn or ANNOTATION_DB_DSN) is not PostgreSQL's: {why}; "
        f"expected {DSN_FORM}"
    )


def describe(dsn: str) -> str:
    """`host:port/dbname` of a DSN, for messages (no user, no password)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        given = conninfo_to_dict(dsn)
    except Exception:  # a malformed DSN is reported by the connect itself
        return "the annotation DB"
    host = str(given.get("host") or given.get("hostaddr") or "localhost")
    return f"{host}:{given.get('port') or 5432}/{given.get('dbname') or ''}"


def first_line(error: BaseException) -> str:
    """The first non-empty line of an error's message (drivers append hints and context)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def conninfo(dsn: str, timeouts: Timeouts | None = None) -> str:
    """`dsn` as a libpq conninfo string with the connect timeout, keepalives and the
    statement and lock timeouts of `timeouts` added (what the DSN sets itself is kept)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    check_dsn(dsn)
    timeouts = timeouts or Timeouts()
    given = conninfo_to_dict(dsn)
    extra: dict[str, Any] = {
        key: value
        for key, value in {
            # libpq takes whole seconds and treats anything below 2 as 2.
            "connect_timeout": max(2, round(timeouts.connect)),
            **KEEPALIVES,
        }.items()
        if key not in given
    }
    options = str(given.get("options") or "")
    limits = (("statement_timeout", timeouts.statement), ("lock_timeout", timeouts.lock))
    for name, seconds in limits:
        if seconds is not None and name not in options:
            options = f"{options} -c {name}={round(seconds * 1000)}".strip()
    if options:
        extra["options"] = options
    return make_conninfo(dsn, **extra)


def connect(
    dsn: str, *, timeouts: Timeouts | None = None, autocommit: bool = False
) -> psycopg.Connection[Any]:
    """A psycopg connection with `conninfo`'s limits; `DatabaseUnreachable` if none opens."""
    import psycopg

    try:
        return psycopg.connect(conninfo(dsn, timeouts), autocommit=autocommit)
    except psycopg.OperationalError as error:
        raise DatabaseUnreachable(
            f"annotation DB unreachable ({describe(dsn)}): {first_line(error)}"
        ) from error


def connect_arrow(dsn: str, *, timeouts: Timeouts | None = None) -> Any:
    """An ADBC (Arrow) connection with `conninfo`'s limits; `DatabaseUnreachable` if none
    opens."""
    import adbc_driver_manager
    import adbc_driver_postgresql.dbapi as adbc

    try:
        return adbc.connect(conninfo(dsn, timeouts))
    except adbc_driver_manager.Error as error:
        raise DatabaseUnreachable(
            f"annotation DB unreachable ({describe(dsn)}): {first_line(error)}"
        ) from error


__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_SECONDS",
    "DSN_FORM",
    "KEEPALIVES",
    "DatabaseUnreachable",
    "InvalidDsn",
    "Timeouts",
    "check_dsn",
    "connect",
    "connect_arrow",
    "conninfo",
    "describe",
    "first_line",
]
