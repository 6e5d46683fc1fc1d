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
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import psycopg
import psycopg_pool

from app.service.cloning import VoiceReference
from app.service.voice_store import (
    COLUMNS,
    SavedVoice,
    VoiceStoreUnavailable,
    describe_url,
    name_key,
    name_taken,
    new_voice,
    unpack_reference,
)

_MIGRATIONS: Final = (
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
)
SCHEMA_VERSION: Final = len(_MIGRATIONS)
_MIGRATION_LOCK: Final = 0x766F696365  # "voice": any constant the replicas agree on
_WAIT_SECONDS: Final = 5.0


class PostgresVoiceStore:
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
                conn.execute(step)
            if row is None:
                conn.execute("INSERT INTO voice_store_schema VALUES (%s)", (SCHEMA_VERSION,))
            else:
                conn.execute("UPDATE voice_store_schema SET version = %s", (SCHEMA_VERSION,))

    def close(self) -> None:
        with self._opening:
            self._pool.close()
            self._opened = False

    def create(self, name: str, reference: VoiceReference, description: str = "") -> SavedVoice:
        new = new_voice(name, reference, description)
        try:
            with self._tx() as conn:
                conn.execute(
                    f"INSERT INTO voices ({COLUMNS}, name_key, codes) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    new.row(),
                )
        except psycopg.errors.UniqueViolation as exc:
            raise name_taken(name) from exc
        return new.voice

    def get(self, voice_id: str) -> SavedVoice | None:
        return self._one("id = %s", voice_id)

    def find(self, key: str) -> SavedVoice | None:
        return self._one("id = %s", key) or self._one("name_key = %s", name_key(key))

    def reference(self, voice: SavedVoice) -> VoiceReference:
        with self._tx() as conn:
            row = conn.execute(
                "SELECT codes, frames FROM voices WHERE id = %s", (voice.id,)
            ).fetchone()
        if row is None:
            raise LookupError(voice.id)
        return unpack_reference(voice, bytes(row[0]), row[1])

    def delete(self, voice_id: str) -> bool:
        with self._tx() as conn:
            cursor = conn.execute("DELETE FROM voices WHERE id = %s", (voice_id,))
            return cursor.rowcount > 0

    def list(self) -> builtins.list[SavedVoice]:
        with self._tx() as conn:
            rows = conn.execute(f"SELECT {COLUMNS} FROM voices ORDER BY created_at, id")
            return [SavedVoice(*row) for row in rows.fetchall()]

    def _one(self, where: str, value: str) -> SavedVoice | None:
        with self._tx() as conn:
            row = conn.execute(f"SELECT {COLUMNS} FROM voices WHERE {where}", (value,)).fetchone()
        return SavedVoice(*row) if row is not None else None
