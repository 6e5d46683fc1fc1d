import pytest

from app.config import DEFAULT_VOICE_ALIASES, ORPHEUS_VOICES
from app.errors import InvalidRequest
from app.service.voices import VoiceCatalog


def catalog() -> VoiceCatalog:
    return VoiceCatalog(ORPHEUS_VOICES, DEFAULT_VOICE_ALIASES, "tara")


@pytest.mark.parametrize("name", ORPHEUS_VOICES)
def test_builtin_speakers_resolve_to_themselves(name: str) -> None:
    assert catalog().resolve(name) == name
    assert catalog().resolve(name.upper()) == name


@pytest.mark.parametrize("alias", sorted(DEFAULT_VOICE_ALIASES))
def test_every_openai_voice_maps_to_a_speaker(alias: str) -> None:
    assert catalog().resolve(alias) in ORPHEUS_VOICES


def test_unknown_voice_lists_valid_ones() -> None:
    with pytest.raises(InvalidRequest) as info:
        catalog().resolve("darth")
    assert info.value.param == "voice"
    assert "tara" in info.value.message and "alloy" in info.value.message


def test_listing_has_builtins_and_aliases() -> None:
    kinds = {s.id: s.kind for s in catalog().listing()}
    assert kinds["tara"] == "builtin" and kinds["nova"] == "alias"


def test_aliases_may_name_saved_voices() -> None:
    aliases = {"alloy": "Narrator", "Nova": "MIA", "echo": "voice_0123"}
    voices = VoiceCatalog(ORPHEUS_VOICES, aliases, "tara")
    assert voices.saved_alias("ALLOY ") == "Narrator"
    assert voices.saved_alias("echo") == "voice_0123"
    assert voices.saved_alias("nova") is None and voices.resolve("nova") == "mia"
    assert voices.saved_alias("tara") is None and voices.saved_alias("nobody") is None
    assert voices.is_builtin("alloy")  # a saved voice cannot take the alias's name
    listed = {s.id: s.maps_to for s in voices.listing() if s.kind == "alias"}
    assert listed == {"alloy": "Narrator", "nova": "MIA", "echo": "voice_0123"}
