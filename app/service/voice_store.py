"""Saved voices in SQLite under the data directory: codes and metadata, not the upload.

Each write is one transaction, so a voice is either fully stored or absent, also
across a crash (SQLite's journal). Names are unique case-insensitively, enforced by
the database itself so concurrent creations cannot both win. The file is created
on the first write: a gateway that never saves a voice leaves no file behind.

Calls are synchronous and short (an indexed lookup or one insert); the API runs
writes and listings in a worker thread.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from app.errors import InvalidRequest
from app.service.cloning import VoiceReference
from app.vocab import TOKENS_PER_FRAME

ID_PREFIX: Final = "voice_"
_SCHEMA_VERSION: Final = 1
_SCHEMA: Final = """
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
_COLUMNS: Final = "id, name, description, reference_text, frames, created_at"


class VoiceNameTaken(InvalidRequest):
    status_code = 409
    default_code = "voice_name_taken"


@dataclass(frozen=True)
class SavedVoice:
    id: str
    name: str
    description: str
    reference_text: str
    frames: int
    created_at: float

    @property
    def audio_tokens(self) -> int:
        return self.frames * TOKENS_PER_FRAME


class VoiceStore:
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
        with _transaction(conn):
            conn.execute(_SCHEMA)
            conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        return conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def create(self, name: str, reference: VoiceReference, description: str = "") -> SavedVoice:
        """Store a voice; `VoiceNameTaken` (409) when the name exists in any case."""
        frames = np.asarray(reference.frames, dtype=np.int64)
        if frames.ndim != 2 or frames.shape[1] != TOKENS_PER_FRAME or not len(frames):
            raise ValueError(f"reference frames must have shape (n >= 1, 7), got {frames.shape}")
        voice = SavedVoice(
            id=ID_PREFIX + secrets.token_hex(8),
            name=name,
            description=description,
            reference_text=reference.text,
            frames=len(frames),
            created_at=time.time(),
        )
        codes = frames.astype("<u2").tobytes()
        with self._db(create=True) as conn:
            assert conn is not None
            try:
                with _transaction(conn):
                    conn.execute(
                        f"INSERT INTO voices ({_COLUMNS}, codes) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            voice.id,
                            voice.name,
                            voice.description,
                            voice.reference_text,
                            voice.frames,
                            voice.created_at,
                            codes,
                        ),
                    )
            except sqlite3.IntegrityError as exc:
                raise VoiceNameTaken(
                    f"A saved voice named {name!r} already exists.", param="name"
                ) from exc
        return voice

    def list(self) -> list[SavedVoice]:
        with self._db(create=False) as conn:
            if conn is None:
                return []
            rows = conn.execute(f"SELECT {_COLUMNS} FROM voices ORDER BY created_at, id")
            return [SavedVoice(*row) for row in rows.fetchall()]

    def get(self, voice_id: str) -> SavedVoice | None:
        return self._one("id = ?", voice_id)

    def find(self, key: str) -> SavedVoice | None:
        """The voice with id `key`, else the voice named `key` (case-insensitive)."""
        return self._one("id = ?", key) or self._one("name = ?", key.strip())

    def reference(self, voice: SavedVoice) -> VoiceReference:
        """The stored frames of `voice`; `LookupError` if it was deleted meanwhile."""
        with self._db(create=False) as conn:
            row = None
            if conn is not None:
                row = conn.execute(
                    "SELECT codes, frames FROM voices WHERE id = ?", (voice.id,)
                ).fetchone()
        if row is None:
            raise LookupError(voice.id)
        codes, frames = row
        array = np.frombuffer(codes, dtype="<u2").astype(np.int64)
        return VoiceReference(
            text=voice.reference_text, frames=array.reshape(frames, TOKENS_PER_FRAME)
        )

    def delete(self, voice_id: str) -> bool:
        with self._db(create=False) as conn:
            if conn is None:
                return False
            with _transaction(conn):
                cursor = conn.execute("DELETE FROM voices WHERE id = ?", (voice_id,))
            return cursor.rowcount > 0

    def _one(self, where: str, value: str) -> SavedVoice | None:
        with self._db(create=False) as conn:
            if conn is None:
                return None
            row = conn.execute(f"SELECT {_COLUMNS} FROM voices WHERE {where}", (value,)).fetchone()
        return SavedVoice(*row) if row is not None else None


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    # Autocommit mode plus explicit BEGIN IMMEDIATE: the write lock is taken up front,
    # and a failure anywhere rolls the whole write back.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
