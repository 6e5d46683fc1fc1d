"""Which voice a request names: built-in speakers, OpenAI voice aliases and saved voices."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from app.errors import InvalidRequest
from app.protocol import MAX_VOICE_NAME_CHARS, Speaker, VoiceRef
from app.service.cloning import VoiceReference
from app.service.prompts import sanitize_text
from app.service.voice_store import (
    ID_PREFIX,
    OPEN,
    VoiceAccess,
    VoiceNameTaken,
    VoiceStore,
    name_key,
)


class VoiceCatalog:
    """The built-in voices: the model's speakers and aliases onto them."""

    def __init__(self, speakers: Sequence[str], aliases: Mapping[str, str], default: str) -> None:
        self._speakers = tuple(speakers)
        self._aliases = dict(aliases)
        self.default = default

    def resolve(self, name: str) -> str:
        """The model voice for `name` (case-insensitive), or a 400 listing the valid names."""
        key = name.strip()
        lowered = {s.lower(): s for s in self._speakers}
        if key.lower() in lowered:
            return lowered[key.lower()]
        alias = self._aliases.get(key.lower())
        if alias is not None:
            return alias
        valid = ", ".join([*self._speakers, *sorted(self._aliases)])
        raise InvalidRequest(
            f"Unknown voice {name!r}. Valid voices: {valid}.", param="voice", code="invalid_voice"
        )

    def is_builtin(self, name: str) -> bool:
        """Whether `name` is a built-in speaker or alias (case-insensitive), or folds to
        one as saved names do (`ＴＡＲＡ`)."""
        key = name.strip().lower()
        if key in {s.lower() for s in self._speakers} or key in self._aliases:
            return True
        return name_key(name) in {name_key(n) for n in (*self._speakers, *self._aliases)}

    def listing(self) -> list[Speaker]:
        builtins = [Speaker(id=s, name=s, kind="builtin") for s in self._speakers]
        aliases = [
            Speaker(id=a, name=a, kind="alias", maps_to=v) for a, v in sorted(self._aliases.items())
        ]
        return builtins + aliases


Voice = str | VoiceReference
"""A resolved voice: a built-in speaker's name, or a saved voice's cloning reference."""


class Voices:
    """Built-in and saved voices together; store lookups run in a worker thread."""

    def __init__(self, catalog: VoiceCatalog, store: VoiceStore) -> None:
        self.catalog = catalog
        self.store = store

    async def resolve(self, voice: str | VoiceRef, access: VoiceAccess = OPEN) -> Voice:
        """By id for ``{"id": ...}`` (or a built-in name); for a string, built-in speakers
        and aliases first (saved names cannot shadow them), then a saved id or name among
        the voices `access` may use (its own first, then shared ones)."""
        by_id = isinstance(voice, VoiceRef)
        name = voice.id if isinstance(voice, VoiceRef) else voice
        if self.catalog.is_builtin(name):
            return self.catalog.resolve(name)
        saved = await asyncio.to_thread(self._saved_reference, name, by_id, access)
        if saved is not None:
            return saved
        if by_id:
            raise InvalidRequest(
                f"No saved voice has id {name!r}.", param="voice", code="invalid_voice"
            )
        return self.catalog.resolve(name)  # the 400 listing the valid voices

    def _saved_reference(self, key: str, by_id: bool, access: VoiceAccess) -> VoiceReference | None:
        voice = self.store.get(key, access) if by_id else self.store.find(key, access)
        if voice is None:
            return None
        try:
            return self.store.reference(voice)
        except LookupError:  # deleted meanwhile
            return None

    async def listing(self, access: VoiceAccess = OPEN) -> list[Speaker]:
        saved = await asyncio.to_thread(self.store.list, access)
        return self.catalog.listing() + [Speaker(id=v.id, name=v.name, kind="saved") for v in saved]

    def new_name(self, value: str) -> str:
        """A name for a new saved voice, or a 400/409 saying why it cannot be one."""
        name = sanitize_text(value)
        if not name:
            raise InvalidRequest("name must not be empty.", param="name")
        if len(name) > MAX_VOICE_NAME_CHARS:
            raise InvalidRequest(f"name exceeds {MAX_VOICE_NAME_CHARS} characters.", param="name")
        if name_key(name).startswith(ID_PREFIX):
            raise InvalidRequest(f"name must not start with {ID_PREFIX!r} (ids do).", param="name")
        if self.catalog.is_builtin(name):
            raise VoiceNameTaken(f"{name!r} is a built-in voice name.", param="name")
        return name
