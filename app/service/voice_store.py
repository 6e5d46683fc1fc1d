"""Saved voices: what a store keeps, the interface every store implements, and the choice.

A voice is its SNAC codes and metadata, not the upload. Two stores implement the
same semantics: SQLite under `DATA_DIR` (one host; the default) and PostgreSQL
(`VOICE_STORE_URL=postgresql://...`, shared by every replica). Both enforce name
uniqueness in the database on a folded key within a namespace (the owner's, or the
shared one), so two writers saving one name at once cannot both win: the loser gets
`VoiceNameTaken` (409). Each write is one transaction, a quota check included. Both
bring their schema up to date in `migrate()` at start-up.

A voice belongs to the API key that saved it (`owner`, the key's fingerprint, never
the key) and is seen only by it and by admin keys, unless it is `shared`. In an open
gateway (no API keys) there are no owners: every voice is shared (`VoiceAccess()`).

Calls are synchronous and short (an indexed lookup or one insert); the API runs
them in a worker thread.
"""

from __future__ import annotations

import builtins
import secrets
import time
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

import numpy as np

from app.errors import GatewayError, InvalidRequest
from app.service.cloning import VoiceReference
from app.vocab import TOKENS_PER_FRAME

ID_PREFIX: Final = "voice_"
SQLITE_FILE: Final = "voices.sqlite3"
COLUMNS: Final = "id, name, description, reference_text, frames, created_at, consent, owner, shared"
"""The columns of a `SavedVoice`, in its field order."""
SHARED: Final = ""
"""The namespace of shared voices' names (a private voice's is its owner)."""


class VoiceNameTaken(InvalidRequest):
    status_code = 409
    default_code = "voice_name_taken"
    retryable = False  # SDKs retry 409 (a lock timeout elsewhere); a taken name stays taken


class VoiceStoreUnavailable(GatewayError):
    """The shared database cannot be reached; the request may be retried."""

    status_code = 503
    default_code = "voice_store_unavailable"


class VoiceQuotaExceeded(GatewayError):
    status_code = 403
    error_type = "invalid_request_error"
    default_code = "voice_quota_exceeded"


@dataclass(frozen=True)
class VoiceAccess:
    """Who asks for saved voices."""

    owner: str | None = None
    """The caller's API key fingerprint; None in an open gateway (every voice shared)."""
    admin: bool = False
    """An `ADMIN_API_KEYS` key: sees and deletes every voice, may save shared ones."""

    @property
    def sees_all(self) -> bool:
        return self.owner is None or self.admin

    def namespaces(self) -> tuple[str, ...]:
        """Where a name is looked up, in order: the caller's own voices, then shared ones."""
        return (self.owner, SHARED) if self.owner is not None else (SHARED,)


OPEN: Final = VoiceAccess()
"""The open gateway's access (no API keys): every voice is shared."""


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
    owner: str | None = None
    shared: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "shared", bool(self.shared))  # SQLite stores 0/1

    @property
    def audio_tokens(self) -> int:
        return self.frames * TOKENS_PER_FRAME

    @property
    def namespace(self) -> str:
        return SHARED if self.shared or self.owner is None else self.owner

    def visible_to(self, access: VoiceAccess) -> bool:
        return access.sees_all or self.shared or self.owner == access.owner

    def deletable_by(self, access: VoiceAccess) -> bool:
        return access.sees_all or (self.owner is not None and self.owner == access.owner)


def name_key(name: str) -> str:
    """What uniqueness and lookups compare: Unicode compatibility caseless matching
    (Unicode D146), so `ÉMILE` = `émile` = `e` + U+0301 `mile`, `ΣΑΣ` = `σας`, `ﬁle` = `FILE`."""
    fold = unicodedata.normalize("NFD", name.strip()).casefold()
    fold = unicodedata.normalize("NFKD", fold).casefold()
    return unicodedata.normalize("NFKD", fold)


def rekeyed(rows: Iterable[tuple[str, str, str]]) -> builtins.list[tuple[str, str]]:
    """``(name_key, id)`` for rows ``(id, name, namespace)`` in creation order, for a
    migration that changes how names fold: a name that only now clashes with an older
    one in its namespace stays reachable by id; the older keeps the name."""
    seen: set[tuple[str, str]] = set()
    keys = []
    for voice_id, name, namespace in rows:
        key = name_key(name)
        if (namespace, key) in seen:
            key = f"{key}\x00{voice_id}"
        seen.add((namespace, key))
        keys.append((key, voice_id))
    return keys


@dataclass(frozen=True)
class NewVoice:
    """A voice ready to insert: its metadata, uniqueness key and packed codes."""

    voice: SavedVoice
    key: str
    codes: bytes

    def row(self) -> tuple[object, ...]:
        """Values for `insert_sql`: ``COLUMNS``, then name_key, namespace and codes."""
        v = self.voice
        return (
            *(v.id, v.name, v.description, v.reference_text, v.frames, v.created_at),
            *(v.consent, v.owner, v.shared, self.key, v.namespace, self.codes),
        )


def insert_sql(placeholder: str) -> str:
    """The INSERT of a `NewVoice.row()`, with the driver's placeholder (`?`, `%s`)."""
    values = ", ".join([placeholder] * (len(COLUMNS.split(",")) + 3))
    return f"INSERT INTO voices ({COLUMNS}, name_key, namespace, codes) VALUES ({values})"


