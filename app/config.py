"""Settings: the only module that reads the environment (and `.env`).

Names users of the Scicom streaming TTS API already use are kept (`TTS_API`,
`MODEL_NAME`, `SPEAKERS`, `DEFAULT_*`, `DYNAMIC_BATCHING`, `MICROSLEEP`,
`MAX_BATCH_SIZE`, `SENTRY_DSN`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ORPHEUS_VOICES = ("tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe")

# OpenAI's voice names, mapped onto the Orpheus fine-tuned voices by rough timbre.
DEFAULT_VOICE_ALIASES: dict[str, str] = {
    "alloy": "tara",
    "ash": "dan",
    "ballad": "leo",
    "coral": "leah",
    "echo": "zac",
    "fable": "jess",
    "onyx": "leo",
    "nova": "mia",
    "sage": "zoe",
    "shimmer": "jess",
    "verse": "dan",
    "marin": "tara",
    "cedar": "zac",
}

# Deepgram's Aura models (`/v1/speak?model=...`), mapped onto the Orpheus voices by rough
# timbre; the defaults of pipecat (helena) and LiveKit (andromeda) first.
DEFAULT_DEEPGRAM_VOICES: dict[str, str] = {
    "aura-2-helena-en": "tara",
    "aura-2-andromeda-en": "leah",
    "aura-2-thalia-en": "jess",
    "aura-2-asteria-en": "mia",
    "aura-2-luna-en": "zoe",
    "aura-2-apollo-en": "leo",
    "aura-2-orion-en": "dan",
    "aura-2-arcas-en": "zac",
    "aura-asteria-en": "mia",
    "aura-luna-en": "zoe",
    "aura-orion-en": "dan",
    "aura-arcas-en": "zac",
}


def _split_list(value: object) -> object:
    """Accept `a,b,c` as well as a JSON list for list-valued variables."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


MAX_BUCKET_SECONDS = 60.0


