"""Which voice a request names: built-in speakers, OpenAI voice aliases and saved voices."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from app.errors import InvalidRequest
from app.protocol import MAX_VOICE_NAME_CHARS, NamedItem, Speaker, VoiceRef
from app.service.cloning import VoiceReference
from app.service.prompts import sanitize_text
from app.service.voice_store import (
    ID_PREFIX,
    OPEN,
    SavedVoice,
    VoiceAccess,
    VoiceNameTaken,
    VoiceStore,
    name_key,
)


class VoiceCatalog:
    """The built-in voices: the model's speakers, and aliases onto a speaker or onto a
    saved voice (by id or name: looked up per request, as saved voices come and go)."""

    def __init__(self, speakers: Sequence[str], aliases: Mapping[str, str], default: str) -> None:
        self._speakers = tuple(speakers)
        self._by_lower = {s.lower(): s for s in self._speakers}
        self._aliases = {alias.lower(): target for alias, target in aliases.items()}
        self.default = default

    def resolve(self, name: str) -> str:
        """The model voice for `name` (case-insensitive), or a 400 listing the valid names."""
        key = name.strip().lower()
        if key in self._by_lower:
            return self._by_lower[key]
        target = self._aliases.get(key)
        if target is not None and target.lower() in self._by_lower:
            return self._by_lower[target.lower()]
        valid = ", ".join([*self._speakers, *sorted(self._aliases)])
        raise InvalidRequest(
            f"Unknown voice {name!r}. Valid voices: {valid}.", param="voice", code="invalid_voice"
        )

    def saved_alias(self, name: str) -> str | None:
        """The saved voice (id or name) an alias names, if `name` is such an alias."""
        key = name.strip().lower()
        target = self._aliases.get(key)
        if key in self._by_lower or target is None or target.lower() in self._by_lower:
            return None
        return target

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
        the voices `access` may use (its own first, then shared ones). An alias onto a saved
        voice is that voice (as `access` sees it), or a 400 once it no longer exists."""
        by_id = isinstance(voice, VoiceRef)
        name = voice.id if isinstance(voice, VoiceRef) else voice
        target = self.catalog.saved_alias(name)
        if target is not None:
            aliased = await asyncio.to_thread(self._saved_reference, target, False, access)
            if aliased is None:
                raise InvalidRequest(
                    f"Voice {name!r} is an alias (VOICE_ALIASES) of the saved voice {target!r}, "
                    "which does not exist: save a voice by that name or fix the alias.",
                    param="voice",
                    code="invalid_voice",
                )
            return aliased
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

    async def saved(self, access: VoiceAccess = OPEN) -> list[SavedVoice]:
        """Every saved voice `access` may use, read in a worker thread."""
        return await asyncio.to_thread(self.store.list, access)

    async def listing(self, access: VoiceAccess = OPEN) -> list[Speaker]:
        saved = await self.saved(access)
        return self.catalog.listing() + [Speaker(id=v.id, name=v.name, kind="saved") for v in saved]

    def choices(self, saved: Sequence[SavedVoice]) -> list[NamedItem]:
        """Every voice a request may name, as `{"id", "name"}` (Open WebUI's voice list);
        an alias's name says what it maps to."""
        builtins = [
            NamedItem(id=s.id, name=f"{s.name} ({s.maps_to})" if s.maps_to else s.name)
            for s in self.catalog.listing()
        ]
        return builtins + [NamedItem(id=v.id, name=v.name) for v in saved]

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
