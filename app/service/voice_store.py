"""Saved voices: what a store keeps, the interface every store implements, and the choice.

A voice is its SNAC codes and metadata, not the upload. Two stores implement the
same semantics: SQLite under `DATA_DIR` (one host; the default) and PostgreSQL
(`VOICE_STORE_URL=postgresql://...`, shared by every replica). Both enforce name
uniqueness in the database on a case-folded key, so two writers saving one name
at once cannot both win: the loser gets `VoiceNameTaken` (409). Each write is one
transaction. Both bring their schema up to date in `migrate()` at start-up.

Calls are synchronous and short (an indexed lookup or one insert); the API runs
them in a worker thread.
"""

from __future__ import annotations

import builtins
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol
from urllib.parse import urlsplit

import numpy as np

from app.errors import GatewayError, InvalidRequest
from app.service.cloning import VoiceReference
from app.vocab import TOKENS_PER_FRAME

ID_PREFIX: Final = "voice_"
SQLITE_FILE: Final = "voices.sqlite3"
COLUMNS: Final = "id, name, description, reference_text, frames, created_at, consent"
"""The columns of a `SavedVoice`, in its field order."""


class VoiceNameTaken(InvalidRequest):
    status_code = 409
    default_code = "voice_name_taken"
    retryable = False  # SDKs retry 409 (a lock timeout elsewhere); a taken name stays taken


class VoiceStoreUnavailable(GatewayError):
    """The shared database cannot be reached; the request may be retried."""

    status_code = 503
    default_code = "voice_store_unavailable"


@dataclass(frozen=True)
class SavedVoice:
    id: str
    name: str
    description: str
    reference_text: str
    frames: int
    created_at: float
    consent: str = ""
    """The consent the uploader gave (OpenAI's `consent`, a recording id), as given."""

    @property
    def audio_tokens(self) -> int:
        return self.frames * TOKENS_PER_FRAME


class VoiceStore(Protocol):
    def migrate(self) -> None:
        """Create or upgrade the schema (idempotent; safe from several replicas at once)."""
        ...

    def create(
        self, name: str, reference: VoiceReference, description: str = "", consent: str = ""
    ) -> SavedVoice:
        """Store a voice; `VoiceNameTaken` (409) when the name exists in any case."""
        ...

    def get(self, voice_id: str) -> SavedVoice | None: ...

    def find(self, key: str) -> SavedVoice | None:
        """The voice with id `key`, else the voice named `key` (case-insensitive)."""
        ...

    def reference(self, voice: SavedVoice) -> VoiceReference:
        """The stored frames of `voice`; `LookupError` if it was deleted meanwhile."""
        ...

    def delete(self, voice_id: str) -> bool: ...

    def close(self) -> None: ...

    def list(self) -> builtins.list[SavedVoice]: ...


def name_key(name: str) -> str:
    """What uniqueness and lookups compare: Unicode case folding, so `Émile` = `ÉMILE`."""
    return name.strip().casefold()


@dataclass(frozen=True)
class NewVoice:
    """A voice ready to insert: its metadata, uniqueness key and packed codes."""

    voice: SavedVoice
    key: str
    codes: bytes

    def row(self) -> tuple[str, str, str, str, int, float, str, str, bytes]:
        """Values for `INSERT ... ({COLUMNS}, name_key, codes)`."""
        v = self.voice
        return (
            *(v.id, v.name, v.description, v.reference_text, v.frames, v.created_at, v.consent),
            *(self.key, self.codes),
        )


def insert_sql(placeholder: str) -> str:
    """The INSERT of a `NewVoice.row()`, with the driver's placeholder (`?`, `%s`)."""
    values = ", ".join([placeholder] * (len(COLUMNS.split(",")) + 2))
    return f"INSERT INTO voices ({COLUMNS}, name_key, codes) VALUES ({values})"


def new_voice(
    name: str, reference: VoiceReference, description: str, consent: str = ""
) -> NewVoice:
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
        consent=consent,
    )
    # SNAC codes are < 4096: two bytes each, little-endian whatever the host.
    return NewVoice(voice, name_key(name), frames.astype("<u2").tobytes())


def unpack_reference(voice: SavedVoice, codes: bytes, frames: int) -> VoiceReference:
    array = np.frombuffer(codes, dtype="<u2").astype(np.int64)
    return VoiceReference(text=voice.reference_text, frames=array.reshape(frames, TOKENS_PER_FRAME))


def name_taken(name: str) -> VoiceNameTaken:
    return VoiceNameTaken(f"A saved voice named {name!r} already exists.", param="name")


def describe_url(url: str) -> str:
    """The store's URL without credentials, for logs and errors."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def sqlite_path(url: str | None, data_dir: Path) -> Path | None:
    """The SQLite file a URL names (`sqlite:///relative`, `sqlite:////absolute`); the
    default under `data_dir` when unset; None for a non-SQLite URL."""
    if not url:
        return data_dir / SQLITE_FILE
    if not url.startswith("sqlite://"):
        return None
    path = url.removeprefix("sqlite://")
    if not path.startswith("/") or path == "/":
        raise ValueError(f"VOICE_STORE_URL {url!r}: expected sqlite:///relative/or/absolute/path")
    return Path(path[1:])


def open_voice_store(url: str | None, data_dir: Path) -> VoiceStore:
    """The store `VOICE_STORE_URL` names; nothing is connected or written yet."""
    path = sqlite_path(url, data_dir)
    if path is not None:
        from app.service.sqlite_voices import SqliteVoiceStore

        return SqliteVoiceStore(path)
    assert url is not None
    if url.startswith(("postgresql://", "postgres://")):
        from app.service.postgres_voices import PostgresVoiceStore

        return PostgresVoiceStore(url)
    raise ValueError(f"VOICE_STORE_URL {describe_url(url)!r}: use sqlite:/// or postgresql://")
