"""Which voice a request names: built-in speakers and OpenAI voice aliases."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from app.errors import InvalidRequest
from app.protocol import Speaker


class VoiceCatalog:
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
        """Whether `name` is a built-in speaker or alias (case-insensitive)."""
        key = name.strip().lower()
        return key in {s.lower() for s in self._speakers} or key in self._aliases

    def listing(self) -> list[Speaker]:
        builtins = [Speaker(id=s, name=s, kind="builtin") for s in self._speakers]
        aliases = [
            Speaker(id=a, name=a, kind="alias", maps_to=v) for a, v in sorted(self._aliases.items())
        ]
        return builtins + aliases