def _seconds_list(value: object) -> object:
    """``auto``, a JSON list or a comma list of seconds, parsed as data (never evaluated)."""
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("", "auto"):
            return "auto"
        try:
            items = json.loads(text) if text.startswith("[") else text.split(",")
            if not isinstance(items, list) or any(isinstance(item, bool) for item in items):
                raise TypeError
            seconds = [float(item) for item in items if str(item).strip()]
        except (ValueError, TypeError):
            raise ValueError(
                "expected auto, a JSON list or a comma list of seconds, e.g. 0.5,1.0,1.5"
            ) from None
        value = seconds
    if isinstance(value, list | tuple):
        if not value or not all(
            isinstance(s, int | float) and 0 < s <= MAX_BUCKET_SECONDS for s in value
        ):
            raise ValueError(f"each bucket must be seconds in (0, {MAX_BUCKET_SECONDS}]")
        return sorted({float(s) for s in value})
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # --- server ---
    host: str = "0.0.0.0"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    workers: int = Field(default=1, ge=1, le=64)
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    max_header_bytes: int = Field(
        default=32 * 1024, ge=1024, description="Largest request head (line + headers): 431"
    )
    header_timeout: float = Field(
        default=10.0, gt=0, description="Seconds a request head may take to arrive: 408"
    )
    client_stall_timeout: float = Field(
        default=30.0,
        ge=0,
        description="Seconds a streamed response may wait for the client to take any bytes "
        "before it is ended and its slot freed; 0 disables",
    )
    prometheus_multiproc_dir: Path | None = Field(
        default=None,
        description="prometheus-client's multiprocess directory; set by `python -m app` "
        "when WORKERS > 1.",
    )

    # --- token backend ---
    tts_api: str | None = Field(
        default=None,
        description="Base URL(s) of OpenAI-compatible completions servers, comma separated.",
    )
    tts_api_key: str | None = None
    model_name: str = "orpheus"
    backend_connect_timeout: float = Field(default=5.0, gt=0)
    first_token_timeout: float = Field(default=30.0, gt=0)
    inter_token_timeout: float = Field(default=10.0, gt=0)
    backend_failure_threshold: int = Field(default=3, ge=1)
    backend_backoff_seconds: float = Field(default=1.0, gt=0)
    backend_max_backoff_seconds: float = Field(default=30.0, gt=0)
    invalid_token_policy: Literal["resync", "fail"] = "resync"
    max_invalid_tokens: int = Field(default=70, ge=0)

    # --- in-process engine / demo ---
    tts_model: str = "canopylabs/orpheus-3b-0.1-ft"
    tts_demo: bool = False
    cache_dir: Path = Path(".cache")
    engine_max_streams: int = Field(default=4, ge=1)

    # --- voices and sampling defaults ---
    default_speaker: str = "tara"
    speakers: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(ORPHEUS_VOICES))
    voice_aliases: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_VOICE_ALIASES)
    )
    default_temperature: float = Field(default=0.6, ge=0.0, le=2.0)
    default_top_p: float = Field(default=0.9, gt=0.0, le=1.0)
    default_repetition_penalty: float = Field(default=1.1, ge=1.0, le=2.0)
    default_max_tokens: int = Field(default=2048, ge=7)
    max_model_len: int = Field(default=4096, ge=64)
    max_input_chars: int = Field(default=4096, ge=1)
    max_instructions_chars: int = Field(default=4096, ge=0)

    # --- text front-end (app/text, docs/text.md) ---
    normalize_text: bool = True
    # About 12-14 s of speech at 14-16 characters per second: inside one generation's
    # 2048-token budget even for slow speech (docs/text.md).
    segment_max_chars: int = Field(default=200, ge=20, le=4096)
    segment_first_max_chars: int = Field(default=100, ge=10, le=4096)
    segment_lookahead: int = Field(default=1, ge=0, le=8)
    segment_pause_ms: float = Field(default=150.0, ge=0.0, le=5000.0)

    # --- WebSocket sessions (docs/websocket.md) ---
    ws_idle_timeout_seconds: float = Field(
        default=60.0, gt=0, description="Close a session with no text and no work this long."
    )
    ws_keepalive_seconds: float = Field(
        default=10.0, ge=0, description="Send a keepalive after this long silent; 0: off"
    )
    ws_send_timeout_seconds: float = Field(
        default=30.0, gt=0, description="End a session whose client reads nothing this long."
    )
    ws_max_pending_chars: int = Field(
        default=16_384, ge=100, description="Text a session may hold not yet spoken."
    )
    ws_max_message_bytes: int = Field(default=1024 * 1024, ge=1024)
    deepgram_voices: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_DEEPGRAM_VOICES),
        description="Deepgram `model` names accepted by /v1/speak and the voice each speaks.",
    )

    # --- codec ---
    snac_model: str = "hubertsiuzdak/snac_24khz"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    snac_noise: bool = True
    decode_context_frames: int = Field(default=3, ge=0, le=8)
    chunk_schedule: Literal["buffer", "doubling"] = "buffer"
    chunk_first_frames: int = Field(default=2, ge=1, le=64)
    chunk_max_frames: int = Field(default=16, ge=1, le=256)
    crossfade_ms: float = Field(default=20.0, ge=0.0, le=42.0)

    # --- decoder service ---
    dynamic_batching: bool | Literal["auto"] = "auto"
    microsleep: float = Field(default=0.002, ge=0.0, le=1.0)
    max_batch_size: int = Field(default=16, ge=1, le=1024)
    max_batch_frames: Annotated[int, Field(ge=1, le=4096)] | Literal["auto"] = "auto"
    decode_queue_size: int = Field(default=1024, ge=1)
    torch_threads: int | None = Field(default=None, ge=1)
    memory_trim_interval: float = Field(
        default=10.0, ge=0, description="Seconds between returns of freed heap to the OS; 0: off"
    )

    # --- GPU decode path (docs/gpu.md) ---
    decode_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    cuda_graphs: bool = False
    cuda_graph_batch: Annotated[list[float] | Literal["auto"], NoDecode] = Field(
        default="auto",
        description="Window buckets in seconds of audio (JSON or comma list); auto: every "
        "window length the chunk schedule plans.",
    )
    torch_compile: bool = False

    # --- storage / cloning ---
    data_dir: Path = Path("data")
    voice_store_url: str | None = Field(
        default=None,
        description="sqlite:///path or postgresql://...; unset: SQLite under DATA_DIR.",
    )
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    min_reference_seconds: float = Field(default=1.0, ge=0.1)
    max_reference_seconds: float = Field(default=30.0, ge=1.0)
    max_reference_encodes: int = Field(
        default=2, ge=1, description="Reference clips SNAC-encoded at once; beyond: 503"
    )
    max_voices_per_key: int = Field(
        default=100, ge=0, description="Saved voices per API key (open gateway: in all); 0: no cap"
    )

    # --- protection / observability ---
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    api_keys_file: Path | None = None
    admin_api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Keys that also manage every saved voice and may save shared ones",
    )
    protect_health: bool = False
    max_concurrent_streams: int = Field(default=64, ge=1)
    rate_limit_per_minute: int = Field(default=0, ge=0, description="0 disables rate limiting")
    auth_failures_per_minute: int = Field(
        default=20, ge=0, description="Wrong API keys per client IP per minute; 0: unlimited"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    web_ui: bool = Field(default=True, description="Serve the browser page at /")
    sentry_dsn: str | None = None

    @field_validator("speakers", "api_keys", "admin_api_keys", "cors_origins", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("cuda_graph_batch", mode="before")
    @classmethod
    def _seconds(cls, value: object) -> object:
        return _seconds_list(value)

    @field_validator("voice_aliases", "deepgram_voices", mode="before")
    @classmethod
    def _aliases(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):
                return json.loads(text)
            pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
            if any(len(pair) != 2 for pair in pairs):
                raise ValueError("expected JSON or alias=voice pairs separated by commas")
            return {alias.strip(): voice.strip() for alias, voice in pairs}
        return value

    @field_validator("tts_api", "sentry_dsn", "tts_api_key", "voice_store_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("voice_store_url")
    @classmethod
    def _store_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(
            ("sqlite:///", "postgresql://", "postgres://")
        ):
            raise ValueError("expected sqlite:///path or postgresql://user:pass@host/db")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if not self.speakers:
            raise ValueError("SPEAKERS must name at least one voice")
        if self.default_speaker not in self.speakers:
            raise ValueError(
                f"DEFAULT_SPEAKER {self.default_speaker!r} is not one of SPEAKERS {self.speakers}"
            )
        if "voice_aliases" not in self.model_fields_set:
            # The built-in table must not break a custom SPEAKERS list.
            self.voice_aliases = {
                alias: voice if voice in self.speakers else self.default_speaker
                for alias, voice in self.voice_aliases.items()
            }
        _check_aliases(self.voice_aliases, self.speakers)
        self.deepgram_voices = self._onto_speakers("deepgram_voices")
        if self.backend_backoff_seconds > self.backend_max_backoff_seconds:
            raise ValueError("BACKEND_BACKOFF_SECONDS must not exceed BACKEND_MAX_BACKOFF_SECONDS")
        if self.chunk_first_frames > self.chunk_max_frames:
            raise ValueError("CHUNK_FIRST_FRAMES must not exceed CHUNK_MAX_FRAMES")
        if self.cuda_graphs and self.torch_compile:
            raise ValueError("CUDA_GRAPHS and TORCH_COMPILE are alternatives: set one of them")
        if self.segment_first_max_chars > self.segment_max_chars:
            raise ValueError("SEGMENT_FIRST_MAX_CHARS must not exceed SEGMENT_MAX_CHARS")
        return self

    def _onto_speakers(self, name: str) -> dict[str, str]:
        """A table of names onto SPEAKERS, checked; a built-in table (not set by the user)
        must not break a custom SPEAKERS list, so its other voices become the default."""
        table: dict[str, str] = getattr(self, name)
        if name not in self.model_fields_set:
            table = {k: v if v in self.speakers else self.default_speaker for k, v in table.items()}
        unknown = {k: v for k, v in table.items() if v not in self.speakers}
        if unknown:
            raise ValueError(f"{name.upper()} map to voices not in SPEAKERS: {unknown}")
        return table

    @property
    def backend_urls(self) -> list[str]:
        if not self.tts_api:
            return []
        return [url.strip().rstrip("/") for url in self.tts_api.split(",") if url.strip()]


def _check_aliases(aliases: dict[str, str], speakers: list[str]) -> None:
    """A target outside SPEAKERS names a saved voice (id or name), looked up per request;
    what can be wrong already is a missing target or one alias pointing at another."""
    speaker_keys = {s.lower() for s in speakers}
    alias_keys = {a.lower() for a in aliases}
    for alias, target in aliases.items():
        if not target.strip():
            raise ValueError(f"VOICE_ALIASES: {alias!r} maps to nothing")
        if target.lower() in alias_keys and target.lower() not in speaker_keys:
            raise ValueError(
                f"VOICE_ALIASES: {alias!r} maps to the alias {target!r}; map it to a speaker "
                f"in SPEAKERS or to a saved voice"
            )


class SettingsError(Exception):
    """Raised with a message that names each offending environment variable."""


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "_".join(str(part) for part in err["loc"]).upper() or "settings"
            lines.append(f"{name}: {err['msg']}")
        raise SettingsError("invalid configuration: " + "; ".join(lines)) from exc
