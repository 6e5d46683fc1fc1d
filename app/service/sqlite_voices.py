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
from typing import Any, Final

from app.service.voice_store import (
    NewVoice,
    SavedVoice,
    VoiceStore,
    insert_sql,
    name_key,
    name_taken,
    quota_exceeded,
    rekeyed,
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
# Version 4: owners, shared voices and names unique per namespace. The name column's
# own UNIQUE of version 1 cannot be dropped in SQLite: the table is rebuilt.
_V4: Final = (
    """
    CREATE TABLE voices_v4 (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        name_key TEXT NOT NULL,
        namespace TEXT NOT NULL DEFAULT '',
        owner TEXT,
        shared INTEGER NOT NULL DEFAULT 1,
        description TEXT NOT NULL DEFAULT '',
        reference_text TEXT NOT NULL,
        frames INTEGER NOT NULL,
        codes BLOB NOT NULL,
        created_at REAL NOT NULL,
        consent TEXT NOT NULL DEFAULT ''
    )
    """,
    "INSERT INTO voices_v4 (id, name, name_key, description, reference_text, frames, codes, "
    "created_at, consent) SELECT id, name, name_key, description, reference_text, frames, "
    "codes, created_at, consent FROM voices",
    "DROP TABLE voices",
    "ALTER TABLE voices_v4 RENAME TO voices",
)
_V4_INDEXES: Final = (
    "CREATE UNIQUE INDEX voices_namespace_name ON voices (namespace, name_key)",
    "CREATE INDEX voices_created ON voices (created_at, id)",
    "CREATE INDEX voices_owner ON voices (owner)",
)
SCHEMA_VERSION: Final = 4


class SqliteVoiceStore(VoiceStore):
    placeholder = "?"
    everyone_sees = "1"
    owner_sees = "(shared = 1 OR owner = ?)"
    no_limit = -1

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

    def count(self, owner: str | None) -> int:
        with self._db(create=False) as conn:
            return 0 if conn is None else _count(conn, owner)

    def delete(self, voice_id: str) -> bool:
        with self._db(create=False) as conn:
            if conn is None:
                return False
            with transaction(conn):
                cursor = conn.execute("DELETE FROM voices WHERE id = ?", (voice_id,))
            return cursor.rowcount > 0

    def _insert(self, new: NewVoice, quota: int | None) -> None:
        with self._db(create=True) as conn:
            assert conn is not None
            try:
                # The count and the insert in one write transaction: concurrent saves of
                # one key cannot both slip under its quota.
                with transaction(conn):
                    if quota is not None and _count(conn, new.voice.owner) >= quota:
                        raise quota_exceeded(quota)
                    conn.execute(insert_sql("?"), new.row())
            except sqlite3.IntegrityError as exc:
                raise name_taken(new.voice.name) from exc

    def _select(self, sql: str, values: tuple[object, ...]) -> builtins.list[tuple[Any, ...]]:
        with self._db(create=False) as conn:
            return [] if conn is None else conn.execute(sql, values).fetchall()

    def _after(self, voice: SavedVoice) -> tuple[str, tuple[object, ...]]:
        where = "(created_at > ? OR (created_at = ? AND id > ?))"
        return where, (voice.created_at, voice.created_at, voice.id)


def _count(conn: sqlite3.Connection, owner: str | None) -> int:
    count: int = conn.execute("SELECT count(*) FROM voices WHERE owner IS ?", (owner,)).fetchone()[
        0
    ]
    return count


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
        if version < 4:
            _add_owners(conn)
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


def _add_owners(conn: sqlite3.Connection) -> None:
    # Voices saved before owners existed become shared (everyone could use them);
    # names are folded anew (compatibility caseless matching, docs/voices.md).
    for statement in _V4:
        conn.execute(statement)
    rows = conn.execute("SELECT id, name, namespace FROM voices ORDER BY created_at, id")
    for key, voice_id in rekeyed(rows.fetchall()):
        conn.execute("UPDATE voices SET name_key = ? WHERE id = ?", (key, voice_id))
    for statement in _V4_INDEXES:
        conn.execute(statement)


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
