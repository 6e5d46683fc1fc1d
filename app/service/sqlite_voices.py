"""Saved voices in one SQLite file (`DATA_DIR/voices.sqlite3` by default): one host.

The file is created on the first write, so a gateway that never saves a voice
leaves nothing behind; `migrate()` upgrades an existing file at start-up. Writes
take SQLite's write lock up front (BEGIN IMMEDIATE), so worker processes sharing
the file serialize, and the unique index decides which of two equal names wins.
"""

from __future__ import annotations

import builtins
import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from app.service.cloning import VoiceReference
from app.service.voice_store import (
    COLUMNS,
    SavedVoice,
    insert_sql,
    name_key,
    name_taken,
    new_voice,
    unpack_reference,
)

log = logging.getLogger(__name__)

_V1: Final = """
CREATE TABLE IF NOT EXISTS voices (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    description TEXT NOT NULL DEFAULT '',
    reference_text TEXT NOT NULL,
    frames INTEGER NOT NULL,
    codes BLOB NOT NULL,
    created_at REAL NOT NULL
)
"""
_ADD_CONSENT: Final = "ALTER TABLE voices ADD COLUMN consent TEXT NOT NULL DEFAULT ''"
SCHEMA_VERSION: Final = 3


class SqliteVoiceStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    @contextmanager
    def _db(self, *, create: bool) -> Iterator[sqlite3.Connection | None]:
        """The connection (opened once, shared under a lock), or None when the
        database does not exist yet and `create` is false."""
        with self._lock:
            if self._conn is None:
                if not create and not self.path.exists():
                    yield None
                    return
                self._conn = self._open()
            yield self._conn

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        _migrate(conn, self.path)
        return conn

    def migrate(self) -> None:
        # Opening migrates; a file that does not exist yet is created current.
        with self._db(create=False):
            pass

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def create(
        self, name: str, reference: VoiceReference, description: str = "", consent: str = ""
    ) -> SavedVoice:
        new = new_voice(name, reference, description, consent)
        with self._db(create=True) as conn:
            assert conn is not None
            try:
                with transaction(conn):
                    conn.execute(insert_sql("?"), new.row())
            except sqlite3.IntegrityError as exc:
                raise name_taken(name) from exc
        return new.voice

    def get(self, voice_id: str) -> SavedVoice | None:
        return self._one("id = ?", voice_id)

    def find(self, key: str) -> SavedVoice | None:
        return self._one("id = ?", key) or self._one("name_key = ?", name_key(key))

    def reference(self, voice: SavedVoice) -> VoiceReference:
        with self._db(create=False) as conn:
            row = None
            if conn is not None:
                row = conn.execute(
                    "SELECT codes, frames FROM voices WHERE id = ?", (voice.id,)
                ).fetchone()
        if row is None:
            raise LookupError(voice.id)
        return unpack_reference(voice, row[0], row[1])

    def delete(self, voice_id: str) -> bool:
        with self._db(create=False) as conn:
            if conn is None:
                return False
            with transaction(conn):
                cursor = conn.execute("DELETE FROM voices WHERE id = ?", (voice_id,))
            return cursor.rowcount > 0

    def list(self) -> builtins.list[SavedVoice]:
        with self._db(create=False) as conn:
            if conn is None:
                return []
            rows = conn.execute(f"SELECT {COLUMNS} FROM voices ORDER BY created_at, id")
            return [SavedVoice(*row) for row in rows.fetchall()]

    def _one(self, where: str, value: str) -> SavedVoice | None:
        with self._db(create=False) as conn:
            if conn is None:
                return None
            row = conn.execute(f"SELECT {COLUMNS} FROM voices WHERE {where}", (value,)).fetchone()
        return SavedVoice(*row) if row is not None else None


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the file to `SCHEMA_VERSION` (PRAGMA user_version), one transaction."""
    with transaction(conn):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{path} has voice store schema {version}, newer than this gateway's "
                f"{SCHEMA_VERSION}: upgrade the gateway"
            )
        if version < 1:
            conn.execute(_V1)
        if version < 2:
            _add_name_keys(conn)
        if version < 3:
            conn.execute(_ADD_CONSENT)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def _add_name_keys(conn: sqlite3.Connection) -> None:
    # Version 1 compared names with SQLite's NOCASE, which folds ASCII only; the key
    # folds all of Unicode, as PostgreSQL does. Two old names that only now collide
    # (`é` and `É`) both stay reachable by id; the older one keeps the name.
    conn.execute("ALTER TABLE voices ADD COLUMN name_key TEXT")
    seen: set[str] = set()
    rows = conn.execute("SELECT id, name FROM voices ORDER BY created_at, id").fetchall()
    for voice_id, name in rows:
        key = name_key(name)
        if key in seen:
            log.warning("saved voice %s: name %r now clashes; find it by id", voice_id, name)
            key = f"{key}\x00{voice_id}"
        seen.add(key)
        conn.execute("UPDATE voices SET name_key = ? WHERE id = ?", (key, voice_id))
    conn.execute("CREATE UNIQUE INDEX voices_name_key ON voices (name_key)")


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    # Autocommit mode plus explicit BEGIN IMMEDIATE: the write lock is taken up front,
    # and a failure anywhere rolls the whole write back.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