def new_voice(
    name: str,
    reference: VoiceReference,
    description: str,
    consent: str = "",
    owner: str | None = None,
    shared: bool = True,
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
        owner=owner,
        shared=shared or owner is None,
    )
    # SNAC codes are < 4096: two bytes each, little-endian whatever the host.
    return NewVoice(voice, name_key(name), frames.astype("<u2").tobytes())


def unpack_reference(voice: SavedVoice, codes: bytes, frames: int) -> VoiceReference:
    array = np.frombuffer(codes, dtype="<u2").astype(np.int64)
    return VoiceReference(text=voice.reference_text, frames=array.reshape(frames, TOKENS_PER_FRAME))


class VoiceStore(ABC):
    """The interface every store implements, and the SQL both stores share: a store
    supplies its driver's dialect (placeholder, visibility, paging), its reads
    (`_select`) and its write transaction (`_insert`)."""

    placeholder: ClassVar[str]  # the driver's query parameter: `?`, `%s`
    everyone_sees: ClassVar[str]  # the condition an admin's or an open gateway's view has
    owner_sees: ClassVar[str]  # a key's: shared rows, or the one `owner` parameter's
    no_limit: ClassVar[int | None]  # the LIMIT value that returns every row

    @abstractmethod
    def migrate(self) -> None:
        """Create or upgrade the schema (idempotent; safe from several replicas at once)."""

    def create(
        self,
        name: str,
        reference: VoiceReference,
        description: str = "",
        consent: str = "",
        *,
        owner: str | None = None,
        shared: bool = True,
        quota: int | None = None,
    ) -> SavedVoice:
        """Store a voice of `owner` (None: nobody's, so shared); `VoiceNameTaken` (409) when
        its namespace has the name in any case, `VoiceQuotaExceeded` (403) when `owner`
        has `quota` voices already."""
        new = new_voice(name, reference, description, consent, owner, shared)
        self._insert(new, quota)
        return new.voice

    def get(self, voice_id: str, access: VoiceAccess = OPEN) -> SavedVoice | None:
        """The voice with that id, if `access` may see it."""
        return self._one(f"id = {self.placeholder}", (voice_id,), access)

    def find(self, key: str, access: VoiceAccess = OPEN) -> SavedVoice | None:
        """The visible voice with id `key`, else the one named `key` (folded) in the
        caller's namespace, else among the shared ones."""
        p = self.placeholder
        found = self.get(key, access)
        for namespace in access.namespaces():
            found = found or self._one(
                f"namespace = {p} AND name_key = {p}", (namespace, name_key(key)), access
            )
        return found

    @abstractmethod
    def count(self, owner: str | None) -> int:
        """How many voices `owner` has saved (None: the ownerless ones)."""

    def reference(self, voice: SavedVoice) -> VoiceReference:
        """The stored frames of `voice`; `LookupError` if it was deleted meanwhile."""
        rows = self._select(
            f"SELECT codes, frames FROM voices WHERE id = {self.placeholder}", (voice.id,)
        )
        if not rows:
            raise LookupError(voice.id)
        codes, frames = rows[0]
        return unpack_reference(voice, bytes(codes), frames)

    @abstractmethod
    def delete(self, voice_id: str) -> bool: ...

    @abstractmethod
    def close(self) -> None: ...

    def list(
        self,
        access: VoiceAccess = OPEN,
        *,
        after: SavedVoice | None = None,
        limit: int | None = None,
    ) -> builtins.list[SavedVoice]:
        """The voices `access` sees, oldest first; those after `after`, at most `limit`."""
        where, values = self._visible(access)
        if after is not None:
            later, more = self._after(after)
            where, values = f"{where} AND {later}", values + more
        values += (self.no_limit if limit is None else limit,)
        rows = self._select(
            f"SELECT {COLUMNS} FROM voices WHERE {where} "
            f"ORDER BY created_at, id LIMIT {self.placeholder}",
            values,
        )
        return [SavedVoice(*row) for row in rows]

    @abstractmethod
    def _insert(self, new: NewVoice, quota: int | None) -> None:
        """Insert `new` in one transaction, after checking its owner's `quota`;
        `VoiceNameTaken` when its namespace has the name already."""

    @abstractmethod
    def _select(self, sql: str, values: tuple[object, ...]) -> builtins.list[tuple[Any, ...]]:
        """The rows of one query (none when there is no database yet)."""

    @abstractmethod
    def _after(self, voice: SavedVoice) -> tuple[str, tuple[object, ...]]:
        """The condition for rows after `voice` in (created_at, id) order."""

    def _visible(self, access: VoiceAccess) -> tuple[str, tuple[object, ...]]:
        if access.sees_all:
            return self.everyone_sees, ()
        return self.owner_sees, (access.owner,)

    def _one(
        self, where: str, values: tuple[object, ...], access: VoiceAccess
    ) -> SavedVoice | None:
        visible, more = self._visible(access)
        rows = self._select(
            f"SELECT {COLUMNS} FROM voices WHERE {where} AND {visible}", values + more
        )
        return SavedVoice(*rows[0]) if rows else None


def name_taken(name: str) -> VoiceNameTaken:
    return VoiceNameTaken(f"A saved voice named {name!r} already exists.", param="name")


def quota_exceeded(quota: int) -> VoiceQuotaExceeded:
    return VoiceQuotaExceeded(
        f"This API key has saved {quota} voices, its quota (MAX_VOICES_PER_KEY): delete one first.",
        param="name",
    )


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
