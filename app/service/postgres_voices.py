"""Saved voices in PostgreSQL (`VOICE_STORE_URL=postgresql://...`): shared by every replica.

A small connection pool (psycopg 3) serves the worker threads the API runs store
calls in. Each call is one transaction; the unique index on the case-folded name
decides which of two concurrent saves of one name wins, whichever replicas they
come from. `migrate()` runs at start-up under an advisory lock, so replicas
starting together apply each schema step once.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

import psycopg
import psycopg_pool

from app.service.voice_store import (
    NewVoice,
    SavedVoice,
    VoiceStore,
    VoiceStoreUnavailable,
    describe_url,
    insert_sql,
    name_taken,
    quota_exceeded,
    rekeyed,
)

Connection = psycopg.Connection[Any]


def _add_owners(conn: Connection) -> None:
    # Voices saved before owners existed become shared (everyone could use them);
    # names are unique per namespace and folded anew (docs/voices.md).
    conn.execute(
        "ALTER TABLE voices ADD COLUMN owner TEXT, "
        "ADD COLUMN shared BOOLEAN NOT NULL DEFAULT TRUE, "
        "ADD COLUMN namespace TEXT NOT NULL DEFAULT ''"
    )
    conn.execute("DROP INDEX voices_name_key")
    rows = conn.execute("SELECT id, name, namespace FROM voices ORDER BY created_at, id")
    for key, voice_id in rekeyed(rows.fetchall()):
        conn.execute("UPDATE voices SET name_key = %s WHERE id = %s", (key, voice_id))
    conn.execute("CREATE UNIQUE INDEX voices_namespace_name ON voices (namespace, name_key)")
    conn.execute("CREATE INDEX voices_owner ON voices (owner)")


_MIGRATIONS: Final[tuple[str | Callable[[Connection], None], ...]] = (
    """
    CREATE TABLE voices (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        name_key TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        reference_text TEXT NOT NULL,
        frames INTEGER NOT NULL CHECK (frames > 0),
        codes BYTEA NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE UNIQUE INDEX voices_name_key ON voices (name_key);
    CREATE INDEX voices_created ON voices (created_at, id);
    """,
    "ALTER TABLE voices ADD COLUMN consent TEXT NOT NULL DEFAULT ''",
    _add_owners,
)
SCHEMA_VERSION: Final = len(_MIGRATIONS)
_MIGRATION_LOCK: Final = 0x766F696365  # "voice": any constant the replicas agree on
_QUOTA_LOCKS: Final = 0x766F  # the class of the per-owner locks of quota checks
_WAIT_SECONDS: Final = 5.0


class PostgresVoiceStore(VoiceStore):
    placeholder = "%s"
    everyone_sees = "TRUE"
    owner_sees = "(shared OR owner = %s)"
    no_limit = None  # LIMIT NULL

    def __init__(self, url: str, *, max_connections: int = 8) -> None:
        self.url = url
        self._pool = psycopg_pool.ConnectionPool(
            url,
            min_size=1,
            max_size=max_connections,
            open=False,
            # A connection that died with a server restart is replaced, not handed out.
            check=psycopg_pool.ConnectionPool.check_connection,
            timeout=_WAIT_SECONDS,
            kwargs={"connect_timeout": int(_WAIT_SECONDS)},
        )
        self._opened = False
        self._opening = threading.Lock()

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection inside one transaction (committed unless it raises)."""
        if not self._opened:
            self._open()
        try:
            with self._pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            raise VoiceStoreUnavailable(
                "The voice store is unreachable; retry shortly.",
                headers={"Retry-After": "1"},
                detail=f"{describe_url(self.url)}: {exc}",
            ) from exc

    def _open(self) -> None:
        with self._opening:
            if self._opened:
                return
            try:
                self._pool.open(wait=True, timeout=_WAIT_SECONDS)
            except psycopg_pool.PoolTimeout as exc:
                raise VoiceStoreUnavailable(
                    "The voice store is unreachable; retry shortly.",
                    headers={"Retry-After": "1"},
                    detail=f"VOICE_STORE_URL: cannot connect to {describe_url(self.url)} "
                    f"within {_WAIT_SECONDS:g} s",
                ) from exc
            self._opened = True

    def migrate(self) -> None:
        with self._tx() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS voice_store_schema (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM voice_store_schema").fetchone()
            version = row[0] if row is not None else 0
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{describe_url(self.url)} has voice store schema {version}, newer than "
                    f"this gateway's {SCHEMA_VERSION}: upgrade the gateway"
                )
            for step in _MIGRATIONS[version:]:
                if isinstance(step, str):
                    conn.execute(step)
                else:
                    step(conn)
            if row is None:
                conn.execute("INSERT INTO voice_store_schema VALUES (%s)", (SCHEMA_VERSION,))
            else:
                conn.execute("UPDATE voice_store_schema SET version = %s", (SCHEMA_VERSION,))

    def close(self) -> None:
        with self._opening:
            self._pool.close()
            self._opened = False

    def count(self, owner: str | None) -> int:
        with self._tx() as conn:
            return _count(conn, owner)

    def delete(self, voice_id: str) -> bool:
        with self._tx() as conn:
            cursor = conn.execute("DELETE FROM voices WHERE id = %s", (voice_id,))
            return cursor.rowcount > 0

    def _insert(self, new: NewVoice, quota: int | None) -> None:
        try:
            with self._tx() as conn:
                if quota is not None:
                    # Saves of one owner queue here, whichever replica they come from,
                    # so two cannot both slip under the quota.
                    conn.execute(
                        "SELECT pg_advisory_xact_lock(%s, hashtext(coalesce(%s, '')))",
                        (_QUOTA_LOCKS, new.voice.owner),
                    )
                    if _count(conn, new.voice.owner) >= quota:
                        raise quota_exceeded(quota)
                conn.execute(insert_sql("%s"), new.row())
        except psycopg.errors.UniqueViolation as exc:
            raise name_taken(new.voice.name) from exc

    def _select(self, sql: str, values: tuple[object, ...]) -> builtins.list[tuple[Any, ...]]:
        with self._tx() as conn:
            return conn.execute(sql, values).fetchall()

    def _after(self, voice: SavedVoice) -> tuple[str, tuple[object, ...]]:
        return "(created_at, id) > (%s, %s)", (voice.created_at, voice.id)


def _count(conn: Connection, owner: str | None) -> int:
    row = conn.execute(
        "SELECT count(*) FROM voices WHERE owner IS NOT DISTINCT FROM %s", (owner,)
    ).fetchone()
    return int(row[0]) if row is not None else 0
